/**
 * One blkif ring driven by the frontend (Linux xen-blkfront.c's `struct blkfront_ring_info` and
 * its request path): callers' I/O cut into ring requests, their data and segment descriptors put
 * in pool pages (page-pool.ts), the responses checked and completed. Its collaborators come
 * through the constructor (the initialised ring, the page pool, a notify function and a log); the
 * XenBus driver (blkfront.ts) owns the ring pages and the event channel.
 *
 * Requests of more than 11 segments use BLKIF_OP_INDIRECT when the backend offers it, up to
 * min(`feature-max-indirect-segments`, ours: Linux's default 32); larger I/O is split into several
 * requests, all in flight together. Each request is written in place through blkif.ts's
 * accessors, its segments straight into the request or its indirect pages, and pushed as it is
 * put on the ring (the notification only when the backend asked for one); responses are taken
 * until RING_FINAL_CHECK_FOR_RESPONSES says none are left.
 *
 * A backend's responses are checked before use (Linux's XSA-376 checks): an id that is not in
 * flight, a wrong operation or a rsp_prod more than a ring ahead marks the connection dead.
 */
import type { FrontRing } from "../../ring/ring.ts";
import {
  BLKIF_ENTRY_SIZE,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP,
  BLKIF_RESPONSE,
  BLKIF_RSP,
  responseIdHi,
  responseIdLo,
  responseOperation,
  responseStatus,
  SECTORS_PER_PAGE,
  SEGS_PER_INDIRECT_FRAME,
  statusName,
  writeDiscardRequest,
  writeIndirectGref,
  writeIndirectRequest,
  writeIndirectSegment,
  writeRequestSegment,
  writeRwRequest,
} from "./blkif.ts";
import { type BlockDeviceInfo, type BlockFeatures, BlockIOError } from "./blockdev.ts";
import { type PagePool, type PoolPage, viewOfPage } from "./page-pool.ts";

/** The disk as the backend described it at connect (blkfront_connect). */
export interface DiskInfo extends Omit<BlockDeviceInfo, "features"> {
  /** Replaced when the backend refuses a feature it offered (EOPNOTSUPP). */
  features: BlockFeatures;
  readonly discardGranularity: number;
  readonly discardAlignment: number;
  readonly discardSecure: boolean;
}

export interface BlkifFrontOptions {
  readonly ring: FrontRing;
  readonly pool: PagePool;
  /** The device's node name, for errors. */
  readonly name: string;
  /** Sends the ring's event to the backend. */
  notify(): void;
  log(line: string): void;
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

/** A request a save keeps for blkfront to resubmit after the restore. */
export interface UnfinishedRequest {
  readonly op: number;
  readonly sector: number;
  readonly nsec: number;
  readonly data: Uint8Array | null;
}

export class BlkifFront {
  readonly ring: FrontRing;
  readonly pool: PagePool;
  readonly #o: BlkifFrontOptions;
  readonly #shadow: (Chunk | undefined)[];
  readonly #freeIds: number[];
  readonly #queue: Chunk[] = [];
  readonly #req = new Uint8Array(BLKIF_ENTRY_SIZE);
  readonly #rv = new DataView(this.#req.buffer);
  readonly #rsp = new Uint8Array(BLKIF_RESPONSE.size);
  readonly #sv = new DataView(this.#rsp.buffer);
  /** Set by connect(): no I/O before. */
  info: DiskInfo | null = null;
  /** Set when the backend misbehaved or left: no more I/O on this connection. */
  dead: string | null = null;
  readonly stats = { requests: 0, kicks: 0, events: 0 };

  constructor(o: BlkifFrontOptions) {
    this.#o = o;
    this.ring = o.ring;
    this.pool = o.pool;
    const size = o.ring.size;
    this.#shadow = new Array(size).fill(undefined);
    this.#freeIds = Array.from({ length: size }, (_, i) => size - 1 - i);
  }

  get inflight(): number {
    return this.ring.size - this.#freeIds.length;
  }

  /** The backend is Connected and described the disk: I/O may start. */
  connect(info: DiskInfo): void {
    this.info = info;
    this.pool.persistent = info.features.persistent;
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
    return Promise.reject(new BlockIOError(`${this.#o.name}: disk not connected`, -1));
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
      const pages = c.op === BLKIF_OP.discard ? [] : this.pool.take(c.zc ? nind : nseg + nind);
      if (pages === null) {
        if (this.inflight === 0) {
          this.#queue.shift();
          c.reject(
            new BlockIOError(
              `${this.info?.vdev ?? this.#o.name}: no memory for ${nseg + nind} pages (ENOMEM): the guest has no page left for blkfront's pool`,
              -1,
            ),
          );
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
   * fill it, through blkif.ts's accessors: the header (every byte of the entry set, padding 0),
   * then the segments into the request or, for an indirect one, into its indirect pages.
   */
  #encode(c: Chunk, id: number, nseg: number, indirect: boolean): void {
    const v = this.#rv;
    const pool = this.pool;
    const handle = this.info!.devid & 0xffff;
    if (c.op === BLKIF_OP.discard) {
      writeDiscardRequest(v, 0, handle, id, c.sector, c.nsec);
      return;
    }
    if (indirect) writeIndirectRequest(v, c.op, nseg, handle, id, c.sector);
    else writeRwRequest(v, c.op, nseg, handle, id, c.sector);
    const write = c.op !== BLKIF_OP.read;
    // An indirect request's segments: slot i % 512 of indirect page i / 512.
    let page: DataView = v;
    for (let i = 0; i < nseg; i++) {
      const p = c.pages[i]!;
      const n = Math.min(SECTORS_PER_PAGE, c.nsec - i * SECTORS_PER_PAGE);
      if (write && c.buf !== null) p.page.set(c.buf.subarray(i * 4096, i * 4096 + n * 512));
      const gref = pool.grant(p, write);
      if (!indirect) {
        writeRequestSegment(v, i, gref, 0, n - 1);
        continue;
      }
      const slot = i % SEGS_PER_INDIRECT_FRAME;
      if (slot === 0) page = viewOfPage(c.indirect[i / SEGS_PER_INDIRECT_FRAME]!);
      writeIndirectSegment(page, slot, gref, 0, n - 1);
    }
    for (let i = 0; i < c.indirect.length; i++) writeIndirectGref(v, i, pool.grant(c.indirect[i]!, true));
  }

  #push(): void {
    if (this.dead !== null) return;
    if (this.ring.pushRequestsAndCheckNotify()) {
      this.stats.kicks++;
      this.#o.notify();
    }
  }

  // ---------------------------------------------------------------- responses

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
        const idLo = responseIdLo(v);
        const idHi = responseIdHi(v);
        const operation = responseOperation(v);
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
        this.#complete(c, responseStatus(v));
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
    if (c.zc) this.pool.unshare(c.pages);
    else this.pool.put(c.pages);
    this.pool.put(c.indirect);
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

  /**
   * At a save: the writes, flushes and discards in flight or queued, each write with its data,
   * which blkfront resubmits once a restored domain has reconnected (Linux's blkif_recover). A
   * read is not kept: its caller is gone with the worker's heap.
   */
  unfinished(): UnfinishedRequest[] {
    const out: UnfinishedRequest[] = [];
    const chunks = [...this.#shadow, ...this.#queue].filter((c) => c !== undefined);
    for (const c of chunks.sort((a, b) => a.sector - b.sector)) {
      if (c.op === BLKIF_OP.read) continue;
      let data: Uint8Array | null = null;
      if (c.op === BLKIF_OP.write) {
        data = new Uint8Array(c.nsec * 512);
        if (c.buf !== null) data.set(c.buf.subarray(0, data.length));
        else {
          const d = data;
          c.pages.forEach((p, i) => {
            d.set(p.page.subarray(0, Math.min(4096, d.length - i * 4096)), i * 4096);
          });
        }
      }
      out.push({ op: c.op, sector: c.sector, nsec: c.nsec, data });
    }
    return out;
  }

  /** The backend misbehaved: fail everything, stop using the ring (BLKIF_STATE_ERROR). */
  fatal(why: string): void {
    this.#o.log(why);
    this.failAll(why);
  }

  /** Fails every request queued or in flight; the connection is unusable afterwards. */
  failAll(why: string): void {
    if (this.dead === null) this.dead = why;
    this.pool.close();
    const err = () => new BlockIOError(`${this.info?.vdev ?? this.#o.name}: ${why}`, -1);
    for (let id = 0; id < this.#shadow.length; id++) {
      const c = this.#shadow[id];
      if (c === undefined) continue;
      this.#shadow[id] = undefined;
      // Its pages stay out of the pool: the backend may still use them until it disconnects.
      c.reject(err());
    }
    for (const c of this.#queue.splice(0)) c.reject(err());
  }
}

function opName(op: number): string {
  return (["read", "write", "barrier", "flush", "op 4", "discard", "indirect"] as const)[op] ?? `op ${op}`;
}
