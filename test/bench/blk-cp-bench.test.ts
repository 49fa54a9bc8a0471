/**
 * Smoke test of `xenlab bench blk-cp`: one run on a 4 MiB file with --json, checking the shape of
 * the output only (the real command and cp both ran, the image holds what was copied is
 * test/blk/tools.test.ts's business). Timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";

describe("xenlab bench blk-cp", () => {
  it("prints a JSON line for the command and one for the copy alone", { timeout: 120_000 }, async () => {
    const r = await runBench(["blk-cp", "--json", "--runs", "1", "--size", "4"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case),
      ["blk-cp-4MiB", "blk-cp-4MiB-copy-only"],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "blk-cp");
      assert.equal(o.unit, "MB/s");
      assert.equal(o.baseline_name, "cp");
      for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("refuses an option it does not know", async () => {
    const r = await runBench(["blk-cp", "--nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Unknown option '--nope'/);
  });
});
