/**
 * A minimal TCP client connection (RFC 9293's state machine for an active open): connect, send,
 * receive, close. No well-kept user-space TCP stack for Node exists on npm (docs/net.md), so this
 * is xenlab's own, kept small on purpose:
 *
 *   - sending: up to the peer's window (scaled as its SYN|ACK says: we offer window scale 0, so the
 *     peer may scale its own and we never scale ours), in segments of the negotiated MSS; no
 *     congestion control, no Nagle
 *   - retransmission: go-back-N from the oldest unacknowledged byte on a timeout (RTO 200 ms,
 *     doubling up to 5 s; after 8 tries the connection fails with ETIMEDOUT)
 *   - receiving: in order only; an out-of-order segment is dropped and answered with a duplicate
 *     ACK, so the peer resends; a fixed window of 65535; every segment ACKed at once
 *   - closing: FIN after the data; TIME_WAIT is left at once (the port is not reused for 2 MSL
 *     anyway: ports are picked at random from the ephemeral range)
 *
 * Pure: segments in through input(), out through the `output` collaborator; timers are the only
 * clock. Worked example, a one-line echo:
 *
 *   → SYN seq=i (MSS 1460)              SYN_SENT
 *   ← SYN|ACK seq=r ack=i+1             ESTABLISHED; → ACK ack=r+1
 *   → PSH|ACK seq=i+1 "hi\n"            (write)
 *   ← ACK ack=i+4; ← PSH|ACK "hi\n"     onData("hi\n"); → ACK ack=r+4
 *   → FIN|ACK seq=i+4                   FIN_WAIT_1 (end)
 *   ← FIN|ACK ack=i+5                   TIME_WAIT → CLOSED; → ACK
 */
import { TCP_FLAG, type TcpSegment } from "./wire.ts";

export const TCP_WINDOW = 65535;
export const RTO_MIN_MS = 200;
export const RTO_MAX_MS = 5000;
export const MAX_RETRIES = 8;

export type TcpState =
  | "SYN_SENT"
  | "ESTABLISHED"
  | "FIN_WAIT_1"
  | "FIN_WAIT_2"
  | "CLOSING"
  | "CLOSE_WAIT"
  | "LAST_ACK"
  | "CLOSED";

export class TcpError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "TcpError";
    this.code = code;
  }
}

/** a < b in sequence space. */
const lt = (a: number, b: number) => ((a - b) | 0) < 0;
const le = (a: number, b: number) => ((a - b) | 0) <= 0;

export type TcpOutput = (
  s: { seq: number; ack: number; flags: number; window: number; mss?: number },
  data: Uint8Array,
) => void;

export interface TcpOptions {
  readonly output: TcpOutput;
  /** Our MSS (the interface's MTU less 40). */
  readonly mss: number;
  /** The connection is CLOSED (and why, if it failed): the stack forgets it. */
  onClosed(err: TcpError | null): void;
  /** The initial sequence number (random by default). */
  readonly iss?: number;
}

export class TcpConnection {
  state: TcpState = "SYN_SENT";
  /** Data from the peer, in order. */
  onData: ((chunk: Uint8Array) => void) | null = null;
  /** The peer closed its side (FIN). */
  onEnd: (() => void) | null = null;
  readonly #o: TcpOptions;
  readonly #iss: number;
  #sndUna: number;
  #sndNxt: number;
  #sndWnd = 0;
  /** The peer's window scale (0 unless its SYN|ACK carried one: we always offer it). */
  #sndScale = 0;
  #rcvNxt = 0;
  #mss: number;
  /** Bytes written and not yet acknowledged, from #sndUna (after the SYN). */
  #chunks: Uint8Array[] = [];
  #head = 0;
  #queued = 0;
  #finWanted = false;
  #finSent = false;
  #finAcked = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #rto = RTO_MIN_MS;
  #retries = 0;
  #connect: { resolve(): void; reject(e: Error): void } | null = null;
  #drainWaiters: (() => void)[] = [];
  #closedResolve!: () => void;
  /** Resolves when the connection is CLOSED, however it ended. */
  readonly closed: Promise<void> = new Promise((r) => {
    this.#closedResolve = r;
  });

  constructor(o: TcpOptions) {
    this.#o = o;
    this.#mss = o.mss;
    this.#iss = (o.iss ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
    this.#sndUna = this.#iss;
    this.#sndNxt = this.#iss;
  }

  /** Sends the SYN; resolves once ESTABLISHED, rejects with ECONNREFUSED or ETIMEDOUT. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#connect = { resolve, reject };
      this.#sendSyn();
    });
  }

  /** Bytes in flight or waiting to be sent. */
  get buffered(): number {
    return this.#queued;
  }

  /** Queues data to send. */
  write(data: Uint8Array): void {
    if (this.#finWanted || this.state === "CLOSED")
      throw new TcpError("EPIPE", "Cannot write: the connection is closing");
    if (data.length === 0) return;
    this.#chunks.push(data.slice());
    this.#queued += data.length;
    this.#pump();
  }

  /** Resolves when every byte written has been acknowledged (or the connection closed). */
  drained(): Promise<void> {
    if (this.#queued === 0 || this.state === "CLOSED") return Promise.resolve();
    return new Promise((r) => this.#drainWaiters.push(r));
  }

  /** Closes our side: a FIN after the data. */
  end(): void {
    if (this.#finWanted || this.state === "CLOSED") return;
    this.#finWanted = true;
    this.#pump();
  }

  /** Aborts: RST, CLOSED. */
  abort(): void {
    if (this.state === "CLOSED") return;
    if (this.state !== "SYN_SENT") this.#emit(this.#sndNxt, TCP_FLAG.rst | TCP_FLAG.ack, new Uint8Array(0));
    this.#close(new TcpError("ECONNABORTED", "Connection aborted"));
  }

  #emit(seq: number, flags: number, data: Uint8Array, mss?: number): void {
    const s = { seq, ack: flags & TCP_FLAG.ack ? this.#rcvNxt : 0, flags, window: TCP_WINDOW };
    this.#o.output(mss === undefined ? s : { ...s, mss }, data);
  }

  #sendSyn(): void {
    this.#emit(this.#iss, TCP_FLAG.syn, new Uint8Array(0), this.#mss);
    this.#sndNxt = (this.#iss + 1) >>> 0;
    this.#arm();
  }

  /** Bytes [off, off + len) of the unacknowledged data. */
  #slice(off: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let at = 0;
    let skip = off + this.#head;
    for (const c of this.#chunks) {
      if (at === len) break;
      if (skip >= c.length) {
        skip -= c.length;
        continue;
      }
      const n = Math.min(c.length - skip, len - at);
      out.set(c.subarray(skip, skip + n), at);
      at += n;
      skip = 0;
    }
    return out;
  }

  /** Sends what the window allows, then the FIN when everything went. */
  #pump(): void {
    if (this.state !== "ESTABLISHED" && this.state !== "CLOSE_WAIT") return;
    const base = this.#sndUna;
    for (;;) {
      const sent = (this.#sndNxt - base) >>> 0;
      const unsent = this.#queued - sent;
      const room = Math.max(this.#sndWnd, sent === 0 ? 1 : 0) - sent;
      if (unsent <= 0 || room <= 0) break;
      const n = Math.min(unsent, room, this.#mss);
      this.#emit(this.#sndNxt, TCP_FLAG.ack | TCP_FLAG.psh, this.#slice(sent, n));
      this.#sndNxt = (this.#sndNxt + n) >>> 0;
    }
    if (this.#finWanted && !this.#finSent && (this.#sndNxt - base) >>> 0 === this.#queued) {
      this.#emit(this.#sndNxt, TCP_FLAG.fin | TCP_FLAG.ack, new Uint8Array(0));
      this.#sndNxt = (this.#sndNxt + 1) >>> 0;
      this.#finSent = true;
      this.state = this.state === "CLOSE_WAIT" ? "LAST_ACK" : "FIN_WAIT_1";
    }
    if (this.#sndNxt !== this.#sndUna) this.#arm();
  }

  #arm(): void {
    if (this.#timer !== null) return;
    this.#timer = setTimeout(() => this.#timeout(), this.#rto);
    this.#timer.unref?.();
  }

  #disarm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** RTO: go back to the oldest unacknowledged byte and send again. */
  #timeout(): void {
    this.#timer = null;
    if (this.state === "CLOSED") return;
    if (++this.#retries > MAX_RETRIES) {
      this.#close(new TcpError("ETIMEDOUT", "Connection timed out"));
      return;
    }
    this.#rto = Math.min(this.#rto * 2, RTO_MAX_MS);
    if (this.state === "SYN_SENT") {
      this.#sendSyn();
      return;
    }
    this.#sndNxt = this.#sndUna;
    if (this.#finSent && !this.#finAcked) {
      this.#finSent = false;
      this.state = this.state === "LAST_ACK" ? "CLOSE_WAIT" : "ESTABLISHED";
    }
    this.#pump();
  }

  #close(err: TcpError | null): void {
    if (this.state === "CLOSED") return;
    this.state = "CLOSED";
    this.#disarm();
    this.#connect?.reject(err ?? new TcpError("ECONNRESET", "Connection closed"));
    this.#connect = null;
    for (const w of this.#drainWaiters.splice(0)) w();
    this.#closedResolve();
    this.#o.onClosed(err);
  }

  /** A segment for this connection. */
  input(s: TcpSegment): void {
    if (this.state === "CLOSED") return;
    if (this.state === "SYN_SENT") {
      if (s.flags & TCP_FLAG.ack && s.ack !== this.#sndNxt) return;
      if (s.flags & TCP_FLAG.rst) {
        this.#close(new TcpError("ECONNREFUSED", "Connection refused"));
        return;
      }
      if (!(s.flags & TCP_FLAG.syn) || !(s.flags & TCP_FLAG.ack)) return;
      this.#rcvNxt = (s.seq + 1) >>> 0;
      this.#sndUna = s.ack;
      this.#sndWnd = s.window; // a SYN's window is never scaled
      this.#sndScale = s.wscale ?? 0;
      if (s.mss !== undefined) this.#mss = Math.min(this.#mss, s.mss);
      this.state = "ESTABLISHED";
      this.#disarm();
      this.#retries = 0;
      this.#rto = RTO_MIN_MS;
      this.#emit(this.#sndNxt, TCP_FLAG.ack, new Uint8Array(0));
      this.#connect?.resolve();
      this.#connect = null;
      this.#pump();
      return;
    }
    if (s.flags & TCP_FLAG.rst) {
      // Acceptable when it is inside our receive window.
      if (le(this.#rcvNxt, s.seq) && lt(s.seq, (this.#rcvNxt + TCP_WINDOW) >>> 0)) {
        this.#close(new TcpError("ECONNRESET", "Connection reset by peer"));
      }
      return;
    }
    if (s.flags & TCP_FLAG.ack && !this.#onAck(s)) return;
    // Data and FIN, in order only.
    const len = s.payload.length;
    if (len > 0 || s.flags & TCP_FLAG.fin) {
      if (s.seq !== this.#rcvNxt) {
        this.#emit(this.#sndNxt, TCP_FLAG.ack, new Uint8Array(0)); // duplicate ACK
        return;
      }
      if (len > 0) {
        this.#rcvNxt = (this.#rcvNxt + len) >>> 0;
        this.onData?.(s.payload.slice());
      }
      if (s.flags & TCP_FLAG.fin) {
        this.#rcvNxt = (this.#rcvNxt + 1) >>> 0;
        this.#emit(this.#sndNxt, TCP_FLAG.ack, new Uint8Array(0));
        this.onEnd?.();
        if (this.state === "ESTABLISHED") this.state = "CLOSE_WAIT";
        else if (this.state === "FIN_WAIT_2" || (this.state === "FIN_WAIT_1" && this.#finAcked))
          this.#close(null);
        else if (this.state === "FIN_WAIT_1") this.state = "CLOSING";
        return;
      }
      this.#emit(this.#sndNxt, TCP_FLAG.ack, new Uint8Array(0));
    }
  }

  /** Processes the ACK; false when it closed the connection. */
  #onAck(s: TcpSegment): boolean {
    this.#sndWnd = s.window << this.#sndScale;
    if (lt(this.#sndUna, s.ack) && le(s.ack, this.#sndNxt)) {
      let acked = (s.ack - this.#sndUna) >>> 0;
      this.#sndUna = s.ack;
      this.#retries = 0;
      this.#rto = RTO_MIN_MS;
      this.#disarm();
      if (this.#finSent && s.ack === this.#sndNxt) {
        this.#finAcked = true;
        acked--;
      }
      this.#dropAcked(Math.min(acked, this.#queued));
      if (this.#finAcked) {
        if (this.state === "FIN_WAIT_1") this.state = "FIN_WAIT_2";
        else if (this.state === "CLOSING" || this.state === "LAST_ACK") {
          this.#close(null);
          return false;
        }
      }
    }
    this.#pump();
    return true;
  }

  #dropAcked(n: number): void {
    this.#queued -= n;
    let left = n + this.#head;
    while (this.#chunks.length > 0 && left >= this.#chunks[0]!.length) {
      left -= this.#chunks[0]!.length;
      this.#chunks.shift();
    }
    this.#head = left;
    if (this.#queued === 0) for (const w of this.#drainWaiters.splice(0)) w();
  }
}
