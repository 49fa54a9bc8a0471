/**
 * Fuzz target (b): `xenlab xenstored` in a child process, over its Unix socket. Two fuzz
 * connections send batches; after each batch the fuzzer completes any packet left half-sent
 * (zero bytes, `StreamModel.filler()`) and sends a sentinel request, so it knows exactly how
 * many replies must come back, in order, each answering its request. Where the fuzzer's own
 * framing model sees a header announcing more than 4096 bytes, the daemon must answer the
 * requests before it and then close the connection (C `handle_input` → `ignore_connection`);
 * a close anywhere else, a missing reply after 20 s (a hang) or the child exiting is a
 * failure. Every 100 batches a fresh connection runs the well-behaved script, restores the
 * quotas the fuzz may have changed, removes what the fuzz wrote and sends CONTROL `check`,
 * whose findings the daemon logs at error level: its stderr must stay free of them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_QUOTAS, HARD_QUOTAS, SOFT_QUOTAS } from "../xenstore/quota.ts";
import { encodePacket, fromLatin1, latin1, PacketReader, type XsPacket, XsType } from "../xenstore/wire.ts";
import { checkInbox, FuzzFailure } from "./check.ts";
import { StreamModel } from "./frame.ts";
import { chunks, completeStream } from "./gen.ts";
import { type Exchange, goodClient } from "./good.ts";
import { FuzzRun, type TargetOptions } from "./target.ts";

const REPLY_TIMEOUT_MS = 20_000;
const GOOD_EVERY = 100;

/** A raw client: bytes out, every packet in, close noticed. */
class RawConn {
  readonly socket: Socket;
  readonly #reader = new PacketReader(Number.MAX_SAFE_INTEGER);
  readonly inbox: XsPacket[] = [];
  closed = false;
  #wake: (() => void) | null = null;
  /** Requests sent and not yet answered, with what the fuzzer knows of them. */
  readonly model = new StreamModel();
  readonly txIds = new Set<number>();

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (d: Buffer) => {
      for (const p of this.#reader.push(d)) this.inbox.push(p);
      this.#wake?.();
    });
    const gone = () => {
      this.closed = true;
      this.#wake?.();
    };
    socket.on("close", gone);
    socket.on("end", gone);
    socket.on("error", gone);
  }

  static open(path: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      s.once("connect", () => {
        s.off("error", reject);
        resolve(new RawConn(s));
      });
      s.once("error", reject);
    });
  }

  /** Waits until `n` packets that are not watch events are in the inbox, or the socket closes. */
  async replies(n: number, timeoutMs: number): Promise<"ok" | "closed" | "timeout"> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let count = 0;
      for (const p of this.inbox) if (p.type !== XsType.WATCH_EVENT) count++;
      if (count >= n) return "ok";
      if (this.closed) return "closed";
      const left = deadline - Date.now();
      if (left <= 0) return "timeout";
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.#wake = () => {
          clearTimeout(t);
          this.#wake = null;
          res();
        };
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The daemon under test, in a child process. */
class Daemon {
  readonly child: ChildProcess;
  readonly socket: string;
  readonly dir: string;
  stderr = "";
  exited: string | null = null;

  private constructor(child: ChildProcess, dir: string, socket: string) {
    this.child = child;
    this.dir = dir;
    this.socket = socket;
    child.stderr!.on("data", (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > 1 << 20) this.stderr = this.stderr.slice(-(1 << 19));
    });
    child.on("exit", (code, signal) => {
      this.exited = `exited with code ${code} signal ${signal}`;
    });
  }

  static async start(): Promise<Daemon> {
    const dir = mkdtempSync(join(tmpdir(), "xenlab-fuzz-"));
    const socket = join(dir, "socket");
    const here = import.meta.url;
    const ts = here.endsWith(".ts");
    const main = new URL(`../cli/main.${ts ? "ts" : "js"}`, here).pathname;
    const args = [
      ...(ts ? ["--import", "tsx"] : []),
      main,
      "xenstored",
      "--socket",
      socket,
      "--log-level",
      process.env.FUZZ_DAEMON_LOG ?? "error",
    ];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    const d = new Daemon(child, dir, socket);
    await new Promise<void>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(
        () => reject(new Error(`xenlab xenstored did not start: ${d.stderr}`)),
        60_000,
      );
      child.stdout!.on("data", (b: Buffer) => {
        out += b.toString();
        if (out.includes("listening on")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on("exit", () => {
        clearTimeout(timer);
        reject(new Error(`xenlab xenstored exited at start: ${d.stderr}`));
      });
    });
    return d;
  }

  async stop(): Promise<void> {
    if (this.exited === null) {
      const gone = new Promise<void>((r) => this.child.once("exit", () => r()));
      this.child.kill("SIGTERM");
      await gone;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One request and its reply over a raw connection, for the well-behaved client. */
function exchangeOver(c: RawConn): Exchange {
  return async (p) => {
    c.socket.write(encodePacket(p));
    for (;;) {
      const at = c.inbox.findIndex((q) => q.type !== XsType.WATCH_EVENT);
      if (at >= 0) return c.inbox.splice(0, at + 1);
      const r = await c.replies(1, REPLY_TIMEOUT_MS);
      if (r !== "ok") throw new Error(`well-behaved client: ${r} waiting for the reply to ${p.type}`);
    }
  };
}

export async function fuzzSocket(o: TargetOptions): Promise<void> {
  const run = new FuzzRun("socket", o, 0x736f636b);
  const { rng, stats, fail } = run;
  const daemon = await Daemon.start();
  const conns: RawConn[] = [];
  try {
    const open = async () => {
      try {
        return await RawConn.open(daemon.socket);
      } catch (e) {
        return fail(`cannot connect: ${(e as Error).message}; daemon ${daemon.exited ?? "running"}`);
      }
    };
    conns.push(await open(), await open());

    const wellBehaved = async () => {
      const c = await open();
      const ex = exchangeOver(c);
      const ask = async (type: number, payload: string) => {
        const got = await ex({ type, reqId: 1, txId: 0, payload: latin1(payload) });
        return got.at(-1)!;
      };
      try {
        for (const q of HARD_QUOTAS)
          await ask(XsType.CONTROL, `quota\0set\0${q.name}\0${DEFAULT_QUOTAS[q.key]}\0`);
        for (const q of SOFT_QUOTAS)
          await ask(XsType.CONTROL, `quota-soft\0set\0${q.name}\0${DEFAULT_QUOTAS[q.key]}\0`);
        await goodClient(ex, `/fuzz-good-${run.batchNo}`, "n0\0");
        const before = daemon.stderr.length;
        const r = await ask(XsType.CONTROL, "check\0");
        if (fromLatin1(r.payload) !== "OK\0") fail("CONTROL check did not answer OK");
        // What the fuzz left: everything but /tool goes, so the store stays small.
        const top = await ask(XsType.DIRECTORY, "/\0");
        for (const name of fromLatin1(top.payload).split("\0")) {
          if (name !== "" && name !== "tool") await ask(XsType.RM, `/${name}\0`);
        }
        await new Promise((r) => setTimeout(r, 20)); // let the daemon's log line arrive
        const logged = daemon.stderr.slice(before);
        if (logged.includes("check:")) fail(`CONTROL check found problems: ${logged.slice(0, 500)}`);
      } catch (e) {
        if (e instanceof FuzzFailure) throw e;
        fail(`${(e as Error).message}; daemon ${daemon.exited ?? "running"}`);
      } finally {
        c.close();
      }
      stats.goodChecks++;
      stats.treeChecks++;
    };

    /** Sends `bytes` on `c`, completes the stream and checks every reply. */
    const sendBatch = async (c: RawConn, bytes: Uint8Array) => {
      const { bytes: all, requests, closes } = completeStream(c.model, bytes);
      // Random write boundaries, except when the daemon is to hang up: a write after its close
      // fails with EPIPE and takes the replies still unread in our socket with it.
      const parts = chunks(all, rng);
      for (const ch of closes ? [all] : parts) if (!c.socket.destroyed) c.socket.write(ch);
      const r = await c.replies(requests.length, REPLY_TIMEOUT_MS);
      if (daemon.exited !== null) fail(`the daemon ${daemon.exited}: ${daemon.stderr.slice(-2000)}`);
      if (r === "timeout") fail(`hang: ${requests.length} replies expected, ${c.inbox.length} packets came`);
      if (r === "closed")
        fail(
          `the daemon closed the connection after ${c.inbox.length} of ${requests.length} replies; log: ${daemon.stderr.slice(-1500)}`,
        );
      checkInbox(c.inbox, requests, stats, fail, (req, p) => {
        if (req.type === XsType.TRANSACTION_START && p.type === XsType.TRANSACTION_START) {
          c.txIds.add(Number(fromLatin1(p.payload).slice(0, -1)));
        }
      });
      c.inbox.length = 0;
      if (closes) {
        const end = await c.replies(Number.MAX_SAFE_INTEGER, REPLY_TIMEOUT_MS);
        if (end !== "closed")
          fail(`the daemon kept the connection open after a header announcing over 4096 bytes`);
        stats.drops++;
        conns[conns.indexOf(c)] = await open();
      }
    };

    if (o.replay !== undefined) {
      run.current = o.replay;
      await sendBatch(conns[0]!, o.replay);
      await wellBehaved();
      return;
    }
    while (stats.packets < o.count) {
      const batchNo = ++run.batchNo;
      const c = rng.pick(conns);
      const other = conns.find((x) => x !== c)!;
      await sendBatch(c, run.batch([...c.txIds], [...other.txIds], DEFAULT_QUOTAS.pathMax, 16));
      if (batchNo % GOOD_EVERY === 0) await wellBehaved();
    }
    await wellBehaved();
  } finally {
    for (const c of conns) c.close();
    await daemon.stop();
    run.finish();
  }
}
