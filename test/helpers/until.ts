/** Polling for a condition in tests that drive a whole host. */
import assert from "node:assert/strict";

/** Waits until `pred` holds, looking every 20 ms; fails the test naming `what` after `ms`. */
export async function until(
  what: string,
  pred: () => boolean | Promise<boolean>,
  ms = 15_000,
): Promise<void> {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
