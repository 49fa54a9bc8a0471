/**
 * Starting, pinning and stopping the daemons a benchmark compares: the reference C
 * xenstored through ../shared/refxs/start.sh, and any command that serves a socket
 * (`node dist/cli/main.js xenstored --socket {socket}`).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { utf8, XsType } from "../xenstore/wire.ts";
import { Conn } from "./loadgen.ts";

const execFileP = promisify(execFile);

export interface Daemon {
  /** What runs, for the report: "cxenstored", "xenlab", "cxenstored (as xenlab)". */
  label: string;
  pid: number;
  socket: string;
  log: string;
  stop(): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

/** True once the socket answers a GET_DOMAIN_PATH with any reply. */
async function answers(socket: string): Promise<boolean> {
  let c: Conn | null = null;
  try {
    c = await Conn.open(socket);
    await c.request(XsType.GET_DOMAIN_PATH, 0, utf8("0\0"));
    return true;
  } catch {
    return false;
  } finally {
    c?.close();
  }
}

/** The last lines of a log file, or "(no log)". */
export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Starts the reference C xenstored on `socket` (state in `socket.d/`). */
export async function startReference(refxs: string, socket: string, label = "cxenstored"): Promise<Daemon> {
  const start = join(refxs, "start.sh");
  const stop = join(refxs, "stop.sh");
  if (!existsSync(start)) throw new Error(`Cannot start the reference daemon: '${start}' is missing`);
  const { stdout } = await execFileP("bash", [start, socket], { env: process.env });
  const pid = Number(stdout.trim().split("\n").pop());
  if (!Number.isInteger(pid) || pid <= 0)
    throw new Error(`Cannot start the reference daemon: start.sh printed '${stdout}'`);
  return {
    label,
    pid,
    socket,
    log: `${socket}.d/xenstored.log`,
    stop: async () => {
      await execFileP("bash", [stop, String(pid), socket]).catch(() => undefined);
    },
  };
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((res) => {
    const timer = setTimeout(() => res(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      res(true);
    });
  });
}

/**
 * Starts `argv` (with `{socket}` replaced) and waits until the socket answers. Its stdout and
 * stderr go to `log` (a file, so a chatty daemon never blocks on a full pipe).
 */
export async function startCommand(
  argv: readonly string[],
  socket: string,
  log: string,
  label: string,
  cwd?: string,
): Promise<Daemon> {
  const [cmd, ...args] = argv.map((a) => a.replaceAll("{socket}", socket));
  if (cmd === undefined) throw new RangeError("Cannot start the daemon: empty command");
  const fd = openSync(log, "a");
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { stdio: ["ignore", fd, fd], ...(cwd === undefined ? {} : { cwd }) });
  } finally {
    closeSync(fd);
  }
  let spawnError: Error | null = null;
  child.on("error", (e) => {
    spawnError = e;
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    if (!(await waitExit(child, 5000))) {
      child.kill("SIGKILL");
      await waitExit(child, 5000);
    }
  };
  const deadline = performance.now() + 15_000;
  for (;;) {
    if (spawnError !== null || child.exitCode !== null || child.signalCode !== null) {
      const why = spawnError ?? `exit code ${child.exitCode ?? child.signalCode}`;
      throw new Error(
        `Cannot start '${argv.join(" ")}': it stopped (${why}) before answering; log:\n${tail(log)}`,
      );
    }
    if (existsSync(socket) && (await answers(socket))) break;
    if (performance.now() > deadline) {
      await stop();
      throw new Error(
        `Cannot start '${argv.join(" ")}': no answer on '${socket}' within 15 s; log:\n${tail(log)}`,
      );
    }
    await sleep(50);
  }
  if (child.pid === undefined) throw new Error(`Cannot start '${argv.join(" ")}': no pid`);
  return { label, pid: child.pid, socket, log, stop };
}

export function hasTaskset(): boolean {
  return ["/usr/bin/taskset", "/bin/taskset"].some((p) => existsSync(p));
}

/** Pins every thread of `pid` to `cpu` (taskset -a: a Node daemon has several threads). */
export async function pin(pid: number, cpu: number): Promise<void> {
  await execFileP("taskset", ["-a", "-p", "-c", String(cpu), String(pid)]);
}
