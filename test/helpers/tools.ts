/**
 * Running real client programs (Xen's test-xenstore, Debian's xenstore-* tools, pyxs
 * scripts) against a daemon's socket.
 */
import { spawn } from "node:child_process";

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  input?: string;
  /** The working directory (default: this process's). */
  cwd?: string;
}

/** Runs `cmd args` to completion (killed after `timeoutMs`); never rejects on a non-zero exit. */
export function runTool(cmd: string, args: readonly string[], opts: ToolOptions = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...opts.env },
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** One command's exit code and output, for comparing two daemons. */
export interface Outcome {
  command: string;
  code: number | null;
  stdout: string;
  stderr: string;
}

function showOutcome(o: Outcome): string {
  return `rc=${o.code} stdout=${JSON.stringify(o.stdout)} stderr=${JSON.stringify(o.stderr)}`;
}

/** Lines describing every outcome that differs between the reference run and the subject's. */
export function outcomeDifferences(
  ref: readonly Outcome[],
  sub: readonly Outcome[],
  subjectName: string,
): string[] {
  const diffs: string[] = [];
  for (let i = 0; i < Math.max(ref.length, sub.length); i++) {
    const x = ref[i];
    const y = sub[i];
    if (x && y && showOutcome(x) === showOutcome(y)) continue;
    diffs.push(
      `${x?.command ?? y?.command}\n    reference: ${x ? showOutcome(x) : "<missing>"}\n    ${subjectName}: ${y ? showOutcome(y) : "<missing>"}`,
    );
  }
  return diffs;
}
