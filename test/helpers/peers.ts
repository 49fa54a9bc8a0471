/**
 * Starting daemons and finding real peers for tests.
 *
 * A test that needs a real peer (Debian's xenstore-* tools, Xen's test-xenstore, pyxs, the
 * reference C xenstored) calls `requirePeer()`: when the peer is missing it skips on a
 * developer's machine and fails under CI=true, where .ci/run must have installed it.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** The shared references: $XENLAB_SHARED (set by .ci/run), else ../shared beside the checkout. */
export const SHARED = process.env.XENLAB_SHARED ?? resolve(REPO, "../shared");
export const REFXS = join(SHARED, "refxs");
export const REFXS_CACHE = process.env.REFXS_CACHE ?? "/var/tmp/refxs-cache";
export const REFXS_BIN = join(REFXS_CACHE, "root/usr/lib/xen-4.17/bin");
export const REFXS_LIB = join(REFXS_CACHE, "root/usr/lib/x86_64-linux-gnu");
export const TEST_XENSTORE = join(REFXS_BIN, "test-xenstore");

/** Where a peer is missing: fail under CI, skip elsewhere. Returns false when skipped. */
export function requirePeer(t: TestContext, what: string, present: boolean): boolean {
  if (present) return true;
  if (process.env.CI === "true" || process.env.CI === "1") {
    throw new Error(`Required peer missing under CI: ${what} (.ci/run must install it)`);
  }
  t.skip(`peer missing: ${what}`);
  return false;
}

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function tempDir(prefix = "xenlab-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface RunningDaemon {
  socket: string;
  pid: number;
  /** Lines the daemon wrote to stderr so far (its log). */
  stderr: () => string;
  stop(): Promise<void>;
}

/**
 * Starts `xenlab xenstored` (from source, through tsx) on a fresh socket and resolves once it
 * prints its listening line.
 */
export async function startXenlab(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunningDaemon> {
  const dir = tempDir("xenlab-xs-");
  const socket = join(dir, "socket");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO, "src/cli/main.ts"), "xenstored", "--socket", socket, ...args],
    { cwd: REPO, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  await new Promise<void>((res, rej) => {
    let out = "";
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes("listening on")) {
        child.stdout!.off("data", onData);
        child.stdout!.resume();
        res();
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) =>
      rej(new Error(`xenlab xenstored exited with ${code} before listening:\n${err}`)),
    );
  });
  return {
    socket,
    pid: child.pid!,
    stderr: () => err,
    stop: () => stopChild(child, () => rmSync(dir, { recursive: true, force: true })),
  };
}

function stopChild(child: ChildProcess, cleanup: () => void): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      cleanup();
      res();
      return;
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(timer);
      cleanup();
      res();
    });
    child.kill("SIGTERM");
  });
}

/** True when ../shared/refxs can start the reference daemon (its cache may still be empty). */
export function refxsAvailable(): boolean {
  return existsSync(join(REFXS, "start.sh")) && hasCommand("gcc");
}

/**
 * Starts the reference C xenstored (Xen 4.17, through ../shared/refxs/start.sh) on a fresh
 * socket. `extra` are daemon arguments (quotas, ...); `env` e.g. REFXS_DOMAINS.
 */
export async function startRefxs(extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunningDaemon> {
  const dir = tempDir("refxs-");
  const socket = join(dir, "socket");
  const args = [join(REFXS, "start.sh"), socket, ...(extra.length ? ["--", ...extra] : [])];
  const pid = Number(
    execFileSync("bash", args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
      .toString()
      .trim(),
  );
  return {
    socket,
    pid,
    stderr: () => "",
    stop: async () => {
      execFileSync("bash", [join(REFXS, "stop.sh"), String(pid), socket], { stdio: "ignore" });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
