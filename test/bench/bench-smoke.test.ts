/**
 * Smoke test of `xenlab bench xenstore`: a --quick --json run against the reference C
 * xenstored, checking the shape of the output only. Timings never go in tests.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { hasCommand, REPO, refxsAvailable, requirePeer, TEST_XENSTORE } from "../helpers/peers.ts";

const KEYS = ["bench", "case", "unit", "xenlab", "baseline", "baseline_name", "ratio"];

function runBench(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res, rej) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", join(REPO, "src/cli/main.ts"), "bench", ...args],
      {
        cwd: REPO,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("error", rej);
    child.on("close", (code) => res({ code, out, err }));
  });
}

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
      assert.deepEqual(Object.keys(o), KEYS);
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

  it("rejects an unknown option with exit code 2", async () => {
    const r = await runBench(["xenstore", "--no-such-option"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Unknown option '--no-such-option'/);
  });
});
