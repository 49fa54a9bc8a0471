/**
 * Running `xenlab bench …` from source for the smoke tests, and the keys every `--json` line
 * of every benchmark carries.
 */
import { join } from "node:path";
import { REPO } from "./peers.ts";
import { runTool } from "./tools.ts";

export const BENCH_JSON_KEYS = ["bench", "case", "unit", "xenlab", "baseline", "baseline_name", "ratio"];

/** `xenlab bench <args>` through tsx, from the repository root. */
export async function runBench(
  args: readonly string[],
): Promise<{ code: number | null; out: string; err: string }> {
  const r = await runTool(
    process.execPath,
    ["--import", "tsx", join(REPO, "src/cli/main.ts"), "bench", ...args],
    {
      timeoutMs: 115_000,
    },
  );
  return { code: r.code, out: r.stdout, err: r.stderr };
}

/** A `--json` run's output, one object a line. */
export function benchJsonLines(out: string): Record<string, unknown>[] {
  return out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
