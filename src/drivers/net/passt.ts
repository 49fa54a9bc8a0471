/**
 * A vif's uplink to a real network stack: one passt process (Debian's `passt`, user-mode networking
 * with no root) per vif, started in the foreground on its own Unix socket, and netback's frames on
 * that socket in QEMU's stream framing (qemu-stream.ts). passt answers ARP and DHCP itself, and maps
 * the guest's TCP and UDP to the host's sockets; the gateway address it hands out by DHCP reaches
 * the host's loopback (passt's default, undone by --no-map-gw). docs/net.md has the details.
 *
 * Frames are written one by one: Debian's passt 2023-03-09 drops an ARP request that reaches it in
 * the same read as an IPv4 frame before it (checked here), so batching writes loses ARP.
 *
 * passt is started with `--one-off`: it exits when its one client (this uplink) goes, so a dom0
 * that dies leaves no passt behind; close() also ends it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeStreamFrame, StreamFrameReader } from "./qemu-stream.ts";

export class PasstError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PasstError";
  }
}

export interface PasstOptions {
  /** Names the socket file (e.g. `vif1.0`). */
  readonly name: string;
  /** Each frame passt sends, whole. */
  onFrame(frame: Uint8Array): void;
  /** passt went away (exit, or the socket closed) while the uplink was open. */
  onClose(reason: string): void;
  /** The passt binary (default `passt` on PATH; XENLAB_PASST overrides). */
  readonly binary?: string;
  /** Extra arguments for passt (e.g. `--pcap FILE`). */
  readonly args?: readonly string[];
  /** How long to wait for passt's socket (default 5 s). */
  readonly timeoutMs?: number;
}

export class PasstUplink {
  readonly socketPath: string;
  readonly #child: ChildProcess;
  readonly #sock: Socket;
  #closed = false;

  private constructor(socketPath: string, child: ChildProcess, sock: Socket) {
    this.socketPath = socketPath;
    this.#child = child;
    this.#sock = sock;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Starts passt and connects to it; rejects with one line naming the cause and the fix. */
  static async start(o: PasstOptions): Promise<PasstUplink> {
    const bin = o.binary ?? process.env.XENLAB_PASST ?? "passt";
    const rand = Math.random().toString(36).slice(2, 8);
    // passt drops root for nobody before it binds: the socket goes in the sticky /tmp itself.
    const socketPath = join(tmpdir(), `xenlab-passt-${process.pid}-${o.name}-${rand}.sock`);
    const args = ["-f", "-q", "-1", "-t", "none", "-u", "none", "-s", socketPath, ...(o.args ?? [])];
    const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (s: string) => {
      if (stderr.length < 4096) stderr += s;
    });
    const exited = new Promise<string>((resolve) => {
      child.once("error", (e: NodeJS.ErrnoException) =>
        resolve(
          e.code === "ENOENT"
            ? `${bin} is not installed (apt-get install passt, or set XENLAB_PASST)`
            : `cannot run ${bin}: ${e.message}`,
        ),
      );
      child.once("exit", (code, signal) => {
        const why = stderr
          .split("\n")
          .filter((l) => l !== "" && !l.startsWith("Failed to send") && !l.startsWith("Don't run as root"))
          .join("; ");
        resolve(`${bin} exited (${signal ?? code})${why === "" ? "" : `: ${why}`}`);
      });
    });
    let exitReason: string | null = null;
    void exited.then((r) => {
      exitReason = r;
    });
    // passt binds its socket before it listens: ENOENT, then ECONNREFUSED, until it is ready.
    const deadline = Date.now() + (o.timeoutMs ?? 5000);
    let sock: Socket | null = null;
    while (sock === null) {
      if (exitReason !== null) throw new PasstError(exitReason);
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new PasstError(`${bin} did not open its socket ${socketPath} within ${o.timeoutMs ?? 5000} ms`);
      }
      sock = await new Promise<Socket | null>((resolve, reject) => {
        const s = connect(socketPath);
        s.once("connect", () => resolve(s));
        s.once("error", (e: NodeJS.ErrnoException) => {
          s.destroy();
          if (e.code === "ENOENT" || e.code === "ECONNREFUSED") setTimeout(() => resolve(null), 5);
          else {
            child.kill("SIGKILL");
            reject(new PasstError(`cannot connect to passt's socket ${socketPath}: ${e.message}`));
          }
        });
      });
    }
    sock.setNoDelay(true);
    const up = new PasstUplink(socketPath, child, sock);
    const reader = new StreamFrameReader();
    sock.on("data", (chunk: Buffer) => {
      for (const f of reader.push(chunk)) o.onFrame(f);
      if (reader.error !== null) {
        o.onClose(reader.error.message);
        void up.close();
      }
    });
    sock.on("error", () => {
      // "close" follows and reports it
    });
    sock.on("close", () => {
      if (!up.#closed) o.onClose(exitReason ?? "passt closed its socket");
      void up.close();
    });
    return up;
  }

  /** One frame to passt. */
  send(frame: Uint8Array): void {
    if (this.#closed) return;
    this.#sock.write(encodeStreamFrame(frame));
  }

  /** Ends the connection and passt (which exits by itself once its one client goes). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#sock.destroy();
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      const gone = new Promise((r) => this.#child.once("exit", r));
      this.#child.kill("SIGTERM");
      await Promise.race([gone, new Promise((r) => setTimeout(r, 1000).unref())]);
      if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill("SIGKILL");
    }
    rmSync(this.socketPath, { force: true });
  }
}
