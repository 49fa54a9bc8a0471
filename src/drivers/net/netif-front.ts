/**
 * netfront's ring engine for one vif (Linux's drivers/net/xen-netfront.c xennet_start_xmit,
 * xennet_tx_buf_gc, xennet_poll, xennet_alloc_rx_buffers). The XenBus driver is netfront.ts.
 *
 * Pages: a fixed set of TX pages, each granted read-only to the backend once, and a fixed set of RX
 * pages, each granted writable once; a frame is copied into TX pages and out of RX pages (grant
 * reuse: the protocol leaves the refs to the frontend). TX ids are TX page numbers, taken from a
 * free list and given back by their response; a response for an id not in flight marks the device
 * broken (Linux: "tx response for inactive request"). RX requests carry id = their slot (req_prod &
 * mask, as Linux), and each response is read from its request's slot, whose RX page the engine
 * remembers.
 *
 * TX of a frame: ceil(len / 4096) slots; the first says the whole length, later ones their own;
 * NETTXF_more_data on all but the last. Frames that find no free page or slot wait in a bounded
 * queue (TX_QUEUE_MAX), sent as responses free pages.
 */
import type { FrontRing } from "../../ring/ring.ts";
import { XEN_PAGE_SIZE } from "../../xen/xen.ts";
import {
  NETIF_RSP,
  NETRXF,
  NETTXF,
  rxResponseFlags,
  rxResponseOffset,
  rxResponseStatus,
  txResponseId,
  txResponseStatus,
  writeRxRequest,
  writeTxRequest,
} from "./netif.ts";

/** Frames waiting for TX pages or slots before new ones are dropped. */
export const TX_QUEUE_MAX = 512;

export interface NetifFrontStats {
  txPackets: number;
  txBytes: number;
  txErrors: number;
  txDropped: number;
  rxPackets: number;
  rxBytes: number;
  rxErrors: number;
}

export interface Buffer4k {
  readonly page: Uint8Array;
  readonly ref: number;
}

export interface NetifFrontOptions {
  readonly tx: FrontRing;
  readonly rx: FrontRing;
  readonly txBufs: readonly Buffer4k[];
  readonly rxBufs: readonly Buffer4k[];
  /** Kick the backend (one port for both rings). */
  notify(): void;
  /** A whole frame the backend delivered (a copy: the engine's page is reused at once). */
  receive(frame: Uint8Array): void;
  log(line: string): void;
}

/** Every counter at 0: a new engine's, and the sum of no queue. */
export const NO_FRONT_STATS: Readonly<NetifFrontStats> = {
  txPackets: 0,
  txBytes: 0,
  txErrors: 0,
  txDropped: 0,
  rxPackets: 0,
  rxBytes: 0,
  rxErrors: 0,
};

export class NetifFront {
  readonly stats: NetifFrontStats = { ...NO_FRONT_STATS };
  readonly #o: NetifFrontOptions;
  readonly #freeTx: number[];
  readonly #txInFlight: Uint8Array;
  readonly #txQueue: Uint8Array[] = [];
  /** RX page index posted in each RX slot, -1 when none. */
  readonly #rxAt: Int32Array;
  readonly #freeRx: number[];
  /** The fragments of a frame whose later slots have not come yet. */
  #rxParts: Uint8Array[] = [];
  #broken: string | null = null;

  constructor(o: NetifFrontOptions) {
    if (o.txBufs.length > o.tx.size)
      throw new RangeError(`Cannot use ${o.txBufs.length} TX pages: ring has ${o.tx.size} slots`);
    this.#o = o;
    this.#freeTx = o.txBufs.map((_, i) => o.txBufs.length - 1 - i);
    this.#txInFlight = new Uint8Array(o.txBufs.length);
    this.#rxAt = new Int32Array(o.rx.size).fill(-1);
    this.#freeRx = o.rxBufs.map((_, i) => i);
  }

  /** Posts the RX pages (xennet_connect's first xennet_alloc_rx_buffers). */
  start(): void {
    this.#postRx();
  }

  /** Why the device stopped, or null. */
  get broken(): string | null {
    return this.#broken;
  }

  /** Sends one Ethernet frame; false when it was dropped (queue full, too long, broken). */
  send(frame: Uint8Array): boolean {
    if (this.#broken !== null || frame.length === 0 || frame.length > 0xffff) {
      this.stats.txDropped++;
      return false;
    }
    if (this.#txQueue.length > 0 || !this.#put(frame)) {
      if (this.#txQueue.length >= TX_QUEUE_MAX) {
        this.stats.txDropped++;
        return false;
      }
      this.#txQueue.push(frame);
      // Short of pages: ask for TX completions (see #txGc), and take those already there.
      this.#txGc();
      this.#flushQueue();
      return true;
    }
    if (this.#o.tx.pushRequestsAndCheckNotify()) this.#o.notify();
    if (this.#freeTx.length < this.#o.txBufs.length / 2) this.#txGc();
    return true;
  }

  /** The backend kicked: TX responses, then RX responses, then whatever waited. */
  onEvent(): void {
    if (this.#broken !== null) return;
    this.#txGc();
    this.#rxPoll();
    this.#flushQueue();
  }

  #flushQueue(): void {
    let put = false;
    while (this.#txQueue.length > 0 && this.#put(this.#txQueue[0]!)) {
      this.#txQueue.shift();
      put = true;
    }
    if (put && this.#o.tx.pushRequestsAndCheckNotify()) this.#o.notify();
  }

  /** Puts the frame's requests on the ring (not pushed); false when pages or slots lack. */
  #put(frame: Uint8Array): boolean {
    const tx = this.#o.tx;
    const slots = Math.max(1, Math.ceil(frame.length / XEN_PAGE_SIZE));
    if (this.#freeTx.length < slots || tx.freeRequests() < slots) return false;
    for (let s = 0, off = 0; s < slots; s++) {
      const id = this.#freeTx.pop()!;
      this.#txInFlight[id] = 1;
      const buf = this.#o.txBufs[id]!;
      const n = Math.min(XEN_PAGE_SIZE, frame.length - off);
      buf.page.set(frame.subarray(off, off + n));
      off += n;
      const slot = tx.getRequest(tx.reqProdPvt);
      writeTxRequest(
        new DataView(slot.buffer, slot.byteOffset, slot.byteLength),
        buf.ref,
        0,
        s < slots - 1 ? NETTXF.moreData : 0,
        id,
        s === 0 ? frame.length : n,
      );
      tx.reqProdPvt = (tx.reqProdPvt + 1) >>> 0;
    }
    this.stats.txPackets++;
    this.stats.txBytes += frame.length;
    return true;
  }

  #fail(why: string): void {
    this.#broken = why;
    this.#o.log(`${why}; device broken`);
  }

  /**
   * xennet_tx_buf_gc: each response frees its page; an id not in flight breaks the device. It asks
   * for an event on the next TX response (rsp_event) only while short of pages or with frames
   * waiting: otherwise completions are collected at the next RX event or send, and the backend's
   * TX responses do not wake the guest (Linux re-arms always; a wake-up costs far more here).
   */
  #txGc(): void {
    const tx = this.#o.tx;
    const short = () => this.#txQueue.length > 0 || this.#freeTx.length < this.#o.txBufs.length / 2;
    do {
      const prod = tx.shared.rspProd; // once; acquire
      if (tx.responseProdOverflow(prod)) {
        this.#fail(`tx rsp_prod ${prod} is past what was requested`);
        return;
      }
      for (let i = tx.rspCons; i !== prod; i = (i + 1) >>> 0) {
        const r = tx.getResponse(i);
        const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
        const status = txResponseStatus(v);
        tx.rspCons = (i + 1) >>> 0;
        if (status === NETIF_RSP.null) continue;
        const id = txResponseId(v);
        if (id >= this.#txInFlight.length || this.#txInFlight[id] !== 1) {
          this.#fail(`tx response for inactive request ${id}`);
          return;
        }
        if (status !== NETIF_RSP.okay) this.stats.txErrors++;
        this.#txInFlight[id] = 0;
        this.#freeTx.push(id);
      }
    } while (short() && tx.finalCheckForResponses());
  }

  /** xennet_poll: whole frames out of the RX slots, then the pages posted again. */
  #rxPoll(): void {
    const rx = this.#o.rx;
    const mask = rx.size - 1;
    do {
      const prod = rx.shared.rspProd;
      if (rx.responseProdOverflow(prod)) {
        this.#fail(`rx rsp_prod ${prod} is past what was requested`);
        return;
      }
      for (let i = rx.rspCons; i !== prod; i = (i + 1) >>> 0) {
        const r = rx.getResponse(i);
        const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
        const status = rxResponseStatus(v);
        const flags = rxResponseFlags(v);
        const offset = rxResponseOffset(v);
        rx.rspCons = (i + 1) >>> 0;
        const bufIdx = this.#rxAt[i & mask]!;
        this.#rxAt[i & mask] = -1;
        if (bufIdx < 0) {
          this.#fail(`rx response in slot ${i & mask} with no request posted`);
          return;
        }
        this.#freeRx.push(bufIdx);
        if (status < 0 || offset + status > XEN_PAGE_SIZE) {
          this.stats.rxErrors++;
          this.#rxParts = [];
          continue;
        }
        this.#rxParts.push(this.#o.rxBufs[bufIdx]!.page.slice(offset, offset + status));
        if (flags & NETRXF.extraInfo) {
          // The extra slot follows the first: nothing in it is used (no GSO asked for).
          i = (i + 1) >>> 0;
          rx.rspCons = (i + 1) >>> 0;
          const x = this.#rxAt[i & mask]!;
          this.#rxAt[i & mask] = -1;
          if (x >= 0) this.#freeRx.push(x);
        }
        if (flags & NETRXF.moreData) continue;
        const parts = this.#rxParts;
        this.#rxParts = [];
        const frame = parts.length === 1 ? parts[0]! : concat(parts);
        this.stats.rxPackets++;
        this.stats.rxBytes += frame.length;
        this.#o.receive(frame);
      }
      this.#postRx();
    } while (rx.finalCheckForResponses());
  }

  /** xennet_alloc_rx_buffers: every free RX page on the ring, id = its slot. */
  #postRx(): void {
    const rx = this.#o.rx;
    const mask = rx.size - 1;
    let posted = false;
    while (this.#freeRx.length > 0 && rx.freeRequests() > 0) {
      const idx = rx.reqProdPvt;
      const b = this.#freeRx.pop()!;
      this.#rxAt[idx & mask] = b;
      const slot = rx.getRequest(idx);
      writeRxRequest(
        new DataView(slot.buffer, slot.byteOffset, slot.byteLength),
        idx & mask,
        this.#o.rxBufs[b]!.ref,
      );
      rx.reqProdPvt = (idx + 1) >>> 0;
      posted = true;
    }
    if (posted && rx.pushRequestsAndCheckNotify()) this.#o.notify();
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
