/**
 * netback's ring engine for one vif (one queue): the guest's TX ring (its frames out) and RX ring
 * (frames in, by the copy receive path), with Linux netback's checks (drivers/net/xen-netback/
 * netback.c xenvif_tx_build_gops, xenvif_count_requests, xenvif_get_extras; rx.c). The XenBus driver
 * is netback.ts; this file never touches XenStore and gets its grant copies, event kicks and uplink
 * through its constructor, so tests drive it with a hand-made frontend.
 *
 * TX, per frame (a chain of requests):
 *
 *   first request   size = the whole frame's length; NETTXF_extra_info: extra slots follow;
 *                   NETTXF_more_data: more fragments follow
 *   extras          each in its own slot, chained by XEN_NETIF_EXTRA_FLAG_MORE; answered NULL
 *   fragments       size = that fragment's own length; the first's share is the rest
 *
 * What a frontend gets for a bad chain, as Linux netback:
 *
 *   req_prod more than a ring ahead of req_cons          fatal ("Impossible number of requests")
 *   an extra missing, or of type 0 or >= MAX             fatal
 *   a GSO extra with size 0 or an unknown GSO type       fatal
 *   a chain needing more slots than are posted           fatal ("Asked for N slots but exceeds this limit")
 *   a chain of fatal_skb_slots (20) slots or more        fatal ("Malicious frontend using N slots")
 *   a chain of XEN_NETBK_LEGACY_SLOTS_MAX (18) or more    dropped: ERROR for every slot
 *   a fragment larger than what remains of the frame     dropped: ERROR for every slot
 *   offset + size of any slot past the page's end        fatal ("Cross page boundary")
 *   a frame shorter than an Ethernet header (14)         dropped: ERROR for every slot
 *   a slot whose grant cannot be had (not granted to dom0) dropped: ERROR for that slot, OKAY for the others
 *
 * Fatal is xenvif_fatal_tx_err: the vif is disabled (carrier off) and its rings are no longer read
 * until the frontend connects again; other vifs carry on.
 *
 * RX: a frame from the uplink waits in a bounded queue until the frontend has posted enough RX
 * requests (one per 4 KiB of frame; without feature-sg a frame over a page is dropped). Each slot's
 * bytes are copied to the request's granted page at offset 0 (netback.ts: through its grant-cache.ts); the response goes in the request's own
 * slot (netif.h: frontends rely on it) with the request's id, status = the bytes in the slot, and
 * NETRXF_more_data while the frame goes on. A copy that fails turns that slot's status to ERROR.
 * Lacking requests, it sets req_event = req_prod + 1 and waits for the frontend's kick.
 */
import type { BackRing } from "../../ring/ring.ts";
import { XEN_PAGE_SIZE } from "../../xen/xen.ts";
import {
  NETIF_RSP,
  NETRXF,
  NETTXF,
  rxRequestGref,
  rxRequestId,
  txRequestFlags,
  txRequestGref,
  txRequestId,
  txRequestOffset,
  txRequestSize,
  writeRxResponse,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE,
  XEN_NETIF_GSO_TYPE,
  XEN_NETIF_NR_SLOTS_MIN,
} from "./netif.ts";

/** Linux's XEN_NETBK_LEGACY_SLOTS_MAX: a longer chain is dropped. */
export const XEN_NETBK_LEGACY_SLOTS_MAX = XEN_NETIF_NR_SLOTS_MIN;
/** Linux netback's fatal_skb_slots default (FATAL_SKB_SLOTS_DEFAULT): a longer chain is fatal. */
export const FATAL_SKB_SLOTS_DEFAULT = 20;
/** ETH_HLEN: the shortest frame a TX chain may carry. */
export const ETH_HLEN = 14;
/** Frames waiting for RX requests before new ones are dropped (Linux bounds its queue by bytes). */
export const RX_QUEUE_MAX = 256;

export interface NetifBackStats {
  txPackets: number;
  txBytes: number;
  /** Chains answered ERROR (dropped by a check, or a failed copy). */
  txErrors: number;
  rxPackets: number;
  rxBytes: number;
  /** Frames from the uplink dropped: queue full, too big for the frontend, or a failed copy. */
  rxDropped: number;
}

/** Every counter at 0: a new engine's, and the sum of no queue. */
export const NO_BACK_STATS: Readonly<NetifBackStats> = {
  txPackets: 0,
  txBytes: 0,
  txErrors: 0,
  rxPackets: 0,
  rxBytes: 0,
  rxDropped: 0,
};

export interface NetifBackOptions {
  readonly tx: BackRing;
  readonly rx: BackRing;
  /** Copies `len` bytes of the frontend's granted `ref` at `offset` into `into` at `at`: GNTST_*. */
  copyFromGuest(ref: number, offset: number, len: number, into: Uint8Array, at: number): number;
  /** Copies `data` to the frontend's granted `ref` at `offset`: GNTST_*. */
  copyToGuest(ref: number, offset: number, data: Uint8Array): number;
  /** Kicks the frontend for TX responses (the one port, or event-channel-tx). */
  notifyTx(): void;
  /** Kicks the frontend for RX responses (the one port, or event-channel-rx). */
  notifyRx(): void;
  /** A frame the guest sent, whole. */
  deliver(frame: Uint8Array): void;
  /** xenvif_fatal_tx_err: called once, with Linux's message. */
  fatal(reason: string): void;
  log(line: string): void;
  /** The frontend's feature-sg: RX frames may take more than one slot. */
  readonly sg: boolean;
  readonly fatalSkbSlots?: number;
}

export class NetifBack {
  readonly stats: NetifBackStats = { ...NO_BACK_STATS };
  readonly #o: NetifBackOptions;
  readonly #tx: BackRing;
  readonly #rx: BackRing;
  readonly #fatalSlots: number;
  /** Frames from the uplink waiting for RX requests. */
  readonly #rxQueue: Uint8Array[] = [];
  #disabled = false;
  #stopped = false;
  /** One fragment list reused per chain: [gref, offset, size, id] × slots. */
  readonly #frags = new Int32Array(FATAL_SKB_SLOTS_DEFAULT * 4 + 4);

  constructor(o: NetifBackOptions) {
    this.#o = o;
    this.#tx = o.tx;
    this.#rx = o.rx;
    this.#fatalSlots = o.fatalSkbSlots ?? FATAL_SKB_SLOTS_DEFAULT;
    if (this.#fatalSlots > FATAL_SKB_SLOTS_DEFAULT) this.#frags = new Int32Array(this.#fatalSlots * 4 + 4);
  }

  /** True once a fatal error disabled the vif. */
  get disabled(): boolean {
    return this.#disabled;
  }

  /** The frontend kicked (TX or RX, one port or two): handle both rings. */
  onEvent(): void {
    if (this.#disabled || this.#stopped) return;
    this.#txAction();
    this.#rxAction();
  }

  /** A frame for the guest, from the uplink. */
  receive(frame: Uint8Array): void {
    if (this.#disabled || this.#stopped) return;
    if (this.#rxQueue.length >= RX_QUEUE_MAX) {
      this.stats.rxDropped++;
      return;
    }
    this.#rxQueue.push(frame);
    this.#rxAction();
  }

  /** No more ring work (the device is disconnecting). */
  stop(): void {
    this.#stopped = true;
    this.#rxQueue.length = 0;
  }

  #fatal(reason: string): void {
    if (this.#disabled) return;
    this.#disabled = true;
    this.#rxQueue.length = 0;
    this.#o.log(`${reason}; fatal error; disabling device`);
    this.#o.fatal(reason);
  }

  // ------------------------------------------------------------------ TX

  #txAction(): void {
    const tx = this.#tx;
    for (;;) {
      const more = this.#txBuild();
      if (tx.rspProdPvt !== tx.shared.rspProd && tx.pushResponsesAndCheckNotify()) this.#o.notifyTx();
      if (!more || this.#disabled) return;
      // RING_FINAL_CHECK_FOR_REQUESTS: re-arm req_event, then look once more.
      if (!tx.finalCheckForRequests()) return;
    }
  }

  /** xenvif_tx_build_gops + xenvif_tx_submit for every posted chain; false once disabled. */
  #txBuild(): boolean {
    const tx = this.#tx;
    for (;;) {
      const rp = tx.shared.reqProd; // once; acquire
      if (tx.requestProdOverflow(rp)) {
        this.#fatal(`Impossible number of requests. req_prod ${rp}, req_cons ${tx.reqCons}, size ${tx.size}`);
        return false;
      }
      if (tx.reqCons === rp) return true;
      let workToDo = (rp - tx.reqCons) >>> 0;
      const first = tx.copyRequest(tx.reqCons);
      const v = new DataView(first.buffer, first.byteOffset, first.byteLength);
      tx.reqCons = (tx.reqCons + 1) >>> 0;
      workToDo--;
      const flags = txRequestFlags(v);
      let extraCount = 0;
      if (flags & NETTXF.extraInfo) {
        const r = this.#getExtras(rp);
        if (r < 0) return false;
        extraCount = r;
        workToDo -= r;
      }
      // xenvif_count_requests: the fragments after the first.
      const frags = this.#frags;
      const total = txRequestSize(v);
      let firstSize = total;
      let slots = 0;
      let drop: string | null = null;
      if (flags & NETTXF.moreData) {
        let moreData: number;
        do {
          if (slots >= workToDo) {
            this.#fatal(`Asked for ${slots} slots but exceeds this limit`);
            return false;
          }
          if (slots >= this.#fatalSlots) {
            this.#fatal(`Malicious frontend using ${slots} slots, threshold ${this.#fatalSlots}`);
            return false;
          }
          if (drop === null && slots >= XEN_NETBK_LEGACY_SLOTS_MAX) {
            drop = `Too many slots (${slots}) exceeding limit (${XEN_NETBK_LEGACY_SLOTS_MAX}), dropping packet`;
          }
          const f = tx.copyRequest((tx.reqCons + slots) >>> 0);
          const fv = new DataView(f.buffer, f.byteOffset, f.byteLength);
          const size = txRequestSize(fv);
          const offset = txRequestOffset(fv);
          if (drop === null && size > firstSize) {
            drop = `Invalid tx request, slot size ${size} > remaining size ${firstSize}`;
          }
          firstSize = (firstSize - size) & 0xffff;
          frags[slots * 4] = txRequestGref(fv) | 0;
          frags[slots * 4 + 1] = offset;
          frags[slots * 4 + 2] = size;
          frags[slots * 4 + 3] = txRequestId(fv);
          slots++;
          if (offset + size > XEN_PAGE_SIZE) {
            this.#fatal(`Cross page boundary, txp->offset: ${offset}, size: ${size}`);
            return false;
          }
          moreData = txRequestFlags(fv) & NETTXF.moreData;
        } while (moreData);
      }
      tx.reqCons = (tx.reqCons + slots) >>> 0;
      const firstOffset = txRequestOffset(v);
      if (drop === null && firstSize < ETH_HLEN) drop = `Bad packet size: ${firstSize}`;
      if (drop === null && firstOffset + firstSize > XEN_PAGE_SIZE) {
        this.#fatal(`Cross page boundary, txreq.offset: ${firstOffset}, size: ${firstSize}`);
        return false;
      }
      if (drop !== null) {
        this.#o.log(drop);
        this.#txErr(txRequestId(v), extraCount, slots);
        continue;
      }
      // Copy the frame out of the guest's pages, slot by slot.
      const frame = new Uint8Array(total);
      const st = new Int8Array(slots + 1);
      st[0] = this.#o.copyFromGuest(txRequestGref(v), firstOffset, firstSize, frame, 0);
      let at = firstSize;
      for (let i = 0; i < slots; i++) {
        const size = frags[i * 4 + 2]!;
        st[i + 1] = this.#o.copyFromGuest(frags[i * 4]! >>> 0, frags[i * 4 + 1]!, size, frame, at);
        at += size;
      }
      const ok = st.every((s) => s === 0);
      this.#respond(txRequestId(v), st[0] === 0 ? NETIF_RSP.okay : NETIF_RSP.error, extraCount);
      for (let i = 0; i < slots; i++) {
        this.#respond(frags[i * 4 + 3]!, st[i + 1] === 0 ? NETIF_RSP.okay : NETIF_RSP.error, 0);
      }
      if (!ok) {
        this.stats.txErrors++;
        this.#o.log(`Bad status ${st.find((s) => s !== 0)} from copy of a tx slot; frame dropped`);
        continue;
      }
      this.stats.txPackets++;
      this.stats.txBytes += total;
      this.#o.deliver(frame);
    }
  }

  /** xenvif_get_extras: the extra slots after the first request; their count, or -1 after a fatal. */
  #getExtras(rp: number): number {
    const tx = this.#tx;
    let n = 0;
    let flags: number;
    do {
      if (tx.reqCons === rp) {
        this.#fatal("Missing extra info");
        return -1;
      }
      const e = tx.copyRequest(tx.reqCons);
      tx.reqCons = (tx.reqCons + 1) >>> 0;
      n++;
      const type = e[0]!;
      flags = e[1]!;
      if (type === XEN_NETIF_EXTRA_TYPE.none || type >= XEN_NETIF_EXTRA_TYPE.max) {
        this.#fatal(`Invalid extra type: ${type}`);
        return -1;
      }
      if (type === XEN_NETIF_EXTRA_TYPE.gso) {
        const size = e[2]! | (e[3]! << 8);
        const gsoType = e[4]!;
        if (size === 0) {
          this.#fatal("GSO size must not be zero.");
          return -1;
        }
        if (gsoType !== XEN_NETIF_GSO_TYPE.tcpv4 && gsoType !== XEN_NETIF_GSO_TYPE.tcpv6) {
          this.#fatal(`Bad GSO type ${gsoType}.`);
          return -1;
        }
      }
    } while (flags & XEN_NETIF_EXTRA_FLAG_MORE);
    return n;
  }

  /** make_tx_response: `status` for the request, NULL for each of its extra slots. */
  #respond(id: number, status: number, extraCount: number): void {
    const tx = this.#tx;
    let i = tx.rspProdPvt;
    const r = tx.getResponse(i);
    const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
    v.setUint16(0, id, true);
    v.setInt16(2, status, true);
    for (let n = 0; n < extraCount; n++) {
      i = (i + 1) >>> 0;
      const x = tx.getResponse(i);
      new DataView(x.buffer, x.byteOffset, x.byteLength).setInt16(2, NETIF_RSP.null, true);
    }
    tx.rspProdPvt = (i + 1) >>> 0;
  }

  /** xenvif_tx_err: ERROR for the first request and each of its `slots` fragments. */
  #txErr(firstId: number, extraCount: number, slots: number): void {
    this.stats.txErrors++;
    this.#respond(firstId, NETIF_RSP.error, extraCount);
    const frags = this.#frags;
    for (let i = 0; i < slots; i++) this.#respond(frags[i * 4 + 3]!, NETIF_RSP.error, 0);
  }

  // ------------------------------------------------------------------ RX

  /** xenvif_rx_action: as many queued frames as the posted requests take. */
  #rxAction(): void {
    if (this.#rxQueue.length === 0 || this.#disabled || this.#stopped) return;
    const rx = this.#rx;
    let pushed = false;
    while (this.#rxQueue.length > 0) {
      const frame = this.#rxQueue[0]!;
      if (!this.#o.sg && frame.length > XEN_PAGE_SIZE) {
        this.#rxQueue.shift();
        this.stats.rxDropped++;
        continue;
      }
      const needed = Math.max(1, Math.ceil(frame.length / XEN_PAGE_SIZE));
      if (needed > rx.size) {
        this.#rxQueue.shift();
        this.stats.rxDropped++;
        continue;
      }
      if (!this.#slotsAvailable(needed)) break;
      if (this.#disabled) return;
      this.#rxQueue.shift();
      this.#rxFrame(frame, needed);
      pushed = true;
    }
    if (pushed && rx.pushResponsesAndCheckNotify()) this.#o.notifyRx();
  }

  /** xenvif_rx_ring_slots_available: else req_event = req_prod + 1, and look once more. */
  #slotsAvailable(needed: number): boolean {
    const rx = this.#rx;
    for (;;) {
      const prod = rx.shared.reqProd;
      if (rx.requestProdOverflow(prod)) {
        this.#fatal(
          `Impossible number of rx requests. req_prod ${prod}, req_cons ${rx.reqCons}, size ${rx.size}`,
        );
        return false;
      }
      if ((prod - rx.reqCons) >>> 0 >= needed) return true;
      rx.shared.reqEvent = (prod + 1) >>> 0;
      // Atomics are sequentially consistent: the event index is visible before prod is re-read.
      if (rx.shared.reqProd === prod) return false;
    }
  }

  /** One frame into `needed` posted requests, each response in its request's slot. */
  #rxFrame(frame: Uint8Array, needed: number): void {
    const rx = this.#rx;
    let off = 0;
    let failed = false;
    for (let s = 0; s < needed; s++) {
      const idx = rx.reqCons;
      const req = rx.copyRequest(idx);
      const v = new DataView(req.buffer, req.byteOffset, req.byteLength);
      rx.reqCons = (idx + 1) >>> 0;
      const n = Math.min(XEN_PAGE_SIZE, frame.length - off);
      const status = this.#o.copyToGuest(rxRequestGref(v), 0, frame.subarray(off, off + n));
      off += n;
      const more = off < frame.length ? NETRXF.moreData : 0;
      const rsp = rx.getResponse(rx.rspProdPvt);
      writeRxResponse(
        new DataView(rsp.buffer, rsp.byteOffset, rsp.byteLength),
        rxRequestId(v),
        0,
        more,
        status === 0 ? n : NETIF_RSP.error,
      );
      if (status !== 0) failed = true;
      rx.rspProdPvt = (rx.rspProdPvt + 1) >>> 0;
    }
    if (failed) {
      this.stats.rxDropped++;
      this.#o.log(`Bad status from copy to the frontend's rx page; frame dropped`);
      return;
    }
    this.stats.rxPackets++;
    this.stats.rxBytes += frame.length;
  }
}
