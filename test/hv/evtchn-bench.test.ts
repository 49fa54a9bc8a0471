/**
 * Smoke test of `xenlab bench evtchn`: a tiny --json run, checking the shape of the output only.
 * Timings never go in tests.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const KEYS = ["bench", "case", "unit", "xenlab", "baseline", "baseline_name", "ratio"];

function runBench(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res, rej) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "bench", "evtchn", ...args],
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

describe("xenlab bench evtchn", () => {
  it("prints one JSON line per case (block, async) with --json", { timeout: 120_000 }, async () => {
    const r = await runBench(["--json", "--runs", "1", "--rounds", "200", "--warmup", "20"]);
    assert.equal(r.code, 0, `bench failed:\n${r.err}`);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { case: string }).case),
      ["block", "async"],
    );
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), KEYS);
      assert.equal(o.bench, "evtchn");
      assert.equal(o.unit, "rt/s");
      assert.equal(o.baseline_name, "atomics");
      for (const k of ["xenlab", "baseline", "ratio"]) assert.ok(Number.isFinite(o[k]), `${k} in ${line}`);
    }
  });

  it("rejects an unknown option with exit code 2", async () => {
    const r = await runBench(["--nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /Unknown option '--nope'/);
  });
});
