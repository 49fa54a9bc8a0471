/**
 * Smoke test of `xenlab bench ring`: a --quick --json run, checking the shape of the output only.
 * Timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";

describe("xenlab bench ring", () => {
  it("prints one JSON line per size and batch with --quick --json", { timeout: 120_000 }, async () => {
    const r = await runBench(["ring", "--quick", "--json", "--batches", "1,4"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case),
      ["64B/batch1", "64B/batch4", "112B/batch1", "112B/batch4"],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "ring");
      assert.equal(o.unit, "ops/s");
      assert.equal(o.baseline_name, "sab-spsc");
      for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("rejects an unknown option with exit code 2", async () => {
    const r = await runBench(["ring", "--nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Unknown option '--nope'/);
  });

  it("rejects a batch larger than the ring with exit code 2", async () => {
    const r = await runBench(["ring", "--batches", "1,33"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /'--batches' needs whole numbers from 1 to 32/);
  });
});
