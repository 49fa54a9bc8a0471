/**
 * Smoke test of `xenlab bench domains`: a --quick --json run, checking the shape of the output
 * only (real guests are booted in the child). Figures never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, benchJsonLines, runBench } from "../helpers/bench.ts";

describe("xenlab bench domains", () => {
  it("prints one JSON line per case with --quick --json", { timeout: 120_000 }, async () => {
    const r = await runBench(["domains", "--quick", "--json"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const rows = benchJsonLines(r.out);
    assert.deepEqual(
      rows.map((o) => o.case),
      ["rss-per-idle-domain", "domains-per-24GiB", "domains-per-process"],
    );
    for (const o of rows) {
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "domains");
      assert.equal(o.baseline_name, "bare-worker");
      for (const k of ["xenlab", "baseline", "ratio"]) {
        assert.ok(typeof o[k] === "number" && Number.isFinite(o[k]) && o[k] > 0, `${k} of ${o.case}`);
      }
    }
  });

  it("runs a boot storm with --storm N --json: every device Connected, requests counted", {
    timeout: 120_000,
  }, async () => {
    const r = await runBench(["domains", "--storm", "3", "--json"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const rows = benchJsonLines(r.out);
    assert.deepEqual(
      rows.map((o) => o.case),
      ["storm-3-all-connected", "storm-3-xs-requests-per-guest"],
    );
    for (const o of rows) assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
    const [all, reqs] = rows;
    assert.equal(all!.baseline_name, "bare-workers-started");
    assert.ok(typeof all!.xenlab === "number" && all!.xenlab > 0);
    // Each guest's kernel talks to XenStore (XenBus, blkfront): never none.
    assert.ok(typeof reqs!.xenlab === "number" && reqs!.xenlab > 0);
  });

  it("rejects a storm of no guests in one line", async () => {
    const r = await runBench(["domains", "--storm", "0"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Option '--storm' needs a positive whole number/);
  });

  it("rejects an unknown option with exit code 2", async () => {
    const r = await runBench(["domains", "--no-such-option"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Unknown option '--no-such-option'/);
  });
});
