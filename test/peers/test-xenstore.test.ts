/**
 * Xen's own test-xenstore (xen-utils-4.17, unpacked by ../shared/refxs into its cache):
 * every test once, every test 100 times (also three clients at once), and random tests for
 * 10 seconds. Run against the reference C xenstored too, which proves the harness.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it, type TestContext } from "node:test";
import { REFXS_LIB, type RunningDaemon, requirePeer, TEST_XENSTORE } from "../helpers/peers.ts";
import { REFERENCE, requireDaemon, SUBJECT, type Target } from "../helpers/subject.ts";
import { runTool, type ToolResult } from "../helpers/tools.ts";

function testXenstore(socket: string, args: string[]): Promise<ToolResult> {
  return runTool(TEST_XENSTORE, args, {
    env: { LD_LIBRARY_PATH: REFXS_LIB, XENSTORED_PATH: socket },
    timeoutMs: 120_000,
  });
}

/** The test names `test-xenstore -l` lists ("read 1", "ta rmw x", ...). */
async function listTests(): Promise<string[]> {
  const r = await runTool(TEST_XENSTORE, ["-l"], { env: { LD_LIBRARY_PATH: REFXS_LIB } });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split("\n")
    .filter((l) => l.includes(":"))
    .map((l) => l.slice(0, l.indexOf(":")).trim());
}

function assertPassed(r: ToolResult): void {
  assert.equal(r.code, 0, `test-xenstore exited ${r.code ?? r.signal}:\n${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stdout, /failed/, r.stdout);
}

for (const target of [REFERENCE, SUBJECT] satisfies Target[]) {
  describe(`test-xenstore against ${target.name}`, () => {
    let daemon: RunningDaemon | null = null;
    before(async () => {
      if (target.available() && existsSync(TEST_XENSTORE)) daemon = await target.start();
    });
    after(() => daemon?.stop());

    const ready = (t: TestContext): RunningDaemon | null =>
      requirePeer(t, `test-xenstore (${TEST_XENSTORE})`, existsSync(TEST_XENSTORE)) &&
      requireDaemon(t, target, daemon)
        ? daemon
        : null;

    it("passes every test once, exit 0", async (t) => {
      const d = ready(t);
      if (d === null) return;
      const r = await testXenstore(d.socket, []);
      assertPassed(r);
      for (const name of await listTests())
        assert.match(r.stdout, new RegExp(`^${name}\\s*:`, "m"), r.stdout);
    });

    it("passes every test 100 times (-i 100), exit 0", async (t) => {
      const d = ready(t);
      if (d === null) return;
      assertPassed(await testXenstore(d.socket, ["-i", "100"]));
    });

    it("passes three concurrent runs of every test 100 times, exit 0", async (t) => {
      const d = ready(t);
      if (d === null) return;
      const runs = await Promise.all([0, 1, 2].map(() => testXenstore(d.socket, ["-i", "100"])));
      for (const r of runs) assertPassed(r);
    });

    it("passes random tests for 10 seconds (-r 10), exit 0", async (t) => {
      const d = ready(t);
      if (d === null) return;
      assertPassed(await testXenstore(d.socket, ["-r", "10"]));
    });
  });
}
