/**
 * xen_blkfront: the block frontend, a kernel module for a guest serving device type `vbd`
 * (Linux's drivers/block/xen-blkfront.c). Each Connected disk is a BlockDevice registered in
 * `blockDevices(kernel)` under its vdev (`xvda`...), and removed when it disconnects.
 *
 * The handshake, as Linux's blkfront does it (docs/blk.md has the keys):
 *
 *   backend InitWait   read `max-ring-page-order` (absent: 0); ring of 1 << min(ours, theirs)
 *                      pages, each granted to the backend; an unbound event channel; in one
 *                      transaction `ring-ref` (one page) or `ring-page-order` + `ring-ref0..N-1`,
 *                      `event-channel`, `protocol` x86_64-abi, `feature-persistent`;
 *                      → Initialised
 *   backend Connected  read `sectors`, `info`, `sector-size`, `physical-sector-size`,
 *                      `feature-flush-cache` (or `feature-barrier`), `feature-discard` and the
 *                      `discard-*` keys, `feature-persistent`, `feature-max-indirect-segments`;
 *                      register the disk; → Connected
 *   backend Closing    fail all I/O, unregister the disk, → Closed (xenbus_frontend_closed)
 *   backend Closed     as Closing, then end the ring's grants and free its pages
 *   backend back to Initialising or InitWait while we are Initialised/Connected
 *                      the backend went away (module unloaded) or is a new one: fail all I/O,
 *                      release the ring, → Initialising, and connect again at its InitWait
 *
 * Data: the guest's buffers are not pages of its own memory, so every request goes through pages
 * from a per-disk pool (copies cost ~0.25 µs a page, against 10–90 µs a wake-up). With persistent
 * grants (both ends offer `feature-persistent`) each pool page is granted read-write once and kept
 * granted, so the backend maps it once; without them a page is granted for one request (read-only
 * for a write) and the grant ended when the response arrives. Requests of more than 11 segments
 * use BLKIF_OP_INDIRECT when the backend offers it, up to min(`feature-max-indirect-segments`,
 * ours: Linux's default 32); larger I/O is split into several requests, all in flight together.
 * Each request is pushed as it is put on the ring (the notification only when the backend asked
 * for one), and responses are taken until RING_FINAL_CHECK_FOR_RESPONSES says none are left.
 *
 * A backend's responses are checked before use (Linux's XSA-376 checks): an id that is not in
 * flight, a wrong operation or a rsp_prod more than a ring ahead marks the disk broken.
 *
 * Module arguments: `max_ring_page_order=N` (default 0, as Linux's blkfront), `feature_persistent`
 * (default 1), `max_indirect_segments=N` (default 32), `max_pages=N` (pool pages per disk,
 * default 1024; the domain's memory may end the pool earlier).
 */
import type { Kernel } from "../../kernel/kernel.ts";
import { FrontRing } from "../../ring/ring.ts";
import { type XenbusDevice, type XenbusDriver, XenbusState, xenbus } from "../../xenbus/xenbus.ts";
import {
  BLKIF_ENTRY_SIZE,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP,
  BLKIF_REQUEST,
  BLKIF_REQUEST_DISCARD,
  BLKIF_REQUEST_INDIRECT,
  BLKIF_RESPONSE,
  BLKIF_RSP,
  BLKIF_SEGMENT,
  SECTORS_PER_PAGE,
  SEGS_PER_INDIRECT_FRAME,
  setU64,
  statusName,
  VDISK,
  XEN_IO_PROTO_ABI_NATIVE,
} from "./blkif.ts";

import {
  type BlockDevice,
  type BlockFeatures,
  BlockIOError,
  type BlockStats,
  blockDevices,
  devidToVdev,
  type IoBuffer,
} from "./blockdev.ts";

export const name = "xen_blkfront";

/** Linux blkfront's default max_indirect_segments. */
export const DEFAULT_MAX_INDIRECT_SEGMENTS = 32;

interface Params {
  maxRingPageOrder: number;
  persistent: boolean;
  maxIndirectSegments: number;
  maxPages: number;
}

/** A page of the disk's pool: ours, granted to the backend while `ref` >= 0. */
interface PoolPage {
  readonly gfn: number;
  readonly page: Uint8Array;
  ref: number;
  /** The page as a DataView, made the first time it is an indirect page. */
  view?: DataView;
}

function viewOfPage(p: PoolPage): DataView {
  p.view ??= new DataView(p.page.buffer, p.page.byteOffset, p.page.byteLength);
  return p.view;
}

/** One chunk of a caller's I/O, waiting for a ring slot or in flight. */
interface Chunk {
  readonly op: number;
  readonly sector: number;
  readonly nsec: number;
  /** Write: the data to send; read: where the data goes. */
  readonly buf: Uint8Array | null;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  /** Pool pages holding data, then indirect pages (set when it goes on the ring). */
  pages: PoolPage[];
  indirect: PoolPage[];
  /** The data pages are a caller's IoBuffer's (given in `pages`): no copy, not returned to the pool. */
  readonly zc: boolean;
}

interface DiskInfo {
  readonly vdev: string;
  readonly devid: number;
  readonly sectors: number;
  readonly sectorSize: number;
  readonly physicalSectorSize: number;
  readonly readonly: boolean;
  features: BlockFeatures;
  discardGranularity: number;
  discardAlignment: number;
  discardSecure: boolean;
}

/** One connection of a frontend device: its ring, event channel and requests. */
class Front {
  readonly dev: XenbusDevice;
  readonly k: Kernel;
  readonly params: Params;
  readonly ringPages: { gfn: number; ref: number }[];
  readonly ring: FrontRing;
  port: number;
  readonly #shadow: (Chunk | undefined)[];
  readonly #freeIds: number[];
  readonly #queue: Chunk[] = [];
  readonly #free: PoolPage[] = [];
  readonly #all = new Set<PoolPage>();
  readonly #req = new Uint8Array(BLKIF_ENTRY_SIZE);
  readonly #rv = new DataView(this.#req.buffer);
  readonly #rsp = new Uint8Array(BLKIF_RESPONSE.size);
  readonly #sv = new DataView(this.#rsp.buffer);
  /** The pool cannot grow (cap or the domain's memory). */
  #poolFull = false;
  info: DiskInfo | null = null;
  /** Set when the backend misbehaved or left: no more I/O on this connection. */
  dead: string | null = null;
  readonly stats = { requests: 0, kicks: 0, events: 0 };

  constructor(
    dev: XenbusDevice,
    params: Params,
    ringPages: { gfn: number; ref: number }[],
    ring: FrontRing,
    port: number,
  ) {
    this.dev = dev;
    this.k = dev.kernel;
    this.params = params;
    this.ringPages = ringPages;
    this.ring = ring;
    this.port = port;
    this.#shadow = new Array(ring.size).fill(undefined);
    this.#freeIds = Array.from({ length: ring.size }, (_, i) => ring.size - 1 - i);
  }

  get inflight(): number {
    return this.ring.size - this.#freeIds.length;
  }

  // ---------------------------------------------------------------- I/O entry points

  submit(op: number, sector: number, nsec: number, buf: Uint8Array | null): Promise<void> {
    const perReq = this.#sectorsPerRequest();
    if (perReq < 0) return this.#notConnected();
    const parts: Promise<void>[] = [];
    for (let done = 0; done < nsec || (nsec === 0 && done === 0); ) {
      const n = Math.min(perReq, nsec - done);
      const slice = buf === null ? null : buf.subarray(done * 512, (done + n) * 512);
      parts.push(this.#enqueue(op, sector + done, n, slice, [], false));
      if (nsec === 0) break;
      done += n;
    }
    return parts.length === 1 ? parts[0]! : Promise.all(parts).then(() => {});
  }

  discard(sector: number, nsec: number): Promise<void> {
    if (this.info === null || this.dead !== null) return this.#notConnected();
    return this.#enqueue(BLKIF_OP.discard, sector, nsec, null, [], false);
  }

  /**
   * Zero-copy I/O on `pages`, an IoBuffer's pages of this connection: split as submit() splits,
   * each chunk naming its own pages.
   */
  submitPages(op: 0 | 1, sector: number, nsec: number, pages: readonly PoolPage[]): Promise<void> {
    const perReq = this.#sectorsPerRequest();
    if (perReq < 0) return this.#notConnected();
    const parts: Promise<void>[] = [];
    for (let done = 0; done < nsec; done += perReq) {
      const n = Math.min(perReq, nsec - done);
      const first = done / SECTORS_PER_PAGE;
      const mine = pages.slice(first, first + Math.ceil(n / SECTORS_PER_PAGE));
      parts.push(this.#enqueue(op, sector + done, n, null, mine, true));
    }
    return parts.length === 1 ? parts[0]! : Promise.all(parts).then(() => {});
  }

  /** Sectors one ring request carries (indirect segments, else 11 pages); -1 when not connected. */
  #sectorsPerRequest(): number {
    const info = this.info;
    if (info === null || this.dead !== null) return -1;
    const segs = info.features.maxIndirectSegments;
    return (segs > 0 ? segs : BLKIF_MAX_SEGMENTS_PER_REQUEST) * SECTORS_PER_PAGE;
  }

  #notConnected(): Promise<never> {
    return Promise.reject(new BlockIOError(`${this.dev.nodename}: disk not connected`, -1));
  }

  /**
   * Queues a chunk and puts what the ring takes of the queue on it now, so that the first chunk of
   * a large request is with the backend while the next are built; the promise settles with its
   * response.
   */
  #enqueue(
    op: number,
    sector: number,
    nsec: number,
    buf: Uint8Array | null,
    pages: PoolPage[],
    zc: boolean,
  ): Promise<void> {
    const p = new Promise<void>((resolve, reject) => {
      this.#queue.push({ op, sector, nsec, buf, resolve, reject, pages, indirect: [], zc });
    });
    this.#kick();
    return p;
  }

  /** Takes `n` pages out of the pool for good, for an IoBuffer (null: the pool has no room). */
  takeForBuffer(n: number): PoolPage[] | null {
    if (this.dead !== null) return null;
    return this.#take(n);
  }

  /** An IoBuffer's pages come back: into the pool, unless this connection is over. */
  returnBuffer(pages: readonly PoolPage[]): void {
    if (this.dead !== null) return; // release() frees them with the rest
    this.#put([...pages]);
  }

  // ---------------------------------------------------------------- pool

  #take(n: number): PoolPage[] | null {
    while (this.#free.length < n && !this.#poolFull) {
      if (this.#all.size >= this.params.maxPages) {
        this.#poolFull = true;
        break;
      }
      try {
        const { gfn, page } = this.k.allocPage();
        const p: PoolPage = { gfn, page: new Uint8Array(page), ref: -1 };
        this.#all.add(p);
        this.#free.push(p);
      } catch {
        this.#poolFull = true;
      }
    }
    if (this.#free.length < n) return null;
    return this.#free.splice(this.#free.length - n, n);
  }

  /** Grants `p` for a request: once for good with persistent grants, else for this request. */
  #grant(p: PoolPage, readonly: boolean): number {
    if (p.ref >= 0) return p.ref;
    p.ref = this.k.grantAccess(this.dev.otherendId, p.gfn, this.info!.features.persistent ? false : readonly);
    return p.ref;
  }

  /** Returns pages to the pool; without persistent grants their grants end first. */
  #put(pages: PoolPage[]): void {
    for (const p of pages) {
      if (!this.info!.features.persistent && p.ref >= 0) {
        if (!this.k.endAccess(p.ref)) {
          // The backend still maps it: never reuse the page (gnttab_end_foreign_access's leak).
          this.k.printk(`xen-blkfront: ${this.dev.nodename}: grant ${p.ref} still in use, page kept aside`);
          this.#all.delete(p);
          continue;
        }
        p.ref = -1;
      }
      this.#free.push(p);
    }
  }

  /** An IoBuffer's pages after a request: without persistent grants their grants end; they stay the caller's. */
  #unshare(pages: PoolPage[]): void {
    if (this.info!.features.persistent) return;
    for (const p of pages) {
      if (p.ref >= 0 && this.k.endAccess(p.ref)) p.ref = -1;
    }
  }

  // ---------------------------------------------------------------- requests

  /** Puts queued chunks on the ring while there are slots and pages (blkif_queue_request). */
  #kick(): void {
    const info = this.info;
    if (info === null || this.dead !== null) return;
    while (this.#queue.length > 0 && !this.ring.full() && this.#freeIds.length > 0) {
      const c = this.#queue[0]!;
      const nseg = Math.ceil(c.nsec / SECTORS_PER_PAGE);
      const indirect = nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST;
      const nind = indirect ? Math.ceil(nseg / SEGS_PER_INDIRECT_FRAME) : 0;
      const pages = c.op === BLKIF_OP.discard ? [] : this.#take(c.zc ? nind : nseg + nind);
      if (pages === null) {
        if (this.inflight === 0) {
          this.#queue.shift();
          c.reject(new BlockIOError(`${this.dev.nodename}: no memory for ${nseg + nind} pages`, -1));
          continue;
        }
        break; // wait for a response to return pages
      }
      this.#queue.shift();
      if (c.zc) c.indirect = pages;
      else {
        c.pages = pages.slice(0, nseg);
        c.indirect = pages.slice(nseg);
      }
      const id = this.#freeIds.pop()!;
      this.#shadow[id] = c;
      this.#encode(c, id, nseg, indirect);
      const idx = this.ring.reqProdPvt;
      this.ring.shared.write(idx, this.#req);
      this.ring.reqProdPvt = idx + 1;
      this.stats.requests++;
      // Each request is pushed as soon as it is on the ring, as Linux's blkif_queue_rq does
      // (flush_requests after every blkif_queue_request): the backend starts on it while the next
      // is built, and req_event keeps the notifications to one while it is busy.
      this.#push();
    }
  }

  /**
   * Writes request `id` for chunk `c` into #req, as blkif_queue_rw_req / blkif_queue_discard_req
   * fill it: the fields in place (every byte of the entry set, padding 0), the segments into the
   * request or, for an indirect one, into its indirect pages.
   */
  #encode(c: Chunk, id: number, nseg: number, indirect: boolean): void {
    const v = this.#rv;
    const handle = this.info!.devid & 0xffff;
    this.#req.fill(0);
    v.setUint32(BLKIF_REQUEST.id, id, true);
    setU64(v, BLKIF_REQUEST.sectorNumber, c.sector);
    if (c.op === BLKIF_OP.discard) {
      v.setUint8(BLKIF_REQUEST_DISCARD.operation, BLKIF_OP.discard);
      v.setUint16(BLKIF_REQUEST_DISCARD.handle, handle, true);
      setU64(v, BLKIF_REQUEST_DISCARD.nrSectors, c.nsec);
      return;
    }
    const write = c.op !== BLKIF_OP.read;
    // Where the segments go: the request itself, or slot i % 512 of indirect page i / 512.
    let page: DataView = v;
    for (let i = 0; i < nseg; i++) {
      const p = c.pages[i]!;
      const n = Math.min(SECTORS_PER_PAGE, c.nsec - i * SECTORS_PER_PAGE);
      if (write && c.buf !== null) p.page.set(c.buf.subarray(i * 4096, i * 4096 + n * 512));
      const gref = this.#grant(p, write);
      let o = BLKIF_REQUEST.seg + i * BLKIF_SEGMENT.size;
      if (indirect) {
        const slot = i % SEGS_PER_INDIRECT_FRAME;
        if (slot === 0) page = viewOfPage(c.indirect[i / SEGS_PER_INDIRECT_FRAME]!);
        o = slot * BLKIF_SEGMENT.size;
      }
      page.setUint32(o + BLKIF_SEGMENT.gref, gref, true);
      page.setUint8(o + BLKIF_SEGMENT.firstSect, 0);
      page.setUint8(o + BLKIF_SEGMENT.lastSect, n - 1);
      page.setUint16(o + 6, 0, true);
    }
    if (!indirect) {
      v.setUint8(BLKIF_REQUEST.operation, c.op);
      v.setUint8(BLKIF_REQUEST.nrSegments, nseg);
      v.setUint16(BLKIF_REQUEST.handle, handle, true);
      return;
    }
    v.setUint8(BLKIF_REQUEST_INDIRECT.operation, BLKIF_OP.indirect);
    v.setUint8(BLKIF_REQUEST_INDIRECT.indirectOp, c.op);
    v.setUint16(BLKIF_REQUEST_INDIRECT.nrSegments, nseg, true);
    v.setUint16(BLKIF_REQUEST_INDIRECT.handle, handle, true);
    for (let i = 0; i < c.indirect.length; i++) {
      v.setUint32(BLKIF_REQUEST_INDIRECT.indirectGrefs + 4 * i, this.#grant(c.indirect[i]!, true), true);
    }
  }

  #push(): void {
    if (this.dead !== null) return;
    if (this.ring.pushRequestsAndCheckNotify()) {
      this.stats.kicks++;
      this.k.notify(this.port);
    }
  }

  /** blkif_interrupt: take every response, then kick the queue. */
  onEvent(): void {
    if (this.dead !== null) return;
    this.stats.events++;
    const ring = this.ring;
    do {
      const rp = ring.shared.rspProd; // read once; acquire
      if (ring.responseProdOverflow(rp)) {
        this.fatal(`illegal number of responses ${(rp - ring.rspCons) >>> 0}`);
        return;
      }
      const v = this.#sv;
      for (let i = ring.rspCons; i !== rp; i = (i + 1) >>> 0) {
        ring.copyResponse(i, this.#rsp); // the only read of the slot
        ring.rspCons = (i + 1) >>> 0;
        const idLo = v.getUint32(BLKIF_RESPONSE.id, true);
        const idHi = v.getUint32(BLKIF_RESPONSE.id + 4, true);
        const operation = v.getUint8(BLKIF_RESPONSE.operation);
        const c = idHi === 0 && idLo < ring.size ? this.#shadow[idLo] : undefined;
        if (c === undefined) {
          this.fatal(`response has incorrect id (${(BigInt(idHi) << 32n) | BigInt(idLo)})`);
          return;
        }
        // Linux's blkback answers an indirect request with its indirect_op; accept INDIRECT too.
        if (operation !== c.op && !(operation === BLKIF_OP.indirect && c.indirect.length > 0)) {
          this.fatal(`response ${idLo} has operation ${operation}, expected ${c.op}`);
          return;
        }
        this.#shadow[idLo] = undefined;
        this.#freeIds.push(idLo);
        this.#complete(c, v.getInt16(BLKIF_RESPONSE.status, true));
      }
    } while (ring.finalCheckForResponses());
    this.#kick();
  }

  #complete(c: Chunk, status: number): void {
    if (status === BLKIF_RSP.okay && c.op === BLKIF_OP.read && c.buf !== null) {
      for (let i = 0; i < c.pages.length; i++) {
        const n = Math.min(SECTORS_PER_PAGE, c.nsec - i * SECTORS_PER_PAGE);
        c.buf.set(c.pages[i]!.page.subarray(0, n * 512), i * 4096);
      }
    }
    if (c.zc) this.#unshare(c.pages);
    else this.#put(c.pages);
    this.#put(c.indirect);
    if (status === BLKIF_RSP.okay) {
      c.resolve();
      return;
    }
    const info = this.info!;
    if (status === BLKIF_RSP.eopnotsupp) {
      // As Linux: the backend said no, stop offering the feature.
      if (c.op === BLKIF_OP.flushDiskcache) info.features = { ...info.features, flush: false };
      if (c.op === BLKIF_OP.discard) info.features = { ...info.features, discard: false };
    }
    c.reject(
      new BlockIOError(
        `${info.vdev}: ${opName(c.op)} of ${c.nsec} sectors at ${c.sector} failed: ${statusName(status)}`,
        status,
      ),
    );
  }

  /** The backend misbehaved: fail everything, stop using the ring (BLKIF_STATE_ERROR). */
  fatal(why: string): void {
    this.k.printk(`xen-blkfront: ${this.dev.nodename}: ${why}`);
    this.failAll(why);
  }

  /** Fails every request queued or in flight; the connection is unusable afterwards. */
  failAll(why: string): void {
    if (this.dead === null) this.dead = why;
    const err = () => new BlockIOError(`${this.info?.vdev ?? this.dev.nodename}: ${why}`, -1);
    for (let id = 0; id < this.#shadow.length; id++) {
      const c = this.#shadow[id];
      if (c === undefined) continue;
      this.#shadow[id] = undefined;
      // Its pages stay out of the pool: the backend may still use them until it disconnects.
      c.reject(err());
    }
    for (const c of this.#queue.splice(0)) c.reject(err());
  }

  /**
   * Ends every grant (ring and pool) and frees the pages, once the backend no longer maps them.
   * Returns false if some grant is still mapped (call again later).
   */
  release(): boolean {
    let all = true;
    for (const p of this.#all) {
      if (p.ref >= 0) {
        if (!this.k.endAccess(p.ref)) {
          all = false;
          continue;
        }
        p.ref = -1;
      }
      this.k.freePage(p.gfn);
      this.#all.delete(p);
    }
    this.#free.length = 0;
    for (const r of this.ringPages) {
      if (r.ref >= 0) {
        if (!this.k.endAccess(r.ref)) {
          all = false;
          continue;
        }
        r.ref = -1;
      }
      if (r.gfn >= 0) {
        this.k.freePage(r.gfn);
        r.gfn = -1;
      }
    }
    return all;
  }
}

function opName(op: number): string {
  return (["read", "write", "barrier", "flush", "op 4", "discard", "indirect"] as const)[op] ?? `op ${op}`;
}

/** An IoBuffer: pool pages of one connection, the caller's until free(). */
class PageBuffer implements IoBuffer {
  readonly front: Front;
  readonly poolPages: readonly PoolPage[];
  readonly byteLength: number;
  readonly pages: readonly Uint8Array[];
  freed = false;
  constructor(front: Front, pages: PoolPage[], bytes: number) {
    this.front = front;
    this.poolPages = pages;
    this.byteLength = bytes;
    this.pages = pages.map((p) => p.page);
  }
  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.front.returnBuffer(this.poolPages);
  }
}

/** The BlockDevice a guest module sees for one connection. */
class Disk implements BlockDevice {
  readonly #f: Front;
  readonly #i: DiskInfo;
  constructor(f: Front, i: DiskInfo) {
    this.#f = f;
    this.#i = i;
  }
  get vdev(): string {
    return this.#i.vdev;
  }
  get devid(): number {
    return this.#i.devid;
  }
  get sectors(): number {
    return this.#i.sectors;
  }
  get sectorSize(): number {
    return this.#i.sectorSize;
  }
  get physicalSectorSize(): number {
    return this.#i.physicalSectorSize;
  }
  get readonly(): boolean {
    return this.#i.readonly;
  }
  get features(): BlockFeatures {
    return this.#i.features;
  }
  get stats(): BlockStats {
    return { ...this.#f.stats };
  }

  #check(what: string, sector: number, count: number): void {
    if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || sector < 0 || count < 1) {
      throw new RangeError(`Cannot ${what}: bad range ${sector}+${count}`);
    }
    if (sector + count > this.#i.sectors) {
      throw new RangeError(`Cannot ${what} sectors ${sector}+${count}: the disk has ${this.#i.sectors}`);
    }
    const lb = this.#i.sectorSize / 512;
    if (sector % lb !== 0 || count % lb !== 0) {
      throw new RangeError(
        `Cannot ${what} sectors ${sector}+${count}: not aligned to ${this.#i.sectorSize} bytes`,
      );
    }
  }

  async read(sector: number, count: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#check("read", sector, count);
    if (into !== undefined && into.byteLength < count * 512) {
      throw new RangeError(`Cannot read ${count} sectors into ${into.byteLength} bytes`);
    }
    const out = into === undefined ? new Uint8Array(count * 512) : into.subarray(0, count * 512);
    await this.#f.submit(BLKIF_OP.read, sector, count, out);
    return out;
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    if (data.byteLength % 512 !== 0) {
      throw new RangeError(`Cannot write ${data.byteLength} bytes: not a whole number of sectors`);
    }
    this.#check("write", sector, data.byteLength / 512);
    if (this.#i.readonly) throw new BlockIOError(`${this.#i.vdev}: read-only disk`, BLKIF_RSP.error);
    await this.#f.submit(BLKIF_OP.write, sector, data.byteLength / 512, data);
  }

  async flush(): Promise<void> {
    // Without feature-flush-cache the backend writes through: nothing to flush (Linux sends none).
    if (!this.#i.features.flush) return;
    await this.#f.submit(BLKIF_OP.flushDiskcache, 0, 0, null);
  }

  allocBuffer(bytes: number): IoBuffer {
    if (!(Number.isSafeInteger(bytes) && bytes > 0))
      throw new RangeError(`Cannot allocate a ${bytes}-byte buffer`);
    const n = Math.ceil(bytes / 4096);
    const pages = this.#f.takeForBuffer(n);
    if (pages === null) {
      throw new BlockIOError(
        `${this.#i.vdev}: no memory for a buffer of ${n} pages (max_pages or the domain's)`,
        -1,
      );
    }
    return new PageBuffer(this.#f, pages, bytes);
  }

  async readBuffer(sector: number, count: number, buf: IoBuffer): Promise<void> {
    this.#check("read", sector, count);
    await this.#f.submitPages(BLKIF_OP.read, sector, count, this.#pagesOf("read", buf, count));
  }

  async writeBuffer(sector: number, count: number, buf: IoBuffer): Promise<void> {
    this.#check("write", sector, count);
    if (this.#i.readonly) throw new BlockIOError(`${this.#i.vdev}: read-only disk`, BLKIF_RSP.error);
    await this.#f.submitPages(BLKIF_OP.write, sector, count, this.#pagesOf("write", buf, count));
  }

  /** The pool pages behind `buf`, checked: this connection's, live, big enough. */
  #pagesOf(what: string, buf: IoBuffer, count: number): readonly PoolPage[] {
    if (!(buf instanceof PageBuffer) || buf.front !== this.#f || buf.freed) {
      throw new RangeError(
        `Cannot ${what} with that buffer: not a live buffer of ${this.#i.vdev} on this connection`,
      );
    }
    if (buf.byteLength < count * 512) {
      throw new RangeError(`Cannot ${what} ${count} sectors with a ${buf.byteLength}-byte buffer`);
    }
    return buf.poolPages;
  }

  async discard(sector: number, count: number): Promise<void> {
    this.#check("discard", sector, count);
    if (!this.#i.features.discard) {
      throw new BlockIOError(`${this.#i.vdev}: discard not supported`, BLKIF_RSP.eopnotsupp);
    }
    await this.#f.discard(sector, count);
  }
}

class BlkfrontDriver implements XenbusDriver {
  readonly name = "xen_blkfront";
  readonly ids = ["vbd"];
  readonly params: Params;

  constructor(params: Params) {
    this.params = params;
  }

  probe(dev: XenbusDevice): void {
    dev.kernel.printk(`xen-blkfront: ${dev.nodename}: probed`);
  }

  async otherendChanged(dev: XenbusDevice, state: number): Promise<void> {
    const f = dev.data as Front | undefined;
    switch (state) {
      case XenbusState.Initialising:
      case XenbusState.InitWait:
        // The backend left (unloaded: Initialising) or is a new one (InitWait after it was
        // Connected, the Initialising between missed): start over. InitWait while we are only
        // Initialised is no news: the watch's initial event and the event of the backend's own
        // InitWait write both read InitWait when the backend wrote it before our first read.
        // Linux ignores InitWait unless it is Initialising; resetting here ended the grant of the
        // ring-ref the backend was about to map (the attach race: "-1 mapping ring-ref").
        if (
          (state === XenbusState.Initialising &&
            (dev.state === XenbusState.Initialised || dev.state === XenbusState.Connected)) ||
          (state === XenbusState.InitWait && dev.state === XenbusState.Connected)
        ) {
          dev.kernel.printk(`xen-blkfront: ${dev.nodename}: backend went away, starting over`);
          this.#teardown(dev, "backend went away");
          this.#release(dev);
          await dev.switchState(XenbusState.Initialising);
        }
        if (state === XenbusState.InitWait && dev.state === XenbusState.Initialising) {
          await this.#talkToBackend(dev);
        }
        return;
      case XenbusState.Connected:
        if (dev.state === XenbusState.Initialised && f !== undefined) await this.#connect(dev, f);
        return;
      case XenbusState.Closing:
        this.#teardown(dev, "backend is closing");
        if (dev.state !== XenbusState.Closed) await dev.switchState(XenbusState.Closed);
        return;
      case XenbusState.Closed:
        this.#teardown(dev, "backend closed");
        if (dev.state !== XenbusState.Closed) await dev.switchState(XenbusState.Closed);
        this.#release(dev);
        return;
      default:
        return;
    }
  }

  remove(dev: XenbusDevice): void {
    this.#teardown(dev, "device removed");
    this.#release(dev);
    dev.kernel.printk(`xen-blkfront: ${dev.nodename}: removed`);
  }

  /** talk_to_blkback: ring, event channel, keys, → Initialised. */
  async #talkToBackend(dev: XenbusDevice): Promise<void> {
    const k = dev.kernel;
    const beMax = Number((await k.xs.tryRead(`${dev.otherend}/max-ring-page-order`)) ?? "0");
    const order = Math.min(this.params.maxRingPageOrder, Number.isInteger(beMax) && beMax >= 0 ? beMax : 0);
    const ringPages: { gfn: number; ref: number }[] = [];
    const views: Uint8Array[] = [];
    let port = -1;
    try {
      for (let i = 0; i < 1 << order; i++) {
        const { gfn, page } = k.allocPage();
        ringPages.push({ gfn, ref: -1 });
        views.push(new Uint8Array(page));
      }
      const ring = FrontRing.init(views, BLKIF_ENTRY_SIZE);
      for (const r of ringPages) r.ref = await dev.grantRing(r.gfn);
      port = await dev.allocEvtchn();
      const f = new Front(dev, this.params, ringPages, ring, port);
      dev.data = f;
      k.bindEvent(port, () => f.onEvent());
      await k.xs.transaction(async (t) => {
        const n = dev.nodename;
        if (order === 0) {
          await t.write(`${n}/ring-ref`, String(ringPages[0]!.ref));
        } else {
          await t.write(`${n}/ring-page-order`, String(order));
          for (let i = 0; i < ringPages.length; i++)
            await t.write(`${n}/ring-ref${i}`, String(ringPages[i]!.ref));
        }
        await t.write(`${n}/event-channel`, String(port));
        await t.write(`${n}/protocol`, XEN_IO_PROTO_ABI_NATIVE);
        await t.write(`${n}/feature-persistent`, this.params.persistent ? "1" : "0");
      });
      await dev.switchState(XenbusState.Initialised);
    } catch (e) {
      k.printk(`xen-blkfront: ${dev.nodename}: talking to the backend failed: ${(e as Error).message}`);
      if (dev.data === undefined) {
        if (port >= 0) k.closePort(port);
        for (const r of ringPages) {
          if (r.ref >= 0) k.endAccess(r.ref);
          k.freePage(r.gfn);
        }
      }
      throw e;
    }
  }

  /** blkfront_connect: the disk's details, register it, → Connected. */
  async #connect(dev: XenbusDevice, f: Front): Promise<void> {
    const k = dev.kernel;
    const be = dev.otherend;
    const num = async (key: string, dflt?: number): Promise<number> => {
      const v = await k.xs.tryRead(`${be}/${key}`);
      if (v === undefined || !/^\d+$/.test(v.trim())) {
        if (dflt === undefined) throw new Error(`reading ${be}/${key}`);
        return dflt;
      }
      return Number(v.trim());
    };
    let info: DiskInfo;
    try {
      const sectors = await num("sectors");
      const vinfo = await num("info");
      const sectorSize = await num("sector-size");
      if (sectorSize < 512 || (sectorSize & (sectorSize - 1)) !== 0)
        throw new Error(`bad sector-size ${sectorSize}`);
      const physicalSectorSize = await num("physical-sector-size", sectorSize);
      const flush = (await num("feature-flush-cache", 0)) === 1 || (await num("feature-barrier", 0)) === 1;
      const discard = (await num("feature-discard", 0)) === 1;
      const persistent = this.params.persistent && (await num("feature-persistent", 0)) === 1;
      const beIndirect = await num("feature-max-indirect-segments", 0);
      const maxIndirect = Math.min(beIndirect, this.params.maxIndirectSegments, SEGS_PER_INDIRECT_FRAME * 8);
      const devid = Number(dev.nodename.split("/").pop());
      const vd = await k.xs.tryRead(`${dev.nodename}/virtual-device`);
      const vdevId = vd !== undefined && /^\d+$/.test(vd) ? Number(vd) : devid;
      info = {
        vdev: devidToVdev(vdevId),
        devid: vdevId,
        sectors,
        sectorSize,
        physicalSectorSize,
        readonly: (vinfo & VDISK.readonly) !== 0,
        features: {
          flush,
          discard,
          persistent,
          maxIndirectSegments: maxIndirect > BLKIF_MAX_SEGMENTS_PER_REQUEST ? maxIndirect : 0,
          ringPages: f.ringPages.length,
        },
        discardGranularity: discard ? await num("discard-granularity", 512) : 0,
        discardAlignment: discard ? await num("discard-alignment", 0) : 0,
        discardSecure: discard ? (await num("discard-secure", 0)) === 1 : false,
      };
    } catch (e) {
      await dev.devFatal(e, (e as Error).message);
      return;
    }
    f.info = info;
    // The disk first, then Connected (Linux writes Connected first): attachDisk resolves on
    // Connected and promises a usable disk. Someone who finds the disk may see Initialised still.
    blockDevices(k).set(info.vdev, new Disk(f, info));
    await dev.switchState(XenbusState.Connected);
    const feats = [
      info.features.flush ? "flush" : "",
      info.features.discard ? "discard" : "",
      info.features.persistent ? "persistent grants" : "",
      info.features.maxIndirectSegments > 0 ? `indirect ${info.features.maxIndirectSegments}` : "",
    ].filter((s) => s !== "");
    k.printk(
      `xen-blkfront: ${info.vdev}: ${info.sectors} sectors of ${info.sectorSize} bytes${info.readonly ? ", read-only" : ""}; ring of ${info.features.ringPages} page(s)${feats.length ? `; ${feats.join(", ")}` : ""}`,
    );
  }

  /** Fails all I/O and unregisters the disk; the ring stays until release(). */
  #teardown(dev: XenbusDevice, why: string): void {
    const f = dev.data as Front | undefined;
    if (f === undefined) return;
    f.failAll(why);
    if (f.info !== null) {
      const reg = blockDevices(dev.kernel);
      const d = reg.get(f.info.vdev);
      if (d !== undefined) reg.delete(f.info.vdev);
    }
  }

  /** Closes the port, ends the grants and frees the pages (once the backend has unmapped). */
  #release(dev: XenbusDevice): void {
    const f = dev.data as Front | undefined;
    if (f === undefined) return;
    const k = dev.kernel;
    if (f.port >= 0) {
      try {
        k.closePort(f.port);
      } catch {
        // already closed
      }
      f.port = -1;
    }
    if (f.release()) {
      dev.data = undefined;
      return;
    }
    k.printk(`xen-blkfront: ${dev.nodename}: backend still maps pages; released later`);
    // Linux's gnttab_end_foreign_access defers the pages to a timer that retries until the
    // backend unmaps them (a forced detach removes our device before the backend has unmapped).
    const retry = (): void => {
      if (f.release()) {
        if (dev.data === f) dev.data = undefined;
        k.printk(`xen-blkfront: ${dev.nodename}: deferred pages released`);
        return;
      }
      setTimeout(retry, RELEASE_RETRY_MS).unref();
    };
    setTimeout(retry, RELEASE_RETRY_MS).unref();
  }
}

/** How often pages the backend still mapped at release are tried again (Linux: about 1 s). */
const RELEASE_RETRY_MS = 100;

const drivers = new WeakMap<Kernel, BlkfrontDriver>();

function arg(args: readonly string[], key: string, dflt: number): number {
  for (const a of args) {
    if (a.startsWith(`${key}=`)) {
      const v = Number(a.slice(key.length + 1));
      if (Number.isInteger(v) && v >= 0) return v;
      throw new RangeError(`Cannot load xen_blkfront: bad ${a}`);
    }
  }
  return dflt;
}

export async function init(k: Kernel, args: readonly string[]): Promise<void> {
  const d = new BlkfrontDriver({
    maxRingPageOrder: Math.min(arg(args, "max_ring_page_order", 0), 4),
    persistent: arg(args, "feature_persistent", 1) !== 0,
    maxIndirectSegments: arg(args, "max_indirect_segments", DEFAULT_MAX_INDIRECT_SEGMENTS),
    maxPages: arg(args, "max_pages", 1024),
  });
  drivers.set(k, d);
  k.printk("xen-blkfront: initialised");
  await xenbus(k).registerFrontend(d);
}

export async function exit(k: Kernel): Promise<void> {
  const d = drivers.get(k);
  if (d === undefined) return;
  await xenbus(k).unregister(d);
  drivers.delete(k);
}

function disk(k: Kernel, vdev: unknown): BlockDevice {
  const d = blockDevices(k).get(String(vdev));
  if (d === undefined) throw new Error(`No disk ${String(vdev)} connected`);
  return d;
}

/**
 * Host calls (Hypervisor.call, as a dom0 tool's ioctl on the guest's disk): `list`, `info`,
 * `read`, `write`, `flush`, `discard` (see the brief's contract in docs/blk.md).
 */
export async function call(k: Kernel, cmd: string, a: unknown): Promise<unknown> {
  const o = (a ?? {}) as {
    vdev?: unknown;
    sector?: unknown;
    count?: unknown;
    data?: unknown;
    zeroCopy?: unknown;
  };
  switch (cmd) {
    case "list":
      return [...blockDevices(k).keys()];
    case "info": {
      const d = disk(k, o.vdev);
      return {
        vdev: d.vdev,
        devid: d.devid,
        sectors: d.sectors,
        sectorSize: d.sectorSize,
        physicalSectorSize: d.physicalSectorSize,
        readonly: d.readonly,
        features: { ...d.features },
      };
    }
    case "read":
      if (o.zeroCopy === true) return readZeroCopy(disk(k, o.vdev), Number(o.sector), Number(o.count));
      return disk(k, o.vdev).read(Number(o.sector), Number(o.count));
    case "write": {
      if (!(o.data instanceof Uint8Array)) throw new TypeError("write: data must be a Uint8Array");
      if (o.zeroCopy === true) await writeZeroCopy(disk(k, o.vdev), Number(o.sector), o.data);
      else await disk(k, o.vdev).write(Number(o.sector), o.data);
      return undefined;
    }
    case "flush":
      await disk(k, o.vdev).flush();
      return undefined;
    case "discard":
      await disk(k, o.vdev).discard(Number(o.sector), Number(o.count));
      return undefined;
    default:
      throw new Error(`xen_blkfront: unknown call ${cmd}`);
  }
}

/** The `read` call with `zeroCopy`: through an IoBuffer, copied out for the reply. */
async function readZeroCopy(d: BlockDevice, sector: number, count: number): Promise<Uint8Array> {
  const buf = d.allocBuffer!(count * 512);
  try {
    await d.readBuffer!(sector, count, buf);
    const out = new Uint8Array(count * 512);
    buf.pages.forEach((p, i) => {
      out.set(p.subarray(0, Math.min(4096, out.length - i * 4096)), i * 4096);
    });
    return out;
  } finally {
    buf.free();
  }
}

/** The `write` call with `zeroCopy`: the data put in an IoBuffer's pages, then written from them. */
async function writeZeroCopy(d: BlockDevice, sector: number, data: Uint8Array): Promise<void> {
  if (data.byteLength % 512 !== 0) {
    throw new RangeError(`Cannot write ${data.byteLength} bytes: not a whole number of sectors`);
  }
  const buf = d.allocBuffer!(data.byteLength);
  try {
    buf.pages.forEach((p, i) => {
      p.set(data.subarray(i * 4096, (i + 1) * 4096));
    });
    await d.writeBuffer!(sector, data.byteLength / 512, buf);
  } finally {
    buf.free();
  }
}
