/**
 * withBusy(), the busy neighbours of `xenlab bench … --busy N`: they spin while the measurement
 * runs, and never outlive it nor keep the process alive.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { withBusy } from "../../src/bench/common.ts";
import { REPO } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";

/** This process's threads (Linux). */
const threads = (): number => readdirSync("/proc/self/task").length;

describe("withBusy()", () => {
  it("runs fn beside n more threads and returns what it returns", async () => {
    const before = threads();
    const r = await withBusy(2, async () => threads() - before);
    assert.ok(r >= 2, `${r} more threads`);
  });

  it("rethrows the error of fn", async () => {
    await assert.rejects(
      withBusy(1, async () => {
        throw new Error("measurement failed");
      }),
      /measurement failed/,
    );
  });

  it("runs fn alone for n = 0", async () => {
    assert.equal(await withBusy(0, async () => "alone"), "alone");
  });

  it("lets the process exit while fn never settles: the neighbours are unref'd", {
    timeout: 30_000,
  }, async () => {
    const common = pathToFileURL(join(REPO, "src/bench/common.ts")).href;
    const code = `import { withBusy } from ${JSON.stringify(common)}; void withBusy(2, () => new Promise(() => {}));`;
    const r = await runTool(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
      timeoutMs: 20_000,
    });
    assert.equal(r.signal, null, "killed: the neighbours kept the process alive");
    assert.equal(r.code, 0, r.stderr);
  });
});
