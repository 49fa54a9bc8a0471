/**
 * Smoke test of `xenlab bench migration`: a --quick --json run, checking the shape of the output
 * only. Timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";

describe("xenlab bench migration", () => {
  it("prints a dump and a load line with --quick --json", { timeout: 120_000 }, async () => {
    const r = await runBench(["migration", "--quick", "--json"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case.replace(/ \d+ nodes$/, "")),
      ["dump", "load"],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "migration");
      assert.equal(o.unit, "ms");
      assert.equal(o.baseline_name, "--state snapshot");
      for (const k of ["xenlab", "baseline"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("rejects a bad --guests with exit code 2", async () => {
    const r = await runBench(["migration", "--guests", "0"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--guests/);
  });
});
