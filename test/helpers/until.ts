/**
 * Polling for a condition in tests: one loop for every wait on something the test cannot await
 * directly (a log line, a counter, a state key). The limit only stops a hung test; it measures
 * nothing, so it is generous.
 */
import assert from "node:assert/strict";
import type { Host } from "../../src/host/host.ts";

export interface UntilOptions {
  /** How long to wait before failing the test, ms (default 20 s). */
  readonly ms?: number;
  /**
   * How long to sleep between looks, ms (default 20). 0 looks again after each turn of the event
   * loop (setImmediate), for conditions that queued callbacks satisfy without any timer.
   */
  readonly every?: number;
  /** What the test was looking at when it gave up (a log, a list), added to the failure message. */
  readonly detail?: () => string;
}

/**
 * Waits until `pred` holds; after `ms` fails the test with `timed out waiting for <what>` and
 * the detail. A number for `opts` is the limit alone.
 */
export async function until(
  what: string,
  pred: () => boolean | Promise<boolean>,
  opts: number | UntilOptions = {},
): Promise<void> {
  const { ms = 20_000, every = 20, detail } = typeof opts === "number" ? { ms: opts } : opts;
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) {
      assert.fail(`timed out waiting for ${what}${detail === undefined ? "" : `:\n${detail()}`}`);
    }
    await new Promise((r) => (every === 0 ? setImmediate(r) : setTimeout(r, every)));
  }
}

/** A line of a kernel log: one that contains the string, or one the pattern matches. */
export type LineMatch = string | RegExp;

const matches = (line: string, m: LineMatch): boolean =>
  typeof m === "string" ? line.includes(m) : m.test(line);

/**
 * Waits until `count` lines (default 1) of domain `domid`'s kernel log match, and returns every
 * matching line, the first first; on time-out the failure shows the whole log (default limit 10 s).
 */
export async function untilLogged(
  host: Host,
  domid: number,
  match: LineMatch,
  opts: { readonly count?: number; readonly ms?: number } = {},
): Promise<[string, ...string[]]> {
  const { count = 1, ms = 10_000 } = opts;
  if (!(count >= 1)) throw new RangeError(`Cannot wait for ${count} lines: at least 1`);
  const found = () => host.hv.dmesg(domid).filter((l) => matches(l, match));
  const shown = typeof match === "string" ? `'${match}'` : String(match);
  const what = `${count === 1 ? "a line" : `${count} lines`} ${shown} in dom${domid}'s log`;
  await until(what, () => found().length >= count, { ms, detail: () => host.hv.dmesg(domid).join("\n") });
  return found() as [string, ...string[]];
}
