/**
 * libxenvchan's data path (tools/libs/vchan/io.c) over a mapped control page and two rings: pure,
 * no I/O, one end's view. Everything here is non-blocking; the blocking calls (vchan.ts) loop on
 * these and wait for the event channel in between.
 *
 * Notification, the part a byte-exact port must get right. A side that will wait ORs a bit into
 * the *peer's* byte (the server writes `cli_notify`, the client `srv_notify`): WRITE "tell me when
 * you write", READ "tell me when you consume". A side that moved its index clears that bit from
 * its *own* byte with an atomic AND and signals the port only if the bit was set.
 *
 *   server waits for data:  ready() < n → cli_notify |= WRITE, re-read ready()
 *   client writes 5 bytes:  copy, left.prod += 5, cli_notify &= ~WRITE was set → notify
 *   server reads them:      copy, left.cons += 5, srv_notify &= ~READ  (only if the client asked)
 *
 * The re-read after the request closes the race with a peer that moved its index between the
 * first read and the request (it could not have seen the bit). A count of ready bytes or of free
 * space larger than the ring means corrupt indices; like libxenvchan, this reads as 0 (the ring
 * stalls) rather than as an error. Each worked step above is a line of the PROBE trace checked in
 * test/vchan/vchan-diff.test.ts against Debian's libxenvchan.
 */
import { XEN_PAGE_SIZE } from "../../xen/xen.ts";
import { inPageOffset, ringPages, VCHAN, VCHAN_LIVE, VCHAN_NOTIFY } from "./vchan-abi.ts";

/**
 * One ring's bytes: a slice of the control page (order 10 or 11) or 2^(order−12) pages mapped
 * "contiguously" (here: page by page; copies split at page ends).
 */
export class VchanRing {
  readonly order: number;
  readonly size: number;
  readonly #chunks: readonly Uint8Array[];
  readonly #chunkShift: number;

  private constructor(order: number, chunks: readonly Uint8Array[], chunkShift: number) {
    this.order = order;
    this.size = 2 ** order;
    this.#chunks = chunks;
    this.#chunkShift = chunkShift;
  }

  /** The ring of `order` inside the control page `ctrl`. */
  static inPage(ctrl: Uint8Array, order: number): VchanRing {
    return new VchanRing(
      order,
      [ctrl.subarray(inPageOffset(order), inPageOffset(order) + 2 ** order)],
      order,
    );
  }

  /** The ring of `order` over its own pages, in order. */
  static overPages(order: number, pages: readonly Uint8Array[]): VchanRing {
    if (pages.length !== ringPages(order) || pages.length === 0)
      throw new RangeError(
        `A vchan ring of order ${order} needs ${ringPages(order)} pages, got ${pages.length}`,
      );
    for (const p of pages)
      if (p.byteLength !== XEN_PAGE_SIZE)
        throw new RangeError(`A vchan ring page must be ${XEN_PAGE_SIZE} bytes`);
    return new VchanRing(order, pages, 12);
  }

  /** Copies `n` bytes of `src` from `from` into the ring at index `pos` (wrapping). */
  copyIn(pos: number, src: Uint8Array, from: number, n: number): void {
    const mask = this.size - 1;
    const cmask = (1 << this.#chunkShift) - 1;
    let p = pos & mask;
    while (n > 0) {
      const chunk = this.#chunks[p >>> this.#chunkShift]!;
      const off = p & cmask;
      const len = Math.min(n, chunk.byteLength - off);
      chunk.set(src.subarray(from, from + len), off);
      from += len;
      n -= len;
      p = (p + len) & mask;
    }
  }

  /** Copies `n` bytes from the ring at index `pos` (wrapping) into `dst` at `to`. */
  copyOut(pos: number, dst: Uint8Array, to: number, n: number): void {
    const mask = this.size - 1;
    const cmask = (1 << this.#chunkShift) - 1;
    let p = pos & mask;
    while (n > 0) {
      const chunk = this.#chunks[p >>> this.#chunkShift]!;
      const off = p & cmask;
      const len = Math.min(n, chunk.byteLength - off);
      dst.set(chunk.subarray(off, off + len), to);
      to += len;
      n -= len;
      p = (p + len) & mask;
    }
  }
}

export interface VchanEndOptions {
  /** The control page (4096 bytes, shared). */
  readonly ctrl: Uint8Array;
  readonly server: boolean;
  /** The ring this end reads: left for the server, right for the client. */
  readonly read: VchanRing;
  /** The ring this end writes: right for the server, left for the client. */
  readonly write: VchanRing;
  /** Signals the peer (EVTCHNOP_send on the vchan's port). */
  readonly notify: () => void;
}

/** One end of a connected vchan: io.c's calls, non-blocking. */
export class VchanEnd {
  readonly server: boolean;
  readonly readRing: VchanRing;
  readonly writeRing: VchanRing;
  /** libxenvchan's `server_persist`: the server counts as open whatever the client does. */
  persist = false;
  readonly #ctrl: Uint8Array;
  readonly #idx: Uint32Array;
  readonly #notify: () => void;
  readonly #rdCons: number;
  readonly #rdProd: number;
  readonly #wrCons: number;
  readonly #wrProd: number;
  /** The byte this end sets bits in (the peer's) and the one it clears (its own). */
  readonly #peerBits: number;
  readonly #ownBits: number;

  constructor(o: VchanEndOptions) {
    this.server = o.server;
    this.readRing = o.read;
    this.writeRing = o.write;
    this.#ctrl = o.ctrl;
    this.#idx = new Uint32Array(o.ctrl.buffer, o.ctrl.byteOffset, 4);
    this.#notify = o.notify;
    const left = { cons: VCHAN.leftCons / 4, prod: VCHAN.leftProd / 4 };
    const right = { cons: VCHAN.rightCons / 4, prod: VCHAN.rightProd / 4 };
    const rd = o.server ? left : right;
    const wr = o.server ? right : left;
    this.#rdCons = rd.cons;
    this.#rdProd = rd.prod;
    this.#wrCons = wr.cons;
    this.#wrProd = wr.prod;
    this.#peerBits = o.server ? VCHAN.cliNotify : VCHAN.srvNotify;
    this.#ownBits = o.server ? VCHAN.srvNotify : VCHAN.cliNotify;
  }

  /** `libxenvchan_is_open`: the peer's live byte (server: 2 = not yet connected, still open). */
  isOpen(): number {
    if (this.server) return this.persist ? 1 : Atomics.load(this.#ctrl, VCHAN.cliLive);
    return Atomics.load(this.#ctrl, VCHAN.srvLive);
  }

  /** `libxenvchan_data_ready`: bytes to read; asks to be told of the next write. */
  dataReady(): number {
    this.#request(VCHAN_NOTIFY.write);
    return this.#rawReady();
  }

  /** `libxenvchan_buffer_space`: bytes that fit; asks to be told of the next read. */
  bufferSpace(): number {
    this.#request(VCHAN_NOTIFY.read);
    return this.#rawSpace();
  }

  /** `libxenvchan_read`, non-blocking: up to `buf.length` bytes; 0 when none, -1 when the peer is gone and nothing is left. */
  read(buf: Uint8Array): number {
    const avail = this.#fastReady(buf.length);
    if (avail > 0) return this.#recv(buf, Math.min(avail, buf.length));
    return this.isOpen() ? 0 : -1;
  }

  /** `libxenvchan_recv`, non-blocking: exactly `buf.length` bytes or 0; -1 when the peer is gone and too little is left. */
  recv(buf: Uint8Array): number {
    const avail = this.#fastReady(buf.length);
    if (buf.length <= avail) return this.#recv(buf, buf.length);
    return this.isOpen() ? 0 : -1;
  }

  /** `libxenvchan_write`, non-blocking: as much of `data` as fits; -1 when the peer is gone. */
  write(data: Uint8Array): number {
    if (!this.isOpen()) return -1;
    const n = Math.min(data.length, this.#fastSpace(data.length));
    return n === 0 ? 0 : this.#send(data, n);
  }

  /** `libxenvchan_send`, non-blocking: all of `data` or 0; -1 when the peer is gone. */
  send(data: Uint8Array): number {
    if (!this.isOpen()) return -1;
    return data.length <= this.#fastSpace(data.length) ? this.#send(data, data.length) : 0;
  }

  /** `fast_get_buffer_space`, for blocking writers: space, with READ requested when short of `want`. */
  spaceFor(want: number): number {
    return this.#fastSpace(want);
  }

  /** `fast_get_data_ready`, for blocking readers: bytes, with WRITE requested when short of `want`. */
  readyFor(want: number): number {
    return this.#fastReady(want);
  }

  /** Marks this end gone in its live byte (the first step of `libxenvchan_close`). */
  markClosed(): void {
    Atomics.store(this.#ctrl, this.server ? VCHAN.srvLive : VCHAN.cliLive, VCHAN_LIVE.gone);
  }

  // request_notify: the bit goes in the peer's byte; the atomic OR is a full barrier before the
  // caller re-reads the indices.
  #request(bit: number): void {
    Atomics.or(this.#ctrl, this.#peerBits, bit);
  }

  // send_notify: after the index moved (the caller's Atomics.store is the barrier), clear the bit
  // from our own byte and signal only if the peer had asked.
  #sendNotify(bit: number): void {
    const prev = Atomics.and(this.#ctrl, this.#ownBits, ~bit & 0xff);
    if (prev & bit) this.#notify();
  }

  #rawReady(): number {
    const ready = (Atomics.load(this.#idx, this.#rdProd) - Atomics.load(this.#idx, this.#rdCons)) >>> 0;
    return ready > this.readRing.size ? 0 : ready;
  }

  #rawSpace(): number {
    const used = (Atomics.load(this.#idx, this.#wrProd) - Atomics.load(this.#idx, this.#wrCons)) >>> 0;
    const space = (this.writeRing.size - used) >>> 0;
    return space > this.writeRing.size ? 0 : space;
  }

  #fastReady(want: number): number {
    const ready = this.#rawReady();
    if (ready >= want) return ready;
    this.#request(VCHAN_NOTIFY.write);
    return this.#rawReady();
  }

  #fastSpace(want: number): number {
    const space = this.#rawSpace();
    if (space >= want) return space;
    this.#request(VCHAN_NOTIFY.read);
    return this.#rawSpace();
  }

  // do_send: data first, then prod (a release store), then the notify decision.
  #send(data: Uint8Array, n: number): number {
    const prod = Atomics.load(this.#idx, this.#wrProd);
    this.writeRing.copyIn(prod, data, 0, n);
    Atomics.store(this.#idx, this.#wrProd, (prod + n) >>> 0);
    this.#sendNotify(VCHAN_NOTIFY.write);
    return n;
  }

  // do_recv: the data after reading prod (#fastReady's load), then cons, then the notify decision.
  #recv(buf: Uint8Array, n: number): number {
    const cons = Atomics.load(this.#idx, this.#rdCons);
    this.readRing.copyOut(cons, buf, 0, n);
    Atomics.store(this.#idx, this.#rdCons, (cons + n) >>> 0);
    this.#sendNotify(VCHAN_NOTIFY.read);
    return n;
  }
}
