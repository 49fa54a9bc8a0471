/**
 * Smoke test of `xenlab bench net`: a --quick --json run prints one line per case with the bench's
 * keys, and with --busy N says so in each line. The shape only: timings never go in tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BENCH_JSON_KEYS, benchJsonLines, runBench } from "../helpers/bench.ts";
import { hasCommand, requirePeer } from "../helpers/peers.ts";

describe("xenlab bench net", () => {
  it("prints a TCP and a UDP case with --quick --json", { timeout: 180_000 }, async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", hasCommand("passt"))) return;
    const r = await runBench(["net", "--quick", "--json", "--mib", "1", "--rtts", "10"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = benchJsonLines(r.out);
    assert.deepEqual(
      lines.map((o) => [o.case, o.unit, o.baseline_name]),
      [
        ["tcp-1MiB", "MB/s", "node-passt"],
        ["udp-rtt-64B", "rt/s", "node-passt"],
      ],
    );
    for (const o of lines) {
      assert.deepEqual(Object.keys(o), BENCH_JSON_KEYS);
      for (const k of ["xenlab", "baseline", "ratio"])
        assert.ok(Number.isFinite(o[k]), `${k}: ${String(o[k])}`);
    }
  });

  it("runs beside busy neighbours with --busy 1: every JSON line carries busy: 1", {
    timeout: 180_000,
  }, async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", hasCommand("passt"))) return;
    const r = await runBench(["net", "--quick", "--json", "--mib", "1", "--rtts", "10", "--busy", "1"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = benchJsonLines(r.out);
    assert.deepEqual(
      lines.map((o) => [o.case, o.busy]),
      [
        ["tcp-1MiB", 1],
        ["udp-rtt-64B", 1],
      ],
    );
    for (const o of lines) assert.deepEqual(Object.keys(o), [...BENCH_JSON_KEYS, "busy"]);
  });

  it("refuses an unknown option with exit 2", async () => {
    const r = await runBench(["net", "--nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /^xenlab bench net: Unknown option '--nope'; see 'xenlab bench net --help'\n$/);
  });
});
