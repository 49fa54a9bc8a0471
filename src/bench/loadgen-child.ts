/**
 * Process entry of the load generator: `node loadgen-child.js '<LoadConfig as JSON>'`
 * prints one LoadResult as JSON on stdout. The bench spawns it pinned to its own CPU.
 */
import { type LoadConfig, runLoad } from "./loadgen.ts";

function parseConfig(text: string | undefined): LoadConfig {
  if (text === undefined) throw new TypeError("Missing argument: pass the load config as JSON");
  const v: unknown = JSON.parse(text);
  if (typeof v !== "object" || v === null) throw new TypeError(`Invalid load config '${text}'`);
  const o = v as Record<string, unknown>;
  const num = (k: string): number => {
    const x = o[k];
    if (typeof x !== "number" || !Number.isFinite(x))
      throw new TypeError(`Invalid load config: '${k}' must be a number`);
    return x;
  };
  const str = (k: string): string => {
    const x = o[k];
    if (typeof x !== "string") throw new TypeError(`Invalid load config: '${k}' must be a string`);
    return x;
  };
  return {
    socket: str("socket"),
    daemonPid: num("daemonPid"),
    tag: str("tag"),
    clients: num("clients"),
    warmupMs: num("warmupMs"),
    durationMs: num("durationMs"),
    seed: num("seed"),
  };
}

try {
  const result = await runLoad(parseConfig(process.argv[2]));
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (e) {
  process.stderr.write(`loadgen: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
