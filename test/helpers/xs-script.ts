/**
 * Scripted XenStore sessions for differential tests: a table of steps is played against a
 * daemon over raw connections (test/helpers/xs-raw.ts) and turned into a transcript, one
 * record per step, which can be compared with the transcript of another daemon.
 *
 * After each request the runner waits for its reply, then sends a barrier (GET_DOMAIN_PATH
 * "0", which reads and changes nothing) on every open connection and reads up to the
 * barrier's reply. The daemon answers a connection in order, so every watch event the step
 * caused, on any connection, lands in that step's record, in arrival order.
 *
 * Implementation values are normalised, per run:
 *   - transaction ids by order of appearance: the first id seen is <tx1>, the next <tx2>
 *     (per connection, and a new name for every id a TRANSACTION_START hands out);
 *   - DIRECTORY_PART generation counts per path by order of appearance: the first count
 *     seen for /a is <gen /a #1>; the same count again is #1 again, a new one #2. So
 *     "unchanged" and "changed" still compare, the numbers themselves do not.
 */
import {
  encodePacket,
  splitStrings,
  typeName,
  utf8,
  type XsPacket,
  XsType,
} from "../../src/xenstore/wire.ts";
import { CLOSED, RawXsConnection, TIMEOUT } from "./xs-raw.ts";

export type OpName = Exclude<keyof typeof XsType, "INVALID">;

/** One request. The payload is `raw` if given, else every arg NUL-terminated then `value` (no NUL). */
export interface RequestStep {
  /** Connection name; a connection is opened on its first use. */
  on: string;
  op: OpName | number;
  args?: readonly string[];
  value?: string;
  raw?: string | Uint8Array;
  /** A transaction named by an earlier step's `bind`, or a literal id. */
  tx?: string | number;
  /** On TRANSACTION_START: the name later steps use for the id in the reply. */
  bind?: string;
  note?: string;
  /** Write the packet this many bytes at a time, each write in its own event-loop turn. */
  chunk?: number;
}

/** Several requests in a single write; their replies are recorded in arrival order. */
export interface PipelineStep {
  on: string;
  pipeline: readonly Omit<RequestStep, "on" | "chunk">[];
}

/** Closes a connection (the next step on the same name opens a new one). */
export interface CloseStep {
  on: string;
  close: true;
}

/** Raw bytes (a lying header, half a packet, ...): nothing is awaited but the barrier. */
export interface BytesStep {
  on: string;
  bytes: Uint8Array;
  note?: string;
}

export type Step = RequestStep | PipelineStep | BytesStep | CloseStep;

export interface StepRecord {
  /** The request, as sent (identical for both daemons). */
  request: string;
  /** What came back, one entry per packet or condition, in order. */
  got: string[];
}

const REPLY_TIMEOUT_MS = 3000;
const BARRIER_BASE = 0xfff00000;
const UNBOUND_TX = 0xfffffff0;

function isClose(s: Step): s is CloseStep {
  return "close" in s;
}

/** Bytes shown as a JS-like string literal; long payloads by length and a checksum. */
export function showBytes(b: Uint8Array): string {
  if (b.byteLength > 160) {
    let h = 0x811c9dc5;
    for (const x of b) h = Math.imul(h ^ x, 0x01000193) >>> 0;
    return `<${b.byteLength} bytes fnv=${h.toString(16)}>`;
  }
  let s = "";
  for (let i = 0; i < b.byteLength; i++) {
    const x = b[i]!;
    const next = b[i + 1] ?? 0;
    if (x === 0) s += next >= 0x30 && next <= 0x39 ? "\\x00" : "\\0";
    else if (x === 0x22 || x === 0x5c) s += `\\${String.fromCharCode(x)}`;
    else if (x >= 0x20 && x < 0x7f) s += String.fromCharCode(x);
    else s += `\\x${x.toString(16).padStart(2, "0")}`;
  }
  return `"${s}"`;
}

export function opCode(op: OpName | number): number {
  return typeof op === "number" ? op : XsType[op];
}

export function stepPayload(s: Omit<RequestStep, "on">): Uint8Array {
  if (s.raw !== undefined) return typeof s.raw === "string" ? utf8(s.raw) : s.raw;
  return utf8((s.args ?? []).map((a) => `${a}\0`).join("") + (s.value ?? ""));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

async function sendIn(conn: RawXsConnection, bytes: Uint8Array, chunk: number | undefined): Promise<boolean> {
  if (chunk === undefined) return conn.sendBytes(bytes);
  for (let at = 0; at < bytes.byteLength; at += chunk) {
    if (!conn.sendBytes(bytes.subarray(at, at + chunk))) return false;
    await new Promise((res) => setTimeout(res, 1));
  }
  return true;
}

/** Plays steps against one daemon; keeps connections and normalisation maps across `run()` calls. */
export class ScriptRunner {
  readonly #socket: string;
  readonly #conns = new Map<string, RawXsConnection>();
  /** Connections whose closing a record already shows. */
  readonly #closedSeen = new WeakSet<RawXsConnection>();
  readonly #txNames = new Map<string, string>();
  #txCount = 0;
  readonly #bound = new Map<string, number>();
  readonly #gens = new Map<string, Map<string, number>>();
  #reqId = 0;
  #barrier = 0;

  constructor(socket: string) {
    this.#socket = socket;
  }

  async run(steps: readonly Step[]): Promise<StepRecord[]> {
    const out: StepRecord[] = [];
    for (const s of steps) out.push(await this.step(s));
    return out;
  }

  async step(s: Step): Promise<StepRecord> {
    if (isClose(s)) {
      const c = this.#conns.get(s.on);
      this.#conns.delete(s.on);
      await c?.close();
      return { request: `[${s.on}] close`, got: [] };
    }
    const conn = await this.#conn(s.on);
    if ("bytes" in s) {
      const request = `[${s.on}] bytes ${showBytes(s.bytes)}${s.note ? `   # ${s.note}` : ""}`;
      if (!conn.sendBytes(s.bytes)) return { request, got: ["<connection closed before sending>"] };
      return { request, got: await this.#barrierAll() };
    }
    const reqs = "pipeline" in s ? s.pipeline : [s];
    const sent = reqs.map((r) => {
      const type = opCode(r.op);
      const txId = this.#txId(r.tx);
      const payload = stepPayload(r);
      const txShown = txId === 0 ? "" : ` tx=${this.#txName(s.on, txId)}`;
      const text = `${typeName(type)}${txShown} ${showBytes(payload)}${r.note ? `   # ${r.note}` : ""}`;
      return { r, type, txId, payload, text, reqId: ++this.#reqId };
    });
    const how = "pipeline" in s ? `pipeline of ${reqs.length} in one write: ` : "";
    const chunked = "chunk" in s && s.chunk !== undefined ? ` (sent ${s.chunk} bytes at a time)` : "";
    const request = `[${s.on}] ${how}${sent.map((x) => x.text).join(" ; ")}${chunked}`;
    const got: string[] = [];
    const bytes = concat(
      sent.map((x) => encodePacket({ type: x.type, reqId: x.reqId, txId: x.txId, payload: x.payload })),
    );
    if (!(await sendIn(conn, bytes, "chunk" in s ? s.chunk : undefined))) {
      got.push("<connection closed before sending>");
      return { request, got };
    }
    const waiting = new Map(sent.map((x) => [x.reqId, x]));
    while (waiting.size > 0) {
      const p = await conn.next(REPLY_TIMEOUT_MS);
      if (p === CLOSED) {
        got.push("<connection closed>");
        this.#closedSeen.add(conn);
        break;
      }
      if (p === TIMEOUT) {
        got.push("<no reply>");
        break;
      }
      const x = p.type === XsType.WATCH_EVENT ? undefined : waiting.get(p.reqId);
      if (x === undefined) {
        got.push(this.#showOther(s.on, p));
        continue;
      }
      waiting.delete(p.reqId);
      got.push(this.#showReply(s.on, p, x.r, x.txId));
      if (x.type === XsType.TRANSACTION_START && x.r.bind !== undefined) {
        const id = Number.parseInt(splitStrings(p.payload).parts[0] ?? "", 10);
        if (Number.isInteger(id)) this.#bound.set(x.r.bind, id);
      }
    }
    got.push(...(await this.#barrierAll()));
    return { request, got };
  }

  /** Sends a barrier on every open connection; returns what arrived before each barrier reply. */
  async #barrierAll(): Promise<string[]> {
    const got: string[] = [];
    for (const [name, conn] of this.#conns) {
      if (conn.closed) {
        for (const p of conn.drain()) got.push(this.#showOther(name, p));
        // Closed before the barrier: report it once, as if it had closed during it.
        if (!this.#closedSeen.has(conn)) got.push(`[${name}] <connection closed>`);
        this.#closedSeen.add(conn);
        continue;
      }
      const reqId = BARRIER_BASE + (this.#barrier++ % 0xfffff);
      conn.send({ type: XsType.GET_DOMAIN_PATH, reqId, txId: 0, payload: utf8("0\0") });
      for (;;) {
        const p = await conn.next(REPLY_TIMEOUT_MS);
        if (p === CLOSED) {
          got.push(`[${name}] <connection closed>`);
          this.#closedSeen.add(conn);
          break;
        }
        if (p === TIMEOUT) {
          got.push(`[${name}] <no reply to barrier>`);
          break;
        }
        if (p.reqId === reqId && p.type !== XsType.WATCH_EVENT) break;
        got.push(this.#showOther(name, p));
      }
    }
    return got;
  }

  #showReply(conn: string, p: XsPacket, s: Omit<RequestStep, "on">, sentTx: number): string {
    const tx = p.txId === sentTx ? "" : ` tx=${this.#txName(conn, p.txId)}`;
    let body = showBytes(p.payload);
    if (p.type === XsType.TRANSACTION_START) {
      const { parts, terminated } = splitStrings(p.payload);
      const id = Number(parts[0]);
      if (terminated && parts.length === 1 && /^\d+$/.test(parts[0] ?? ""))
        body = this.#txName(conn, id, true);
    } else if (p.type === XsType.DIRECTORY_PART) {
      body = this.#showDirPart(p.payload, s.args?.[0] ?? "");
    }
    return `${typeName(p.type)}${tx} ${body}`;
  }

  #showDirPart(payload: Uint8Array, path: string): string {
    const nul = payload.indexOf(0);
    if (nul < 0) return showBytes(payload);
    const gen = new TextDecoder().decode(payload.subarray(0, nul));
    let seen = this.#gens.get(path);
    if (seen === undefined) {
      seen = new Map();
      this.#gens.set(path, seen);
    }
    let k = seen.get(gen);
    if (k === undefined) {
      k = seen.size + 1;
      seen.set(gen, k);
    }
    return `<gen ${path} #${k}>+${showBytes(payload.subarray(nul))}`;
  }

  #showOther(conn: string, p: XsPacket): string {
    const extra =
      p.reqId === 0 && p.txId === 0 ? "" : ` (req_id=${p.reqId}, tx=${this.#txName(conn, p.txId)})`;
    return `[${conn}] event ${typeName(p.type)} ${showBytes(p.payload)}${extra}`;
  }

  #txId(tx: string | number | undefined): number {
    if (tx === undefined) return 0;
    if (typeof tx === "number") return tx;
    // A name whose TRANSACTION_START failed stands for an id no daemon hands out first.
    return this.#bound.get(tx) ?? UNBOUND_TX;
  }

  /**
   * Transaction ids are per connection: (connection, id) gets a name on first appearance,
   * and every successful TRANSACTION_START a fresh one, so an id a daemon reuses after its
   * transaction ended and an id it never reuses read the same.
   */
  #txName(conn: string, id: number, fresh = false): string {
    if (id === 0) return "0";
    const key = `${conn}:${id}`;
    let n = this.#txNames.get(key);
    if (n === undefined || fresh) {
      n = `<tx${++this.#txCount}>`;
      this.#txNames.set(key, n);
    }
    return n;
  }

  async #conn(name: string): Promise<RawXsConnection> {
    let c = this.#conns.get(name);
    if (c === undefined) {
      c = await RawXsConnection.connect(this.#socket);
      this.#conns.set(name, c);
    }
    return c;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#conns.values()].map((c) => c.close()));
    this.#conns.clear();
  }
}

/** Lines describing every step whose records differ; empty when the transcripts agree. */
export function transcriptDifferences(
  steps: readonly Step[],
  ref: readonly StepRecord[],
  sub: readonly StepRecord[],
  subjectName: string,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < Math.max(ref.length, sub.length); i++) {
    const a = ref[i];
    const b = sub[i];
    const same = a !== undefined && b !== undefined && a.got.join("\n") === b.got.join("\n");
    if (same) continue;
    const req = a?.request ?? b?.request ?? JSON.stringify(steps[i]);
    out.push(
      `step ${i + 1}: ${req}\n    reference: ${a?.got.join(" | ") ?? "<missing>"}\n    ${subjectName}: ${b?.got.join(" | ") ?? "<missing>"}`,
    );
  }
  return out;
}

/** A transcript as text, one line per step and one per packet, for diagnostics. */
export function formatTranscript(records: readonly StepRecord[]): string {
  return records.map((r) => [r.request, ...r.got.map((g) => `    -> ${g}`)].join("\n")).join("\n");
}
