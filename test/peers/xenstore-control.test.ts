/**
 * Xen's xenstore-control (xen-utils-4.17, unpacked by ../shared/refxs into its cache)
 * against xenlab: exit codes and output equal to those against the reference C xenstored.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REFXS_BIN, REFXS_LIB, type RunningDaemon, requirePeer } from "../helpers/peers.ts";
import { REFERENCE, requireDaemon, SUBJECT, subjectName } from "../helpers/subject.ts";
import { type Outcome, outcomeDifferences, runTool } from "../helpers/tools.ts";

const XENSTORE_CONTROL = join(REFXS_BIN, "xenstore-control");

const COMMANDS: readonly (readonly string[])[] = [
  ["help"],
  ["check"],
  ["quota"],
  ["quota-soft"],
  ["quota", "0"],
  ["quota", "set", "nodes", "500"],
  ["quota", "set", "nodes"],
  ["quota-soft", "set", "memory", "1000000"],
  ["quota"],
  ["log", "on"],
  ["log", "off"],
  ["print", "hello from xenstore-control"],
  ["bogus"],
  [],
];

async function play(socket: string): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const args of COMMANDS) {
    const r = await runTool(XENSTORE_CONTROL, args, {
      env: { XENSTORED_PATH: socket, LD_LIBRARY_PATH: REFXS_LIB },
      timeoutMs: 10_000,
    });
    out.push({
      command: `xenstore-control ${args.join(" ")}`,
      code: r.code,
      stdout: r.stdout,
      stderr: r.stderr,
    });
  }
  return out;
}

describe(`xenstore-control against ${SUBJECT.name}, compared with the reference C xenstored`, () => {
  let ref: RunningDaemon | null = null;
  let sub: RunningDaemon | null = null;
  before(async () => {
    if (REFERENCE.available()) ref = await REFERENCE.start();
    if (SUBJECT.available()) sub = await SUBJECT.start();
  });
  after(async () => {
    await ref?.stop();
    await sub?.stop();
  });

  it("gives the reference's exit codes and output for help, check, quota, quota-soft, log, print", async (t) => {
    if (!requirePeer(t, `xenstore-control (${XENSTORE_CONTROL})`, existsSync(XENSTORE_CONTROL))) return;
    if (!requireDaemon(t, REFERENCE, ref) || !requireDaemon(t, SUBJECT, sub)) return;
    const a = await play(ref.socket);
    const b = await play(sub.socket);
    assert.ok(
      a.some((o) => o.code === 0 && o.stdout.includes("quota-soft")),
      "reference run answered help",
    );
    const diffs = outcomeDifferences(a, b, subjectName());
    assert.equal(diffs.length, 0, `${diffs.length} commands differ:\n${diffs.join("\n")}`);
  });
});
