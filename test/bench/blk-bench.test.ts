/**
 * Smoke test of `xenlab bench blk`: a tiny --json run (a 4 MiB image, a fraction of a second per
 * measurement), checking the shape of the output only. Timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";

/** One run of a fraction of a second per measurement, on a 4 MiB image. */
const TINY = ["--runs", "1", "--seconds", "0.1", "--warmup", "0", "--size", "4"];

describe("xenlab bench blk", () => {
  it("prints one JSON line per case with --json", { timeout: 120_000 }, async () => {
    const r = await runBench(["blk", "--json", ...TINY]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case),
      [
        "4k-randread-qd32",
        "4k-randwrite-qd32",
        "1m-seqread-qd1",
        "1m-seqwrite-qd1",
        "1m-seqread-qd1-copy",
        "1m-seqwrite-qd1-copy",
      ],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "blk");
      assert.ok(o.unit === "IOPS" || o.unit === "MB/s", line);
      assert.equal(o.baseline_name, "node-fs");
      for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("prints the table with both sides and the goals", { timeout: 120_000 }, async () => {
    const r = await runBench(["blk", ...TINY, "--qd", "4"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    assert.match(r.out, /^case +unit +xenlab +node:fs +ratio +goal/m);
    assert.match(r.out, /^4k-randread-qd4 +IOPS .* ≥ 0\.5, (met|missed)/m);
    assert.match(r.out, /^1m-seqwrite-qd1 +MB\/s .* ≥ 0\.8, (met|missed)/m);
  });

  it("rejects an unknown option with exit code 2", async () => {
    const r = await runBench(["blk", "--nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Unknown option '--nope'/);
  });
});
