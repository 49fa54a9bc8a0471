/**
 * Smoke test of `xenlab bench evtchn`: a tiny --json run, checking the shape of the output only.
 * Timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";

describe("xenlab bench evtchn", () => {
  it("prints one JSON line per case (block, async) with --json", { timeout: 120_000 }, async () => {
    const r = await runBench(["evtchn", "--json", "--runs", "1", "--rounds", "200", "--warmup", "20"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case),
      ["block", "async"],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "evtchn");
      assert.equal(o.unit, "rt/s");
      assert.equal(o.baseline_name, "atomics");
      for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("rejects an unknown option with exit code 2", async () => {
    const r = await runBench(["evtchn", "--nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Unknown option '--nope'/);
  });
});
