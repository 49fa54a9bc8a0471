/**
 * Smoke tests of `xenlab bench xenstore` (a --quick --json run against the reference C xenstored)
 * and of --busy in the data-path benchmarks (ring, evtchn, blk), checking the shape of the output
 * only. Timings never go in tests.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, runBench } from "../helpers/bench.ts";
import { hasCommand, refxsAvailable, requirePeer, TEST_XENSTORE } from "../helpers/peers.ts";

describe("xenlab bench xenstore", () => {
  it("prints one JSON line per case with --quick --json", { timeout: 120_000 }, async (t) => {
    const present = refxsAvailable() && existsSync(TEST_XENSTORE) && hasCommand("taskset");
    if (!requirePeer(t, "reference C xenstored, test-xenstore and taskset", present)) return;
    // --xenlab src: the daemon from source, so the test does not depend on `npm run build`.
    const r = await runBench(["xenstore", "--quick", "--json", "--xenlab", "src"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    const cases = new Set<string>();
    for (const line of lines) {
      const v: unknown = JSON.parse(line);
      assert.ok(typeof v === "object" && v !== null, `not an object: ${line}`);
      const o = v as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      assert.equal(o.bench, "xenstore");
      assert.equal(o.baseline_name, "cxenstored");
      assert.ok(typeof o.case === "string" && o.case !== "");
      assert.ok(o.unit === "ops/s" || o.unit === "us", `unit ${String(o.unit)}`);
      for (const k of ["xenlab", "baseline", "ratio"]) {
        assert.equal(typeof o[k], "number", `${k} in ${line}`);
        assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
      }
      assert.ok(!cases.has(o.case), `duplicate case ${o.case}`);
      cases.add(o.case);
    }
    for (const c of [
      "a/test-xenstore",
      "b/32-clients",
      "b/32-clients/all p50",
      "b/32-clients/all p99",
      "c/500-idle/test-xenstore",
      "c/500-idle/1-client",
    ]) {
      assert.ok(cases.has(c), `missing case ${c}`);
    }
  });

  it("prints the host-scale cases d, e and f with --quick --cases d,e,f --json", {
    timeout: 180_000,
  }, async (t) => {
    const present = refxsAvailable() && existsSync(TEST_XENSTORE) && hasCommand("taskset");
    if (!requirePeer(t, "reference C xenstored, test-xenstore and taskset", present)) return;
    const r = await runBench(["xenstore", "--quick", "--json", "--xenlab", "src", "--cases", "d,e,f"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const rows = new Map<string, Record<string, unknown>>();
    for (const line of r.out.trim().split("\n")) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
      rows.set(String(o.case), o);
    }
    // --quick: 20 guests, 2,000 children, 5,000 nodes.
    for (const c of [
      "d/20-guests/xl create fill",
      "d/20-guests/test-xenstore",
      "d/20-guests/32-clients",
      "e/wide at 2k",
      "e/nested at 2k",
      "f/rss per node at 5k",
    ])
      assert.ok(rows.has(c), `missing case ${c} in ${[...rows.keys()].join(", ")}`);
    assert.equal(rows.get("f/rss per node at 5k")!.unit, "B");
    assert.ok(![...rows.keys()].some((c) => c.startsWith("a/") || c.startsWith("b/")));
  });

  it("names the cases it knows when --cases has one it does not", async () => {
    const r = await runBench(["xenstore", "--cases", "a,g"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /expected a comma-separated subset of a,b,c,d,e,f/);
    assert.equal(r.err.trim().split("\n").length, 1);
  });

  it("rejects an unknown option with exit code 2", async () => {
    const r = await runBench(["xenstore", "--no-such-option"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Unknown option '--no-such-option'/);
  });
});

describe("xenlab bench ring|evtchn|blk --busy", () => {
  for (const bench of ["ring", "evtchn", "blk"]) {
    it(`${bench}: every JSON line carries busy: 1 with --quick --busy 1 --json`, {
      timeout: 120_000,
    }, async () => {
      const r = await runBench([bench, "--quick", "--busy", "1", "--json"]);
      assert.equal(r.code, 0, `bench failed:\n${r.err}`);
      const lines = r.out.trim().split("\n");
      assert.ok(lines.length > 0);
      for (const line of lines) {
        const o = JSON.parse(line) as Record<string, unknown>;
        assert.deepEqual(Object.keys(o), [...BENCH_JSON_KEYS, "busy"]);
        assert.equal(o.bench, bench);
        assert.equal(o.busy, 1);
        for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
      }
    });
  }

  it("rejects a --busy that is not a whole number with exit code 2", async () => {
    const r = await runBench(["ring", "--busy", "-1"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Option '--busy' needs a whole number/);
  });
});
