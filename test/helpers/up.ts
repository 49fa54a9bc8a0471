/**
 * `xenlab up` from source in a child process, for the tests that drive a host from the command
 * line (host, console and block tools): started on a socket, ready once it prints
 * `running (pid`, stopped with SIGTERM.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { REPO } from "./peers.ts";
import { until } from "./until.ts";

export const MAIN = join(REPO, "src/cli/main.ts");

export interface RunningHost {
  readonly child: ChildProcess;
  /** Everything the host printed on stdout so far. */
  stdout(): string;
  stop(): Promise<void>;
}

/** Starts `xenlab up --socket SOCKET [args]` and waits (30 s at most) until it runs. */
export async function startUp(socket: string, args: readonly string[] = []): Promise<RunningHost> {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, "up", "--socket", socket, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.resume();
  const started = () => out.includes("running (pid");
  try {
    await until("xenlab up to start", () => started() || child.exitCode !== null, {
      ms: 30_000,
      every: 50,
      detail: () => out,
    });
    if (!started()) assert.fail(`xenlab up did not start:\n${out}`);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  return {
    child,
    stdout: () => out,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

export const TSX = join(REPO, "node_modules/tsx/dist/esm/index.mjs");

/**
 * `node --import tsx args` in `cwd` (runTool runs in ours), with `stdin` fed to it and `env` added
 * to ours; killed after 60 s.
 */
export function runIn(
  cwd: string,
  args: string[],
  stdin?: Buffer,
  env?: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string; out: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", TSX, ...args], {
      cwd,
      ...(env === undefined ? {} : { env: { ...process.env, ...env } }),
      stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    if (stdin !== undefined) child.stdin!.end(stdin);
    const outs: Buffer[] = [];
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => {
      outs.push(d);
    });
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      const out = Buffer.concat(outs);
      resolve({ code, stdout: out.toString(), stderr, out });
    });
  });
}
