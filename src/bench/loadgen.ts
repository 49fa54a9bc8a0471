/**
 * The XenStore load generator of `xenlab bench xenstore`: closed-loop clients over the
 * daemon's Unix socket, each with one request outstanding, speaking the wire format through
 * our own codec (src/xenstore/wire.ts).
 *
 * Each client works on its own subtree `/bench/<tag>/c<i>/k0..k7` and draws its next step
 * from a seeded PRNG, so both daemons see the same sequence:
 *
 *   50%  READ   k<j>
 *   30%  WRITE  k<j> (16 bytes)
 *   20%  transaction: TRANSACTION_START, READ k<j>, WRITE k<j'>, TRANSACTION_END "T"
 *
 * i.e. per 10 steps 16 requests: 44% reads, 31% writes, 25% transaction start/end. Every
 * request is one "op". Latencies are recorded per request type and for whole
 * transactions, only inside the measuring window (after a warm-up).
 *
 * `runLoad()` is meant to run in its own process (loadgen-child.ts), pinned to its own CPU,
 * so that its cost is the same whichever daemon it drives and shows up in `cpuUser`.
 */
import { connect, type Socket } from "node:net";
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { encodePacket, fromUtf8, PacketReader, utf8, type XsPacket, XsType } from "../xenstore/wire.ts";
import { cpuSeconds } from "./procstat.ts";

export interface LoadConfig {
  socket: string;
  /** The daemon's pid, to sample its CPU time over the measuring window. */
  daemonPid: number;
  clients: number;
  warmupMs: number;
  durationMs: number;
  /** Subtree name under /bench, unique per run. */
  tag: string;
  seed: number;
}

export interface Latency {
  count: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
}

export const LATENCY_KINDS = [
  "all",
  "read",
  "write",
  "tx_start",
  "tx_read",
  "tx_write",
  "tx_end",
  "tx",
] as const;
export type LatencyKind = (typeof LATENCY_KINDS)[number];

export interface LoadResult {
  ops: number;
  seconds: number;
  opsPerSec: number;
  /** Generator CPU (user + system) over the window, as a fraction of one CPU. */
  cpu: number;
  /** Daemon CPU seconds (user + system, all threads) over the window. */
  daemonCpu: number;
  /** Transactions retried after EAGAIN (none expected: clients never share nodes). */
  conflicts: number;
  latency: Record<LatencyKind, Latency>;
}

/** A reply that is an XS_ERROR, with its error name. */
export class XsReplyError extends Error {
  readonly errno: string;
  constructor(op: string, errno: string) {
    super(`XenStore ${op} failed with '${errno}'`);
    this.name = "XsReplyError";
    this.errno = errno;
  }
}

/** One socket connection with at most one request outstanding. */
export class Conn {
  readonly #sock: Socket;
  readonly #reader = new PacketReader();
  #reqId = 0;
  #pending: { resolve: (p: XsPacket) => void; reject: (e: Error) => void; reqId: number } | null = null;
  #closed: Error | null = null;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.on("error", (e: Error) => this.#fail(e));
    sock.on("close", () => this.#fail(new Error("Connection to xenstored closed")));
  }

  /**
   * Connects, retrying while the daemon's listen backlog is full (connect() on a Unix
   * socket fails with EAGAIN then, rather than waiting).
   */
  static async open(path: string): Promise<Conn> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await Conn.#connect(path);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== "EAGAIN" || attempt >= 200) throw e;
        await new Promise((res) => setTimeout(res, 5));
      }
    }
  }

  static #connect(path: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      let conn: Conn | null = null;
      // `onread` reads into one reused buffer and skips the Readable stream machinery: the
      // generator's own cost per op matters here (PacketReader copies what it keeps).
      const sock = connect({
        path,
        onread: {
          buffer: Buffer.allocUnsafe(64 * 1024),
          callback: (n: number, buf: Uint8Array): boolean => {
            if (conn !== null) conn.#onData(buf.subarray(0, n));
            return true;
          },
        },
      });
      const onError = (e: Error) => reject(e);
      sock.once("error", onError);
      sock.once("connect", () => {
        sock.off("error", onError);
        conn = new Conn(sock);
        resolve(conn);
      });
    });
  }

  request(type: number, txId: number, payload: Uint8Array): Promise<XsPacket> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#pending) return Promise.reject(new Error("Cannot send: a request is already outstanding"));
    this.#reqId = (this.#reqId + 1) >>> 0;
    const reqId = this.#reqId;
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject, reqId };
      this.#sock.write(encodePacket({ type, reqId, txId, payload }));
    });
  }

  /** Like request(), but an XS_ERROR reply rejects with XsReplyError. */
  async call(type: number, txId: number, payload: Uint8Array, op: string): Promise<XsPacket> {
    const p = await this.request(type, txId, payload);
    if (p.type === XsType.ERROR) throw new XsReplyError(op, fromUtf8(p.payload).replace(/\0+$/, ""));
    return p;
  }

  /** True once the connection failed or was closed. */
  get closed(): boolean {
    return this.#closed !== null;
  }

  close(): void {
    this.#closed ??= new Error("Connection closed by the load generator");
    this.#sock.destroy();
  }

  #onData(chunk: Uint8Array): void {
    let packets: XsPacket[];
    try {
      packets = this.#reader.push(chunk);
    } catch (e) {
      this.#fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    for (const p of packets) {
      if (p.type === XsType.WATCH_EVENT) continue;
      const pending = this.#pending;
      if (pending === null) {
        this.#fail(new Error(`Unexpected reply type ${p.type} req_id ${p.reqId} with nothing outstanding`));
        return;
      }
      this.#pending = null;
      if (p.reqId !== pending.reqId) {
        pending.reject(new Error(`Reply req_id ${p.reqId} does not match request ${pending.reqId}`));
        continue;
      }
      pending.resolve(p);
    }
  }

  #fail(e: Error): void {
    this.#closed ??= e;
    const pending = this.#pending;
    this.#pending = null;
    pending?.reject(e);
  }
}

/** xorshift32: a small deterministic PRNG, so both daemons get the same op sequence. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const KEYS = 8;
const VALUE = "0123456789abcdef";
const NUL = utf8("\0");
const TX_COMMIT = utf8("T\0");

interface Recorder {
  recording: boolean;
  stop: boolean;
  ops: number;
  conflicts: number;
  hist: Record<LatencyKind, RecordableHistogram>;
}

function record(r: Recorder, kind: LatencyKind, t0: number, t1: number): void {
  if (!r.recording) return;
  r.hist[kind].record(Math.max(1, Math.round((t1 - t0) * 1e6)));
  if (kind !== "tx") r.ops++;
}

async function timed(
  r: Recorder,
  kind: LatencyKind,
  c: Conn,
  type: number,
  txId: number,
  payload: Uint8Array,
): Promise<XsPacket> {
  const t0 = performance.now();
  const p = await c.call(type, txId, payload, kind);
  record(r, kind, t0, performance.now());
  return p;
}

async function clientLoop(c: Conn, base: string, seed: number, r: Recorder): Promise<void> {
  const readP: Uint8Array[] = [];
  const writeP: Uint8Array[] = [];
  for (let j = 0; j < KEYS; j++) {
    readP.push(utf8(`${base}/k${j}\0`));
    writeP.push(utf8(`${base}/k${j}\0${VALUE}`));
  }
  const next = rng(seed);
  while (!r.stop) {
    const x = next();
    const step = x % 10;
    const j = (x >>> 8) % KEYS;
    if (step < 5) {
      await timed(r, "read", c, XsType.READ, 0, readP[j]!);
    } else if (step < 8) {
      await timed(r, "write", c, XsType.WRITE, 0, writeP[j]!);
    } else {
      const j2 = (x >>> 16) % KEYS;
      for (;;) {
        const t0 = performance.now();
        const start = await timed(r, "tx_start", c, XsType.TRANSACTION_START, 0, NUL);
        const tx = Number.parseInt(fromUtf8(start.payload), 10);
        await timed(r, "tx_read", c, XsType.READ, tx, readP[j]!);
        await timed(r, "tx_write", c, XsType.WRITE, tx, writeP[j2]!);
        try {
          await timed(r, "tx_end", c, XsType.TRANSACTION_END, tx, TX_COMMIT);
        } catch (e) {
          if (e instanceof XsReplyError && e.errno === "EAGAIN") {
            r.conflicts++;
            continue;
          }
          throw e;
        }
        record(r, "tx", t0, performance.now());
        break;
      }
    }
  }
}

function summarize(h: RecordableHistogram): Latency {
  if (h.count === 0) return { count: 0, meanUs: 0, p50Us: 0, p99Us: 0 };
  return {
    count: h.count,
    meanUs: h.mean / 1e3,
    p50Us: h.percentile(50) / 1e3,
    p99Us: h.percentile(99) / 1e3,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

/** Runs the closed-loop load: set up subtrees, warm up, measure, remove the subtrees. */
export async function runLoad(cfg: LoadConfig): Promise<LoadResult> {
  const conns = await Promise.all(Array.from({ length: cfg.clients }, () => Conn.open(cfg.socket)));
  const root = `/bench/${cfg.tag}`;
  try {
    await Promise.all(
      conns.map(async (c, i) => {
        for (let j = 0; j < KEYS; j++) {
          await c.call(XsType.WRITE, 0, utf8(`${root}/c${i}/k${j}\0${VALUE}`), "setup write");
        }
      }),
    );
    const hist = Object.fromEntries(LATENCY_KINDS.map((k) => [k, createHistogram()])) as Record<
      LatencyKind,
      RecordableHistogram
    >;
    const r: Recorder = { recording: false, stop: false, ops: 0, conflicts: 0, hist };
    const loops = conns.map((c, i) => clientLoop(c, `${root}/c${i}`, cfg.seed + i * 7919, r));
    // A client failing stops the others at once rather than after the window.
    const failed = Promise.all(loops).then(
      () => undefined,
      (e: unknown) => {
        r.stop = true;
        throw e;
      },
    );
    failed.catch(() => undefined);
    await Promise.race([sleep(cfg.warmupMs), failed]);
    r.recording = true;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const daemon0 = cpuSeconds(cfg.daemonPid);
    await Promise.race([sleep(cfg.durationMs), failed]);
    r.recording = false;
    const seconds = (performance.now() - t0) / 1e3;
    const cpu = process.cpuUsage(cpu0);
    const daemonCpu = cpuSeconds(cfg.daemonPid) - daemon0;
    r.stop = true;
    await failed;
    // "all" is every request: the sum of the per-request kinds (not whole transactions).
    for (const k of LATENCY_KINDS) if (k !== "all" && k !== "tx") hist.all.add(hist[k]);
    const latency = Object.fromEntries(LATENCY_KINDS.map((k) => [k, summarize(hist[k])])) as Record<
      LatencyKind,
      Latency
    >;
    await conns[0]!.call(XsType.RM, 0, utf8(`${root}\0`), "cleanup rm");
    return {
      ops: r.ops,
      seconds,
      opsPerSec: r.ops / seconds,
      cpu: (cpu.user + cpu.system) / 1e6 / seconds,
      daemonCpu,
      conflicts: r.conflicts,
      latency,
    };
  } finally {
    for (const c of conns) c.close();
  }
}

/**
 * Opens `n` connections that each send one GET_DOMAIN_PATH (so the daemon has seen them)
 * and then stay idle until closed.
 */
export async function openIdle(socket: string, n: number): Promise<Conn[]> {
  const conns: Conn[] = [];
  const batch = 16;
  try {
    for (let i = 0; i < n; i += batch) {
      const opened = await Promise.all(
        Array.from({ length: Math.min(batch, n - i) }, async () => {
          const c = await Conn.open(socket);
          conns.push(c);
          await c.request(XsType.GET_DOMAIN_PATH, 0, utf8("0\0"));
          return c;
        }),
      );
      if (opened.length === 0) break;
    }
  } catch (e) {
    for (const c of conns) c.close();
    throw e;
  }
  return conns;
}
