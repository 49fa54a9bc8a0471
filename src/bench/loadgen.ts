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
 * transactions, only inside measuring windows.
 *
 * `runLoad()` drives several daemons ("targets") from one process, in short alternating
 * windows: after a warm-up on each target, window w runs all clients against target 0 then
 * target 1 (reversed on odd w), each window preceded by a short unrecorded settle. On a
 * shared VM whose speed changes from second to second, this pairs the two daemons far more
 * tightly than separate runs would. The connections to the target not being driven sit
 * idle meanwhile. It is meant to run in its own process (loadgen-child.ts), pinned to its
 * own CPU, so that its cost is the same whichever daemon it drives (see `cpu`).
 */
import { connect, type Socket } from "node:net";
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { encodePacket, fromUtf8, PacketReader, utf8, type XsPacket, XsType } from "../xenstore/wire.ts";
import { cpuSeconds } from "./procstat.ts";

export interface Target {
  socket: string;
  /** The daemon's pid, to sample its CPU time over each window. */
  daemonPid: number;
}

export interface LoadConfig {
  targets: Target[];
  /** Clients (connections) per target. */
  clients: number;
  /** Unrecorded load on each target before the first window. */
  warmupMs: number;
  /** Unrecorded load before each window (refills the pipeline). */
  settleMs: number;
  windowMs: number;
  /** Windows per target. */
  windows: number;
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

export interface WindowResult {
  /** Index into LoadConfig.targets. */
  target: number;
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

export interface LoadResult {
  windows: WindowResult[];
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

function checked(p: XsPacket, op: string): XsPacket {
  if (p.type === XsType.ERROR) throw new XsReplyError(op, fromUtf8(p.payload).replace(/\0+$/, ""));
  return p;
}

/** A whole request packet (req_id and tx_id 0) for Conn.requestPrepared(). */
export function prepare(type: number, payload: Uint8Array): Buffer {
  const b = encodePacket({ type, reqId: 0, txId: 0, payload });
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
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

  /**
   * Sends a packet built once by `prepare()`, patching its req_id and tx_id in place. A
   * prepared packet belongs to one connection: it is rewritten only after the reply to its
   * previous use, by which time the kernel has long copied it.
   */
  requestPrepared(pkt: Buffer, txId: number): Promise<XsPacket> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#pending) return Promise.reject(new Error("Cannot send: a request is already outstanding"));
    this.#reqId = (this.#reqId + 1) >>> 0;
    const reqId = this.#reqId;
    pkt.writeUInt32LE(reqId, 4);
    pkt.writeUInt32LE(txId >>> 0, 8);
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject, reqId };
      this.#sock.write(pkt);
    });
  }

  /** Like request(), but an XS_ERROR reply rejects with XsReplyError. */
  async call(type: number, txId: number, payload: Uint8Array, op: string): Promise<XsPacket> {
    return checked(await this.request(type, txId, payload), op);
  }

  /** Like requestPrepared(), but an XS_ERROR reply rejects with XsReplyError. */
  async callPrepared(pkt: Buffer, txId: number, op: string): Promise<XsPacket> {
    return checked(await this.requestPrepared(pkt, txId), op);
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

async function timed(r: Recorder, kind: LatencyKind, c: Conn, pkt: Buffer, txId: number): Promise<XsPacket> {
  const t0 = performance.now();
  const p = await c.callPrepared(pkt, txId, kind);
  record(r, kind, t0, performance.now());
  return p;
}

/** One client: its connection, every packet it sends (built once), and its PRNG. */
class Client {
  readonly #c: Conn;
  readonly #read: Buffer[] = [];
  readonly #write: Buffer[] = [];
  readonly #txRead: Buffer[] = [];
  readonly #txWrite: Buffer[] = [];
  readonly #txStart = prepare(XsType.TRANSACTION_START, NUL);
  readonly #txEnd = prepare(XsType.TRANSACTION_END, TX_COMMIT);
  readonly #next: () => number;
  readonly base: string;

  constructor(c: Conn, base: string, seed: number) {
    this.#c = c;
    this.base = base;
    this.#next = rng(seed);
    // One set per connection: see prepare().
    for (let j = 0; j < KEYS; j++) {
      this.#read.push(prepare(XsType.READ, utf8(`${base}/k${j}\0`)));
      this.#write.push(prepare(XsType.WRITE, utf8(`${base}/k${j}\0${VALUE}`)));
      this.#txRead.push(prepare(XsType.READ, utf8(`${base}/k${j}\0`)));
      this.#txWrite.push(prepare(XsType.WRITE, utf8(`${base}/k${j}\0${VALUE}`)));
    }
  }

  async setup(): Promise<void> {
    for (let j = 0; j < KEYS; j++) {
      await this.#c.call(XsType.WRITE, 0, utf8(`${this.base}/k${j}\0${VALUE}`), "setup write");
    }
  }

  /** Closed loop until `r.stop`. */
  async run(r: Recorder): Promise<void> {
    const c = this.#c;
    while (!r.stop) {
      const x = this.#next();
      const step = x % 10;
      const j = (x >>> 8) % KEYS;
      if (step < 5) {
        await timed(r, "read", c, this.#read[j]!, 0);
      } else if (step < 8) {
        await timed(r, "write", c, this.#write[j]!, 0);
      } else {
        const j2 = (x >>> 16) % KEYS;
        for (;;) {
          const t0 = performance.now();
          const start = await timed(r, "tx_start", c, this.#txStart, 0);
          const tx = Number.parseInt(fromUtf8(start.payload), 10);
          await timed(r, "tx_read", c, this.#txRead[j]!, tx);
          await timed(r, "tx_write", c, this.#txWrite[j2]!, tx);
          try {
            await timed(r, "tx_end", c, this.#txEnd, tx);
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

function newRecorder(): Recorder {
  const hist = Object.fromEntries(LATENCY_KINDS.map((k) => [k, createHistogram()])) as Record<
    LatencyKind,
    RecordableHistogram
  >;
  return { recording: false, stop: false, ops: 0, conflicts: 0, hist };
}

/**
 * Runs every client of one target: `settleMs` unrecorded, then `windowMs` recorded (none
 * if 0), then stops and waits for the requests in flight.
 */
async function drive(
  clients: readonly Client[],
  t: Target,
  settleMs: number,
  windowMs: number,
  target: number,
) {
  const r = newRecorder();
  const loops = clients.map((c) => c.run(r));
  // A client failing stops the others at once rather than after the window.
  const failed = Promise.all(loops).then(
    () => undefined,
    (e: unknown) => {
      r.stop = true;
      throw e;
    },
  );
  failed.catch(() => undefined);
  await Promise.race([sleep(settleMs), failed]);
  r.recording = true;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const daemon0 = cpuSeconds(t.daemonPid);
  await Promise.race([sleep(windowMs), failed]);
  r.recording = false;
  const seconds = (performance.now() - t0) / 1e3;
  const cpu = process.cpuUsage(cpu0);
  const daemonCpu = cpuSeconds(t.daemonPid) - daemon0;
  r.stop = true;
  await failed;
  const hist = r.hist;
  // "all" is every request: the sum of the per-request kinds (not whole transactions).
  for (const k of LATENCY_KINDS) if (k !== "all" && k !== "tx") hist.all.add(hist[k]);
  const latency = Object.fromEntries(LATENCY_KINDS.map((k) => [k, summarize(hist[k])])) as Record<
    LatencyKind,
    Latency
  >;
  return {
    target,
    ops: r.ops,
    seconds,
    opsPerSec: r.ops / seconds,
    cpu: (cpu.user + cpu.system) / 1e6 / seconds,
    daemonCpu,
    conflicts: r.conflicts,
    latency,
  } satisfies WindowResult;
}

/** Runs the closed-loop load on every target in alternating windows (see the top). */
export async function runLoad(cfg: LoadConfig): Promise<LoadResult> {
  const root = `/bench/${cfg.tag}`;
  const conns: Conn[][] = [];
  try {
    for (const t of cfg.targets) {
      conns.push(await Promise.all(Array.from({ length: cfg.clients }, () => Conn.open(t.socket))));
    }
    // Client i gets the same seed on every target: both daemons see the same sequence.
    const clients = conns.map((cs) => cs.map((c, i) => new Client(c, `${root}/c${i}`, cfg.seed + i * 7919)));
    for (const cs of clients) await Promise.all(cs.map((c) => c.setup()));
    for (const [k, t] of cfg.targets.entries()) await drive(clients[k]!, t, cfg.warmupMs, 0, k);
    const windows: WindowResult[] = [];
    for (let w = 0; w < cfg.windows; w++) {
      const order = cfg.targets.map((_, k) => k);
      if (w % 2 === 1) order.reverse();
      for (const k of order) {
        windows.push(await drive(clients[k]!, cfg.targets[k]!, cfg.settleMs, cfg.windowMs, k));
      }
    }
    for (const cs of conns) await cs[0]!.call(XsType.RM, 0, utf8(`${root}\0`), "cleanup rm");
    return { windows };
  } finally {
    for (const cs of conns) for (const c of cs) c.close();
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
