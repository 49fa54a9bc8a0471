/**
 * Process entry of the load generator: `node loadgen-child.js '<LoadConfig as JSON>'`
 * prints one LoadResult as JSON on stdout. The bench spawns it pinned to its own CPU.
 */

import { errorMessage } from "../lib/errors.ts";
import { type LoadConfig, runLoad, type Target } from "./loadgen.ts";

function parseConfig(text: string | undefined): LoadConfig {
  if (text === undefined) throw new TypeError("Missing argument: pass the load config as JSON");
  const v: unknown = JSON.parse(text);
  if (typeof v !== "object" || v === null) throw new TypeError(`Invalid load config '${text}'`);
  const o = v as Record<string, unknown>;
  const num = (x: unknown, k: string): number => {
    if (typeof x !== "number" || !Number.isFinite(x))
      throw new TypeError(`Invalid load config: '${k}' must be a number`);
    return x;
  };
  const str = (x: unknown, k: string): string => {
    if (typeof x !== "string") throw new TypeError(`Invalid load config: '${k}' must be a string`);
    return x;
  };
  if (!Array.isArray(o.targets) || o.targets.length === 0) {
    throw new TypeError("Invalid load config: 'targets' must be a non-empty array");
  }
  const targets = o.targets.map((t: unknown): Target => {
    const r = (typeof t === "object" && t !== null ? t : {}) as Record<string, unknown>;
    return { socket: str(r.socket, "targets[].socket"), daemonPid: num(r.daemonPid, "targets[].daemonPid") };
  });
  return {
    targets,
    tag: str(o.tag, "tag"),
    clients: num(o.clients, "clients"),
    warmupMs: num(o.warmupMs, "warmupMs"),
    settleMs: num(o.settleMs, "settleMs"),
    windowMs: num(o.windowMs, "windowMs"),
    windows: num(o.windows, "windows"),
    seed: num(o.seed, "seed"),
  };
}

try {
  const result = await runLoad(parseConfig(process.argv[2]));
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (e) {
  process.stderr.write(`loadgen: ${errorMessage(e)}\n`);
  process.exitCode = 1;
}
