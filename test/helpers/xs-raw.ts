/**
 * A scriptable raw XenStore client for tests: our wire codec over `node:net`, no request
 * matching, no retries. It sends exactly the bytes it is given and hands back every packet
 * the daemon sends, in arrival order, so a test can compare two daemons packet by packet or
 * send malformed input on cue.
 */
import { createConnection, type Socket } from "node:net";
import { encodePacket, PacketReader, type XsPacket } from "../../src/xenstore/wire.ts";

/** What `next()` yields when the daemon closed the connection. */
export const CLOSED = "closed" as const;
/** What `next()` yields when nothing arrived in time. */
export const TIMEOUT = "timeout" as const;

export type Received = XsPacket | typeof CLOSED | typeof TIMEOUT;

export class RawXsConnection {
  readonly #socket: Socket;
  readonly #reader = new PacketReader(Number.MAX_SAFE_INTEGER);
  readonly #queue: XsPacket[] = [];
  #waiter: (() => void) | null = null;
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      for (const p of this.#reader.push(chunk)) this.#queue.push(p);
      this.#wake();
    });
    const onGone = () => {
      this.#closed = true;
      this.#wake();
    };
    socket.on("close", onGone);
    socket.on("end", onGone);
    // EPIPE/ECONNRESET after the daemon dropped us: recorded as closed, never thrown.
    socket.on("error", onGone);
  }

  static connect(path: string): Promise<RawXsConnection> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      s.once("connect", () => {
        s.off("error", reject);
        resolve(new RawXsConnection(s));
      });
      s.once("error", reject);
    });
  }

  /** True once the daemon closed the connection (or a write failed). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends one packet; returns false when the connection is already closed. */
  send(p: XsPacket): boolean {
    return this.sendBytes(encodePacket(p));
  }

  /** Sends raw bytes (a header announcing any length, a partial packet, ...). */
  sendBytes(bytes: Uint8Array): boolean {
    if (this.#closed || this.#socket.destroyed) return false;
    this.#socket.write(bytes);
    return true;
  }

  /** The next packet, or CLOSED once the queue is empty and the daemon hung up, or TIMEOUT. */
  async next(timeoutMs: number): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.#queue.shift();
      if (p !== undefined) return p;
      if (this.#closed) return CLOSED;
      const left = deadline - Date.now();
      if (left <= 0) return TIMEOUT;
      await new Promise<void>((res) => {
        const timer = setTimeout(() => {
          this.#waiter = null;
          res();
        }, left);
        this.#waiter = () => {
          clearTimeout(timer);
          this.#waiter = null;
          res();
        };
      });
    }
  }

  /** Packets already received and not yet taken. */
  drain(): XsPacket[] {
    return this.#queue.splice(0);
  }

  close(): Promise<void> {
    return new Promise((res) => {
      if (this.#socket.destroyed) {
        res();
        return;
      }
      this.#socket.once("close", () => res());
      this.#socket.destroy();
    });
  }

  #wake(): void {
    this.#waiter?.();
  }
}
