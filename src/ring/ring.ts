/**
 * A port of Xen's `io/ring.h`: request/response rings in shared memory.
 *
 * The shared page (`struct <name>_sring`) is the same for every ring type:
 *
 *   req_prod u32 @0, req_event u32 @4, rsp_prod u32 @8, rsp_event u32 @12,
 *   private union (4 bytes) @16, padding to @64, then the entries.
 *
 * An entry is the union of the request and the response, so `entrySize` is the larger of the two
 * (as C lays the union out: e.g. blkif 112). The ring holds as many entries as fit, rounded down
 * to a power of two (`__RD32`), so an index maps to a slot with `idx & (size - 1)`.
 *
 * Indexes are free-running uint32 counters that wrap modulo 2^32; every sum and difference here is
 * taken `>>> 0`, exactly as C's `RING_IDX` (unsigned int) arithmetic does. The page is native
 * endian (little endian on every platform Node runs on here), as the C structs are.
 *
 * Memory ordering: the four shared indexes are read with `Atomics.load` (acquire) and written with
 * `Atomics.store` (release); entries are plain bytes. A producer writes entries, then publishes its
 * index; a consumer loads the index, then reads entries. JS atomics are sequentially consistent,
 * which also gives the full barrier (`xen_mb`) between publishing a producer index and reading the
 * peer's event index.
 *
 * The ring never signals: the `…AndCheckNotify()` methods return whether the peer must be kicked and
 * the caller sends the event. Consumers read the producer index once, check it, then act:
 *
 *   // backend
 *   const rp = back.shared.reqProd;                    // once; acquire
 *   if (back.requestProdOverflow(rp)) return fatal();  // hostile frontend
 *   for (let rc = back.reqCons; rc !== rp && !back.requestConsOverflow(rc); rc = (rc + 1) >>> 0) {
 *     const req = back.copyRequest(rc);                // validate the copy, never the shared slot
 *     back.reqCons = (rc + 1) >>> 0;
 *     …
 *   }
 *
 * Multi-page rings (blkif's `ring-page-order`): pass the n pages as one contiguous `Uint8Array`, or
 * as an array of n separate 4 KiB pages (each granted page is its own buffer). With separate pages
 * an entry may straddle two pages (blkif: entry 72 of a 4-page ring starts 64 bytes before the end
 * of page 1); `copy()` and `write()` handle that, while `entry()` (a live view) throws for such a
 * slot, so code meant for multi-page rings reads and writes whole entries with copy()/write().
 */
import { XEN_PAGE_SIZE } from "../xen/xen.ts";

/** Byte offsets of the shared ring header; identical for every ring type. */
export const SRING = {
  reqProd: 0,
  reqEvent: 4,
  rspProd: 8,
  rspEvent: 12,
  /** `pvt` union: netif `smartpoll_active`, tapif `msg`, `pvt_pad[4]`. */
  pvt: 16,
  pvtSize: 4,
  pad: 20,
  padSize: 44,
  /** First entry (`ring[0]`). */
  entries: 64,
} as const;

// Word positions of the indexes in a Uint32Array over the header.
const REQ_PROD = SRING.reqProd / 4;
const REQ_EVENT = SRING.reqEvent / 4;
const RSP_PROD = SRING.rspProd / 4;
const RSP_EVENT = SRING.rspEvent / 4;

/** `__RD32`: rounds a uint32 down to a power of two (0 stays 0). */
export function roundDownPow2(x: number): number {
  const v = x >>> 0;
  if (v === 0) return 0;
  return 2 ** (31 - Math.clz32(v));
}

/**
 * `__CONST_RING_SIZE`: the number of entries a ring of `bytes` bytes holds for entries of
 * `entrySize` bytes (the size of the request/response union).
 */
export function ringSize(bytes: number, entrySize: number): number {
  if (!Number.isSafeInteger(entrySize) || entrySize < 1) {
    throw new RangeError(`Cannot size ring: entry size must be a positive integer, got ${entrySize}`);
  }
  if (!Number.isSafeInteger(bytes) || bytes < SRING.entries) {
    throw new RangeError(`Cannot size ring: need at least ${SRING.entries} bytes, got ${bytes}`);
  }
  return roundDownPow2(Math.floor((bytes - SRING.entries) / entrySize));
}

/**
 * `SHARED_RING_INIT`: both producer indexes 0, both event indexes 1, private union and padding
 * zeroed; entries untouched. Only the frontend initialises the shared ring: a backend that does so
 * destroys the ring of a frontend that resumed.
 */
export function initSharedRing(page: Uint8Array): void {
  const idx = indexView(page);
  page.fill(0, SRING.pvt, SRING.entries);
  Atomics.store(idx, RSP_EVENT, 1);
  Atomics.store(idx, REQ_EVENT, 1);
  Atomics.store(idx, RSP_PROD, 0);
  Atomics.store(idx, REQ_PROD, 0);
}

function indexView(page: Uint8Array): Uint32Array {
  if (page.byteOffset % 4 !== 0) {
    throw new RangeError(`Cannot use ring page: byte offset ${page.byteOffset} is not 4-byte aligned`);
  }
  if (page.byteLength < SRING.entries) {
    throw new RangeError(
      `Cannot use ring page: need at least ${SRING.entries} bytes, got ${page.byteLength}`,
    );
  }
  return new Uint32Array(page.buffer, page.byteOffset, 4);
}

/**
 * The shared page of one ring: its four indexes and its entries. Every field read is an atomic
 * load and every write an atomic store. Front and back rings use it; a caller reads it directly to
 * take a producer index once, or to write a custom event index (batching).
 */
export class SharedRing {
  /** The whole ring memory (one page, or n contiguous pages); the first page for separate pages. */
  readonly page: Uint8Array;
  /** Every page of the ring, in order (one element for a contiguous ring). */
  readonly pages: readonly Uint8Array[];
  /** A DataView over `page`, for callers decoding entries at `offsetOf(idx)` without allocating. */
  readonly view: DataView;
  readonly entrySize: number;
  /** Number of entries: `__RING_SIZE`, a power of two. */
  readonly size: number;
  readonly #idx: Uint32Array;
  readonly #mask: number;
  /**
   * One view per slot, made once: `entry()` allocates nothing on the hot path. A slot that
   * straddles two separate pages is the pair of its two parts.
   */
  readonly #slots: readonly (Uint8Array | readonly [Uint8Array, Uint8Array])[];

  constructor(memory: Uint8Array | readonly Uint8Array[], entrySize: number) {
    const pages = memory instanceof Uint8Array ? [memory] : [...memory];
    const page = pages[0];
    if (page === undefined) throw new RangeError("Cannot use ring: no pages given");
    if (pages.length > 1) {
      for (const p of pages) {
        if (p.byteLength !== XEN_PAGE_SIZE) {
          throw new RangeError(
            `Cannot use ring pages: each must be ${XEN_PAGE_SIZE} bytes, got ${p.byteLength}`,
          );
        }
      }
    }
    const bytes = pages.length > 1 ? pages.length * XEN_PAGE_SIZE : page.byteLength;
    this.#idx = indexView(page);
    this.size = ringSize(bytes, entrySize);
    if (this.size === 0) {
      throw new RangeError(`Cannot use ring page: ${bytes} bytes hold no entry of ${entrySize} bytes`);
    }
    this.page = page;
    this.pages = pages;
    this.view = new DataView(page.buffer, page.byteOffset, page.byteLength);
    this.entrySize = entrySize;
    this.#mask = this.size - 1;
    this.#slots = Array.from({ length: this.size }, (_, i) => {
      const start = SRING.entries + i * entrySize;
      if (pages.length === 1) return page.subarray(start, start + entrySize);
      const p = Math.floor(start / XEN_PAGE_SIZE);
      const off = start % XEN_PAGE_SIZE;
      if (off + entrySize <= XEN_PAGE_SIZE) return pages[p]!.subarray(off, off + entrySize);
      return [pages[p]!.subarray(off), pages[p + 1]!.subarray(0, off + entrySize - XEN_PAGE_SIZE)] as const;
    });
  }

  get reqProd(): number {
    return Atomics.load(this.#idx, REQ_PROD);
  }
  set reqProd(v: number) {
    Atomics.store(this.#idx, REQ_PROD, v >>> 0);
  }
  get reqEvent(): number {
    return Atomics.load(this.#idx, REQ_EVENT);
  }
  set reqEvent(v: number) {
    Atomics.store(this.#idx, REQ_EVENT, v >>> 0);
  }
  get rspProd(): number {
    return Atomics.load(this.#idx, RSP_PROD);
  }
  set rspProd(v: number) {
    Atomics.store(this.#idx, RSP_PROD, v >>> 0);
  }
  get rspEvent(): number {
    return Atomics.load(this.#idx, RSP_EVENT);
  }
  set rspEvent(v: number) {
    Atomics.store(this.#idx, RSP_EVENT, v >>> 0);
  }

  /** Byte offset in `page` of the slot for free-running index `idx`. */
  offsetOf(idx: number): number {
    return SRING.entries + (idx & this.#mask) * this.entrySize;
  }

  /**
   * `RING_GET_*`: a live view of the slot for `idx` (shared memory: the peer may change it).
   * Throws for a slot that straddles two separate pages: use copy() and write() there.
   */
  entry(idx: number): Uint8Array {
    const slot = this.#slots[idx & this.#mask]!;
    if (slot instanceof Uint8Array) return slot;
    throw new RangeError(`Cannot view entry ${idx & this.#mask}: it straddles two ring pages`);
  }

  /** Writes a whole entry (or its first `src.length` bytes) into the slot for `idx`. */
  write(idx: number, src: Uint8Array): void {
    if (src.length > this.entrySize) {
      throw new RangeError(`Cannot write entry: ${src.length} bytes exceed entry size ${this.entrySize}`);
    }
    const slot = this.#slots[idx & this.#mask]!;
    if (slot instanceof Uint8Array) {
      slot.set(src);
      return;
    }
    const [a, b] = slot;
    if (src.length <= a.length) {
      a.set(src);
    } else {
      a.set(src.subarray(0, a.length));
      b.set(src.subarray(a.length));
    }
  }

  /**
   * `RING_COPY_*`: a private copy of the slot for `idx`, read once. Pass `into` to reuse a buffer;
   * its length (at most `entrySize`) is how many bytes are copied.
   */
  copy(idx: number, into?: Uint8Array): Uint8Array {
    const slot = this.#slots[idx & this.#mask]!;
    if (!(slot instanceof Uint8Array)) return copySplit(slot, into ?? new Uint8Array(this.entrySize));
    if (into === undefined) return slot.slice();
    if (into.length === this.entrySize) {
      into.set(slot);
    } else if (into.length < this.entrySize) {
      // A byte loop beats making a subarray for the short prefixes responses usually are.
      for (let i = 0; i < into.length; i++) into[i] = slot[i]!;
    } else {
      throw new RangeError(
        `Cannot copy entry: buffer of ${into.length} bytes exceeds entry size ${this.entrySize}`,
      );
    }
    return into;
  }

  /** `_notify = (new - event) < (new - old)`: the event index lies in (old, new]. */
  static needsNotify(oldProd: number, newProd: number, event: number): boolean {
    return (newProd - event) >>> 0 < (newProd - oldProd) >>> 0;
  }
}

/** copy() for a slot in two parts: each byte read once. */
function copySplit(slot: readonly [Uint8Array, Uint8Array], into: Uint8Array): Uint8Array {
  const [a, b] = slot;
  if (into.length > a.length + b.length) {
    throw new RangeError(
      `Cannot copy entry: buffer of ${into.length} bytes exceeds entry size ${a.length + b.length}`,
    );
  }
  if (into.length <= a.length) {
    into.set(a.subarray(0, into.length));
  } else {
    into.set(a);
    into.set(b.subarray(0, into.length - a.length), a.length);
  }
  return into;
}

/*
 * Notification suppression (req_event / rsp_event)
 *
 * A consumer about to sleep writes "wake me when the producer index reaches E" into the event
 * index, E = cons + 1 (`finalCheckFor…()`). A producer that moves its index from `old` to `new`
 * notifies iff E lies in (old, new], computed without branches as (new − E) < (new − old) in
 * uint32 arithmetic. The producer publishes its index before it reads E, and the consumer writes E
 * before it re-reads the producer index; with both orderings (JS atomics are sequentially
 * consistent), one of the two always sees the other, so no wake-up is lost.
 *
 * Worked examples (each is a test in test/ring/ring.test.ts):
 *
 * 1. Sleeping consumer. Backend consumed up to 4 and armed req_event = 5. Front pushes one
 *    request: old 4, new 5; (5 − 5) = 0 < (5 − 4) = 1 → notify.
 * 2. Busy consumer. The backend was woken for request 4 (req_event still 5) and is working. Front
 *    pushes two more: old 5, new 7; (7 − 5) = 2 < 2 is false → no notify; the backend finds them
 *    in its final check before it sleeps.
 * 3. One kick per batch. req_event = 5, front pushes four at once: old 4, new 8;
 *    (8 − 5) = 3 < 4 → a single notify for four requests.
 * 4. Wrap-around. req_event = 0xffffffff, old 0xfffffffe, new 0x00000002:
 *    (2 − 0xffffffff) = 3 < (2 − 0xfffffffe) = 4 → notify, as in the unwrapped case.
 * 5. Custom event for batching. A consumer that wants to be woken after 8 more requests sets
 *    req_event = cons + 8 = 12. Front pushes old 4, new 8: (8 − 12) = 0xfffffffc < 4 is false →
 *    no notify. Pushing 8 → 12 then notifies: (12 − 12) = 0 < 4.
 * 6. The race the final check closes. req_event = 5 (stale), req_cons = 5, nothing pending. The
 *    backend's first check sees no work; before it re-arms, the front pushes 5 → 6 and reads the
 *    stale event: (6 − 5) = 1 < 1 is false → no notify. The backend then writes req_event = 6 and
 *    re-checks: it sees req_prod = 6, so the final check reports work instead of sleeping. Had the
 *    front pushed after the re-arm instead, it would have read 6 and notified.
 */

/** The frontend's half: pushes requests, takes responses (`<name>_front_ring`). */
export class FrontRing {
  readonly shared: SharedRing;
  /** `RING_SIZE`. */
  readonly size: number;
  #reqProdPvt: number;
  #rspCons: number;

  /** `FRONT_RING_ATTACH` (start 0: `FRONT_RING_INIT`). Does not touch the shared page. */
  constructor(shared: SharedRing, start = 0) {
    this.shared = shared;
    this.size = shared.size;
    this.#reqProdPvt = start >>> 0;
    this.#rspCons = start >>> 0;
  }

  /** `XEN_FRONT_RING_INIT`: `SHARED_RING_INIT`, then attach at 0. */
  static init(page: Uint8Array | readonly Uint8Array[], entrySize: number): FrontRing {
    initSharedRing(page instanceof Uint8Array ? page : page[0]!);
    return new FrontRing(new SharedRing(page, entrySize), 0);
  }

  /** `FRONT_RING_ATTACH(start)`: resume on a ring whose indexes are already at `start`. */
  static attach(page: Uint8Array | readonly Uint8Array[], entrySize: number, start = 0): FrontRing {
    return new FrontRing(new SharedRing(page, entrySize), start);
  }

  /** Requests written but not yet pushed end at this index (private). */
  get reqProdPvt(): number {
    return this.#reqProdPvt;
  }
  set reqProdPvt(v: number) {
    this.#reqProdPvt = v >>> 0;
  }
  /** Responses before this index have been consumed (private). */
  get rspCons(): number {
    return this.#rspCons;
  }
  set rspCons(v: number) {
    this.#rspCons = v >>> 0;
  }

  /** `RING_FREE_REQUESTS`: size − (req_prod_pvt − rsp_cons), in uint32. */
  freeRequests(): number {
    return (this.size - ((this.#reqProdPvt - this.#rspCons) >>> 0)) >>> 0;
  }

  /** `RING_FULL`. */
  full(): boolean {
    return this.freeRequests() === 0;
  }

  /** `XEN_RING_NR_UNCONSUMED_RESPONSES`: rsp_prod − rsp_cons (unbounded: check overflow first). */
  unconsumedResponses(): number {
    return (this.shared.rspProd - this.#rspCons) >>> 0;
  }

  /** `RING_HAS_UNCONSUMED_RESPONSES` as a boolean. */
  hasUnconsumedResponses(): boolean {
    return this.unconsumedResponses() !== 0;
  }

  /** `RING_GET_REQUEST`: the live slot for `idx`, to fill in place. */
  getRequest(idx: number): Uint8Array {
    return this.shared.entry(idx);
  }

  /** `RING_GET_RESPONSE`: the live slot for `idx`. Prefer `copyResponse()`. */
  getResponse(idx: number): Uint8Array {
    return this.shared.entry(idx);
  }

  /** `RING_COPY_RESPONSE`: a private copy of the slot for `idx`. */
  copyResponse(idx: number, into?: Uint8Array): Uint8Array {
    return this.shared.copy(idx, into);
  }

  /** `RING_RESPONSE_PROD_OVERFLOW`: could a sane backend have produced up to `prod`? */
  responseProdOverflow(prod: number): boolean {
    return (prod - this.#rspCons) >>> 0 > this.size;
  }

  /** `RING_PUSH_REQUESTS`: publish the requests written so far. */
  pushRequests(): void {
    // Ordering point (xen_wmb): the release store makes the entries visible before req_prod.
    this.shared.reqProd = this.#reqProdPvt;
  }

  /** `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publish; true when the backend must be notified. */
  pushRequestsAndCheckNotify(): boolean {
    const oldProd = this.shared.reqProd;
    const newProd = this.#reqProdPvt;
    // Ordering point (xen_wmb): the release store makes the entries visible before req_prod.
    this.shared.reqProd = newProd;
    // Ordering point (xen_mb): seq-cst store then load, so req_event is read after req_prod is out.
    return SharedRing.needsNotify(oldProd, newProd, this.shared.reqEvent);
  }

  /**
   * `RING_FINAL_CHECK_FOR_RESPONSES`: true when responses are waiting; otherwise arms
   * rsp_event = rsp_cons + 1 and checks once more. Call before sleeping.
   */
  finalCheckForResponses(): boolean {
    if (this.hasUnconsumedResponses()) return true;
    this.shared.rspEvent = this.#rspCons + 1;
    // Ordering point (xen_mb): rsp_event is out before rsp_prod is re-read (seq-cst atomics).
    return this.hasUnconsumedResponses();
  }
}

/** The backend's half: takes requests, pushes responses (`<name>_back_ring`). */
export class BackRing {
  readonly shared: SharedRing;
  /** `RING_SIZE`. */
  readonly size: number;
  #rspProdPvt: number;
  #reqCons: number;

  /** `BACK_RING_ATTACH` (start 0: `BACK_RING_INIT`). Never initialises the shared page. */
  constructor(shared: SharedRing, start = 0) {
    this.shared = shared;
    this.size = shared.size;
    this.#rspProdPvt = start >>> 0;
    this.#reqCons = start >>> 0;
  }

  /** `BACK_RING_ATTACH(start)`, e.g. at the existing rsp_prod when reconnecting to a frontend. */
  static attach(page: Uint8Array | readonly Uint8Array[], entrySize: number, start = 0): BackRing {
    return new BackRing(new SharedRing(page, entrySize), start);
  }

  /** Responses written but not yet pushed end at this index (private). */
  get rspProdPvt(): number {
    return this.#rspProdPvt;
  }
  set rspProdPvt(v: number) {
    this.#rspProdPvt = v >>> 0;
  }
  /** Requests before this index have been consumed (private). */
  get reqCons(): number {
    return this.#reqCons;
  }
  set reqCons(v: number) {
    this.#reqCons = v >>> 0;
  }

  /**
   * `XEN_RING_NR_UNCONSUMED_REQUESTS`, the bounded form: min(req_prod − req_cons,
   * size − (req_cons − rsp_prod_pvt)), so a frontend that claims too many requests cannot make the
   * backend consume slots whose responses it has not yet pushed.
   */
  unconsumedRequests(): number {
    const req = (this.shared.reqProd - this.#reqCons) >>> 0;
    const rsp = (this.size - ((this.#reqCons - this.#rspProdPvt) >>> 0)) >>> 0;
    return Math.min(req, rsp);
  }

  /** `RING_HAS_UNCONSUMED_REQUESTS` as a boolean. */
  hasUnconsumedRequests(): boolean {
    return this.unconsumedRequests() !== 0;
  }

  /** `RING_GET_REQUEST`: the live slot for `idx`. Prefer `copyRequest()`. */
  getRequest(idx: number): Uint8Array {
    return this.shared.entry(idx);
  }

  /** `RING_GET_RESPONSE`: the live slot for `idx`, to fill in place. */
  getResponse(idx: number): Uint8Array {
    return this.shared.entry(idx);
  }

  /**
   * `RING_COPY_REQUEST`: a private copy of the slot for `idx`. Validate and use only the copy:
   * the frontend can rewrite the slot at any time (double fetch, XSA-155).
   */
  copyRequest(idx: number, into?: Uint8Array): Uint8Array {
    return this.shared.copy(idx, into);
  }

  /** `RING_REQUEST_CONS_OVERFLOW`: consuming `cons` would reuse a slot still owed a response. */
  requestConsOverflow(cons: number): boolean {
    return (cons - this.#rspProdPvt) >>> 0 >= this.size;
  }

  /** `RING_REQUEST_PROD_OVERFLOW`: could a sane frontend have produced up to `prod`? */
  requestProdOverflow(prod: number): boolean {
    return (prod - this.#rspProdPvt) >>> 0 > this.size;
  }

  /** `RING_PUSH_RESPONSES`: publish the responses written so far. */
  pushResponses(): void {
    // Ordering point (xen_wmb): the release store makes the entries visible before rsp_prod.
    this.shared.rspProd = this.#rspProdPvt;
  }

  /** `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publish; true when the frontend must be notified. */
  pushResponsesAndCheckNotify(): boolean {
    const oldProd = this.shared.rspProd;
    const newProd = this.#rspProdPvt;
    // Ordering point (xen_wmb): the release store makes the entries visible before rsp_prod.
    this.shared.rspProd = newProd;
    // Ordering point (xen_mb): seq-cst store then load, so rsp_event is read after rsp_prod is out.
    return SharedRing.needsNotify(oldProd, newProd, this.shared.rspEvent);
  }

  /**
   * `RING_FINAL_CHECK_FOR_REQUESTS`: true when requests are waiting; otherwise arms
   * req_event = req_cons + 1 and checks once more. Call before sleeping.
   */
  finalCheckForRequests(): boolean {
    if (this.hasUnconsumedRequests()) return true;
    this.shared.reqEvent = this.#reqCons + 1;
    // Ordering point (xen_mb): req_event is out before req_prod is re-read (seq-cst atomics).
    return this.hasUnconsumedRequests();
  }
}
