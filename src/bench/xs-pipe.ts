/**
 * A pipelined XenStore client for filling a daemon's store fast: one socket connection,
 * up to `depth` requests outstanding, replies matched by req_id. The bench's load generator
 * (loadgen.ts) keeps one request outstanding per client, to measure latency; this one keeps
 * the daemon busy, to measure its throughput as the store grows.
 */
import { connect, type Socket } from "node:net";
import { encodePacket, fromUtf8, PacketReader, type XsPacket, XsType } from "../xenstore/wire.ts";
import { XsReplyError } from "./loadgen.ts";

export interface PipeRequest {
  readonly type: number;
  readonly txId: number;
  readonly payload: Uint8Array;
}

interface Pending {
  resolve: (p: XsPacket) => void;
  reject: (e: Error) => void;
}

export class Pipe {
  readonly #sock: Socket;
  readonly #reader = new PacketReader();
  readonly #pending = new Map<number, Pending>();
  #reqId = 0;
  #closed: Error | null = null;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.on("data", (b: Buffer) => this.#onData(b));
    sock.on("error", (e: Error) => this.#fail(e));
    sock.on("close", () => this.#fail(new Error("Connection to xenstored closed")));
  }

  static open(path: string): Promise<Pipe> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      sock.once("error", reject);
      sock.once("connect", () => {
        sock.off("error", reject);
        resolve(new Pipe(sock));
      });
    });
  }

  #encode(r: PipeRequest, p: Pending): Uint8Array {
    this.#reqId = (this.#reqId + 1) >>> 0;
    this.#pending.set(this.#reqId, p);
    return encodePacket({ type: r.type, reqId: this.#reqId, txId: r.txId, payload: r.payload });
  }

  /** One request; an XS_ERROR reply rejects with XsReplyError. */
  request(r: PipeRequest): Promise<XsPacket> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#sock.write(this.#encode(r, { resolve, reject }));
    });
  }

  /**
   * Sends every request of `reqs` with up to `depth` outstanding; `onReply(n)` is called after
   * the n-th reply. Rejects on the first error reply.
   */
  pump(reqs: Iterable<PipeRequest>, depth: number, onReply?: (n: number) => void): Promise<number> {
    const it = reqs[Symbol.iterator]();
    let outstanding = 0;
    let replies = 0;
    let done = false;
    return new Promise((resolve, reject) => {
      let failed = false;
      const p: Pending = {
        resolve: () => {
          outstanding--;
          replies++;
          onReply?.(replies);
          fill();
        },
        reject: (e) => {
          if (!failed) reject(e);
          failed = true;
        },
      };
      const fill = () => {
        if (failed) return;
        const batch: Uint8Array[] = [];
        while (!done && outstanding < depth) {
          const n = it.next();
          if (n.done) {
            done = true;
            break;
          }
          batch.push(this.#encode(n.value, p));
          outstanding++;
        }
        if (batch.length > 0) this.#sock.write(Buffer.concat(batch));
        if (done && outstanding === 0) resolve(replies);
      };
      if (this.#closed) reject(this.#closed);
      else fill();
    });
  }

  close(): void {
    this.#closed ??= new Error("Connection closed by the bench");
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
      const pending = this.#pending.get(p.reqId);
      if (pending === undefined) {
        this.#fail(new Error(`Unexpected reply req_id ${p.reqId}`));
        return;
      }
      this.#pending.delete(p.reqId);
      if (p.type === XsType.ERROR)
        pending.reject(new XsReplyError("request", fromUtf8(p.payload).replace(/\0+$/, "")));
      else pending.resolve(p);
    }
  }

  #fail(e: Error): void {
    this.#closed ??= e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }
}
