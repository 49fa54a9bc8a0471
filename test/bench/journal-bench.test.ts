/**
 * Smoke test of `xenlab bench journal`: a --quick --json run, checking the shape of the output
 * only. Timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";

describe("xenlab bench journal", () => {
  it("prints two JSON lines per case with --quick --json", { timeout: 120_000 }, async () => {
    const r = await runBench(["journal", "--quick", "--json", "--cases", "overwrite,tx4"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case),
      [
        "overwrite/append cost per record",
        "overwrite/request with its record",
        "tx4/append cost per record",
        "tx4/request with its record",
      ],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "journal");
      assert.equal(o.unit, "µs");
      for (const k of ["xenlab", "baseline"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("rejects an unknown case with exit code 2", async () => {
    const r = await runBench(["journal", "--cases", "nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Invalid value for --cases/);
  });
});
