/**
 * Smoke test of `xenlab bench guest-migrate`: a --quick --json run, checking the shape of the
 * output only. Timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";

describe("xenlab bench guest-migrate", () => {
  it("prints a migrate and a save-restore line with --quick --json", { timeout: 180_000 }, async () => {
    const r = await runBench(["guest-migrate", "--quick", "--json"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case),
      ["migrate-downtime", "save-restore-downtime"],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "guest-migrate");
      assert.equal(o.unit, "ms");
      assert.equal(o.baseline_name, "xl-create-with-disk");
      for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("rejects a bad --runs with exit code 2", async () => {
    const r = await runBench(["guest-migrate", "--runs", "0"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--runs/);
  });
});
