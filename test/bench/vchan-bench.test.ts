/**
 * Smoke test of `xenlab bench vchan`: a --quick --json run, checking the shape of the output only.
 * Timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";

describe("xenlab bench vchan", () => {
  it("prints one JSON line per ring size with --quick --json", { timeout: 120_000 }, async () => {
    const r = await runBench(["vchan", "--quick", "--json", "--sizes", "2048,65536", "--bytes", "1000000"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case),
      ["2KiB", "64KiB"],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "vchan");
      assert.equal(o.unit, "MB/s");
      assert.equal(o.baseline_name, "sab-spsc");
      for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("prints each run in whole MB/s in the table, never scaled (3545 MB/s was printed 3.54M)", {
    timeout: 120_000,
  }, async () => {
    const r = await runBench(["vchan", "--quick", "--sizes", "2048", "--bytes", "1000000"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const row = r.out.split("\n").find((l) => l.startsWith("2KiB"));
    assert.ok(row !== undefined, r.out);
    // ring, xenlab, baseline, ratio, paired, then one run of each side (--quick).
    const cells = row.trim().split(/\s+/);
    assert.equal(cells.length, 7, row);
    for (const c of [cells[1]!, cells[2]!, cells[5]!, cells[6]!]) assert.match(c, /^\d+$/, row);
  });

  it("rejects a ring size libxenvchan cannot make with exit code 2", async () => {
    const r = await runBench(["vchan", "--sizes", "3000"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /'--sizes' needs ring sizes of 2048 or powers of two from 4096 to 1048576/);
  });
});
