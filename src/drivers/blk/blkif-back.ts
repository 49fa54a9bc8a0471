/**
 * One blkif ring served by the backend (Linux's `struct xen_blkif_ring` and blkback.c): takes
 * requests off the ring, checks them, maps their grants, does the I/O on a BlockStore and answers.
 * Its collaborators come through the constructor (the mapped ring, a grant mapper, the store, a
 * notify function and a log), so tests drive it without a hypervisor.
 *
 * Each request is copied out of the shared ring once and only the copy is checked and used
 * (XSA-155's double fetch); an indirect page's segment descriptors are likewise copied once.
 * What a request may do, as Linux's dispatch_rw_block_io / xen_vbd_translate / dispatch_discard_io
 * decide it:
 *
 *   READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE   1..11 segments (0 only for a flush or barrier),
 *       each 0 <= first_sect <= last_sect <= 7; sector_number + sectors <= the disk's size, with no
 *       wrap; no write, flush or barrier on a read-only disk. Else BLKIF_RSP_ERROR.
 *   INDIRECT   indirect_op READ or WRITE, 1..max-indirect-segments segments (256, one indirect
 *       page), then as above. Else BLKIF_RSP_ERROR.
 *   DISCARD    on a disk that offers it (else BLKIF_RSP_EOPNOTSUPP), writable, inside the disk.
 *   anything else  BLKIF_RSP_EOPNOTSUPP (Linux dispatch_other_io).
 *
 * Grants are mapped with the frontend's domid (the hypervisor refuses refs it does not own) and a
 * failed map answers BLKIF_RSP_ERROR. A frontend that publishes a req_prod more than a ring ahead
 * of our responses is cut off: the ring is no longer served (Linux: "Frontend provided bogus ring
 * requests ... Halting ring processing"). Nothing a frontend writes can throw out of this class.
 *
 * Persistent grants (when both ends offer `feature-persistent`): a segment's grant is mapped
 * read-write the first time it is seen and kept mapped until disconnect, up to
 * `maxPersistentGrants` (Linux's xen_blkif_max_pgrants, 1056); beyond that, grants are mapped for
 * the one request and unmapped before the response, as without the feature. A persistent grant
 * already used by a request in flight is refused (BLKIF_RSP_ERROR), as Linux refuses it.
 *
 * Reads and writes taken off the ring in one pass wait in a plug and are issued when the pass
 * ends, one store call per run of them contiguous on disk (#unplug, Linux's blk_start_plug /
 * blk_finish_plug around __do_block_io_op); a flush, barrier or discard issues the plug first.
 * Responses are written as each request completes; their push (and the event, when the frontend
 * asked for one through rsp_event) is batched: one push per turn of the event loop (io=inline:
 * see #unplug).
 */

import type { BackRing } from "../../ring/ring.ts";
import {
  BLKIF_ENTRY_SIZE,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP,
  BLKIF_RESPONSE,
  BLKIF_RSP,
  BLKIF_SEGMENT,
  discardNrSectors,
  discardNrSectorsBig,
  indirectGref,
  indirectNrSegments,
  indirectOp,
  readIndirectSegments,
  readRequestSegments,
  requestIdHi,
  requestIdLo,
  requestOperation,
  requestSector,
  requestSectorBig,
  rwNrSegments,
  SECTORS_PER_PAGE,
  SEGS_PER_INDIRECT_FRAME,
  type SegmentColumns,
  writeResponse,
} from "./blkif.ts";

import type { BlockStore } from "./image.ts";

/** Linux blkback's MAX_INDIRECT_SEGMENTS (advertised as `feature-max-indirect-segments`). */
export const MAX_INDIRECT_SEGMENTS = 256;
/** Linux's xen_blkif_max_pgrants default. */
export const MAX_PERSISTENT_GRANTS = 1056;

/** A page mapped from the frontend. */
export interface MappedGrant {
  readonly handle: number;
  readonly page: Uint8Array;
}

export interface BlkifBackOptions {
  readonly ring: BackRing;
  readonly store: BlockStore;
  /** The disk is read-only (`mode` r, or a cdrom). */
  readonly readonly: boolean;
  /** Offer discard (BLKIF_OP_DISCARD); else it is EOPNOTSUPP. */
  readonly discard: boolean;
  /** Both ends offered feature-persistent. */
  readonly persistent: boolean;
  readonly maxIndirectSegments?: number;
  readonly maxPersistentGrants?: number;
  /**
   * Do reads and writes in this thread, synchronously, when the store can (`io=inline`): no
   * thread-pool hop, but the thread waits for the disk. Default false: libuv's pool.
   */
  readonly inline?: boolean;
  /**
   * io=inline: whether the frontend may be polling for responses now (its domain's halt polling
   * is allowed). Yes: each response is pushed as it is written, for the frontend to use while the
   * next is served. No: the pass's responses are pushed together at its end, one event for them
   * all, since each event would wake a sleeping frontend. Default: always yes.
   */
  readonly peerPolls?: () => boolean;
  /** Maps the frontend's `ref` (throws when the hypervisor refuses). */
  map(ref: number, readonly: boolean): MappedGrant;
  unmap(handle: number): void;
  /** Sends the ring's event to the frontend. */
  notify(): void;
  log(line: string): void;
}

/** Counters, as Linux's sysfs statistics (oo_req, rd_req, ...). */
export interface BlkifBackStats {
  rdReq: number;
  wrReq: number;
  fReq: number;
  dsReq: number;
  rdSect: number;
  wrSect: number;
  errors: number;
  /** Grants mapped for one request and unmapped after it. */
  transientMaps: number;
  persistentGrants: number;
  /** Event-channel notifications sent to the frontend (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY). */
  kicks: number;
  /** Store calls (preadv/pwritev) for reads and writes: fewer than requests when merged. */
  ioCalls: number;
}

/** A request refused before any I/O: answered with `status`. */
class Refused extends Error {
  readonly status: number;
  constructor(message: string, status: number = BLKIF_RSP.error) {
    super(message);
    this.status = status;
  }
}

interface PersistentGrant extends MappedGrant {
  inUse: boolean;
  /** The page as a DataView, made the first time it serves as an indirect page. */
  view: DataView | null;
}

/** Who a response goes to: a request's 64-bit id (two halves) and the operation it answers. */
interface Ident {
  readonly idLo: number;
  readonly idHi: number;
  /** The wire operation (INDIRECT for an indirect request), for the log. */
  readonly operation: number;
  /** The operation the response names: an indirect request's indirect_op, as Linux answers. */
  readonly rspOp: number;
}

/** A read or write waiting in the plug: its byte range and buffers, told when its I/O ended. */
interface Bio {
  readonly write: boolean;
  readonly pos: number;
  readonly end: number;
  readonly bufs: readonly Uint8Array[];
  /** The store call ended: `ok`, or failed with `e`. */
  readonly done: (ok: boolean, e?: unknown) => void;
}

/**
 * The buffers of a merged call, in order: `iovs` of them. (A loop: Array.prototype.flatMap took
 * about 28 µs for the 8 × 32 pages of a MiB, a fifth of the preadv itself.)
 */
function concat(group: readonly Bio[], iovs: number): Uint8Array[] {
  const out: Uint8Array[] = new Array(iovs);
  let k = 0;
  for (const b of group) for (const buf of b.bufs) out[k++] = buf;
  return out;
}

/** What #rw returns for a request already answered (io=inline): nothing to track. */
const DONE: Promise<void> = Promise.resolve();

/** Linux's UIO_MAXIOV: iovecs one preadv/pwritev takes (libuv would cut a longer list). */
export const IOV_MAX = 1024;

export class BlkifBack {
  readonly stats: BlkifBackStats = {
    rdReq: 0,
    wrReq: 0,
    fReq: 0,
    dsReq: 0,
    rdSect: 0,
    wrSect: 0,
    errors: 0,
    transientMaps: 0,
    persistentGrants: 0,
    kicks: 0,
    ioCalls: 0,
  };
  readonly #o: BlkifBackOptions;
  readonly #ring: BackRing;
  readonly #maxIndirect: number;
  readonly #maxPersistent: number;
  readonly #persistent = new Map<number, PersistentGrant>();
  readonly #inflight = new Set<Promise<void>>();
  readonly #scratch = new Uint8Array(BLKIF_ENTRY_SIZE);
  readonly #sv = new DataView(this.#scratch.buffer);
  readonly #rsp = new Uint8Array(BLKIF_RESPONSE.size);
  readonly #rv = new DataView(this.#rsp.buffer);
  /**
   * The current request's segments, copied out of the request or its indirect pages once (each
   * byte read once, as Linux's xen_blkbk_parse_indirect): the checks and the maps use only these.
   */
  readonly #segs: SegmentColumns;
  /** The disk's size in sectors. */
  readonly #nsectors: number;
  #halted = false;
  #stopped = false;
  #pushScheduled = false;
  #processing = false;
  /** Reads and writes of the current pass, issued when it ends (#unplug). */
  #plug: Bio[] = [];

  constructor(o: BlkifBackOptions) {
    this.#o = o;
    this.#ring = o.ring;
    this.#nsectors = Math.floor(o.store.size / 512);
    this.#maxIndirect = o.maxIndirectSegments ?? MAX_INDIRECT_SEGMENTS;
    const cap = Math.max(this.#maxIndirect, BLKIF_MAX_SEGMENTS_PER_REQUEST);
    this.#segs = {
      gref: new Uint32Array(cap),
      firstSect: new Uint8Array(cap),
      lastSect: new Uint8Array(cap),
    };
    this.#maxPersistent = o.maxPersistentGrants ?? MAX_PERSISTENT_GRANTS;
  }

  /** True once a bogus req_prod made us stop serving the ring. */
  get halted(): boolean {
    return this.#halted;
  }

  get inflight(): number {
    return this.#inflight.size;
  }

  /** The ring's event: serve what the frontend pushed (do_block_io_op). */
  onEvent(): void {
    if (this.#processing) return;
    this.#processing = true;
    try {
      this.#process();
    } finally {
      this.#processing = false;
      this.#unplug();
      this.#pushResponses();
    }
  }

  /**
   * blk_finish_plug: issues the reads and writes taken off the ring in this pass, one store call
   * per run of requests that follow each other on disk in ring order, same direction, up to
   * IOV_MAX buffers (the block layer's back merge). A failed call fails every request in it.
   *
   * io=inline: each call is made now, in this thread, and its requests answered; their responses
   * are pushed at once (as Linux's make_response pushes each) if the frontend may be polling, so
   * it can use them while the next call runs; else at the end of the pass (onEvent), one event for
   * them all. A 1 MiB read or write that blkfront cut into 8 requests of 128 KiB is one preadv or
   * pwritev of 256 pages: a pwritev costs about as much per call as per page here (docs/blk.md).
   */
  #unplug(): void {
    const plug = this.#plug;
    if (plug.length === 0) return;
    this.#plug = [];
    const store = this.#o.store;
    const inline = this.#o.inline === true;
    for (let i = 0; i < plug.length; ) {
      const first = plug[i]!;
      let j = i + 1;
      let iovs = first.bufs.length;
      let end = first.end;
      while (j < plug.length) {
        const b = plug[j]!;
        if (b.write !== first.write || b.pos !== end || iovs + b.bufs.length > IOV_MAX) break;
        iovs += b.bufs.length;
        end = b.end;
        j++;
      }
      const group = plug.slice(i, j);
      const bufs = group.length === 1 ? first.bufs : concat(group, iovs);
      i = j;
      this.stats.ioCalls++;
      const sync = inline ? (first.write ? store.writevSync : store.readvSync) : undefined;
      if (sync === undefined) {
        (first.write ? store.writev(bufs, first.pos) : store.readv(bufs, first.pos)).then(
          () => {
            for (const b of group) b.done(true);
          },
          (e: unknown) => {
            for (const b of group) b.done(false, e);
          },
        );
        continue;
      }
      let ok = true;
      let err: unknown;
      try {
        sync.call(store, bufs, first.pos);
      } catch (e) {
        ok = false;
        err = e;
      }
      for (const b of group) b.done(ok, err);
      if (this.#o.peerPolls?.() ?? true) this.#pushResponses();
    }
  }

  /**
   * Disconnect (xen_blkif_disconnect): stop taking requests, let the I/O in flight finish (its
   * responses are still written: the ring is mapped until the caller unmaps it), then unmap every
   * persistent grant.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    this.#flushResponses();
    for (const [ref, g] of this.#persistent) {
      this.#unmapQuietly(g.handle, ref);
    }
    this.#persistent.clear();
    this.stats.persistentGrants = 0;
  }

  #process(): void {
    const ring = this.#ring;
    do {
      if (this.#halted || this.#stopped) return;
      const rp = ring.shared.reqProd; // read once; acquire
      if (ring.requestProdOverflow(rp)) {
        const rc = ring.rspProdPvt;
        this.#o.log(
          `Frontend provided bogus ring requests (${rp} - ${rc} = ${(rp - rc) >>> 0}). Halting ring processing`,
        );
        this.#halted = true;
        return;
      }
      let rc = ring.reqCons;
      while (rc !== rp && !ring.requestConsOverflow(rc)) {
        ring.copyRequest(rc, this.#scratch); // the only read of the slot
        rc = (rc + 1) >>> 0;
        ring.reqCons = rc;
        this.#dispatch();
      }
      // The pass's reads and writes, merged (blk_finish_plug), before we look for more.
      this.#unplug();
    } while (ring.finalCheckForRequests());
  }

  /** Serves the request copied into #scratch (dispatch_rw_block_io, dispatch_discard_io). */
  #dispatch(): void {
    const v = this.#sv;
    const operation = requestOperation(v);
    const who: Ident = {
      idLo: requestIdLo(v),
      idHi: requestIdHi(v),
      operation,
      rspOp: operation === BLKIF_OP.indirect ? indirectOp(v) : operation,
    };
    // A flush, barrier or discard comes after the reads and writes before it in the pass.
    if (operation !== BLKIF_OP.read && operation !== BLKIF_OP.write && operation !== BLKIF_OP.indirect) {
      this.#unplug();
    }
    let p: Promise<void>;
    try {
      if (operation <= BLKIF_OP.flushDiskcache) p = this.#direct(who);
      else if (operation === BLKIF_OP.indirect) p = this.#indirect(who);
      else if (operation === BLKIF_OP.discard) p = this.#discard(who);
      else throw new Refused(`operation ${operation} not supported`, BLKIF_RSP.eopnotsupp);
    } catch (e) {
      this.#fail(who, e);
      return;
    }
    if (p === DONE) return;
    const tracked: Promise<void> = p.then(
      () => {},
      (e: unknown) => this.#fail(who, e),
    );
    this.#inflight.add(tracked);
    void tracked.finally(() => this.#inflight.delete(tracked));
  }

  #fail(who: Ident, e: unknown): void {
    const status = e instanceof Refused ? e.status : BLKIF_RSP.error;
    this.stats.errors++;
    if (!(e instanceof Refused) || status === BLKIF_RSP.error) {
      const id = who.idHi === 0 ? who.idLo : (BigInt(who.idHi) << 32n) | BigInt(who.idLo);
      this.#o.log(`request ${id} (op ${who.operation}) failed: ${e instanceof Error ? e.message : e}`);
    }
    this.#respond(who, status);
  }

  /** READ/WRITE/BARRIER/FLUSH with up to 11 segments in the request itself. */
  #direct(who: Ident): Promise<void> {
    const v = this.#sv;
    const nseg = rwNrSegments(v);
    const flush = who.operation === BLKIF_OP.flushDiskcache || who.operation === BLKIF_OP.writeBarrier;
    if ((nseg === 0 && !flush) || nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
      throw new Refused(`bad number of segments in request (${nseg})`);
    }
    readRequestSegments(v, nseg, this.#segs);
    return this.#rw(who, who.operation as 0 | 1 | 2 | 3, nseg);
  }

  #indirect(who: Ident): Promise<void> {
    const v = this.#sv;
    const op = who.rspOp;
    if (op !== BLKIF_OP.read && op !== BLKIF_OP.write) {
      throw new Refused(`bad operation ${op} in indirect request`);
    }
    const nseg = indirectNrSegments(v);
    if (nseg === 0 || nseg > this.#maxIndirect) throw new Refused(`bad number of segments (${nseg})`);
    const pages = Math.ceil(nseg / SEGS_PER_INDIRECT_FRAME);
    for (let i = 0; i < pages; i++) {
      const ref = indirectGref(v, i);
      const at = i * SEGS_PER_INDIRECT_FRAME;
      const n = Math.min(SEGS_PER_INDIRECT_FRAME, nseg - at);
      const g = this.#persistentFor(ref);
      if (g !== undefined) {
        // In use by another request: the page is being reused under us, refuse as for a segment.
        if (g.inUse) throw new Refused(`indirect grant ${ref} already in use`);
        g.view ??= new DataView(g.page.buffer, g.page.byteOffset, g.page.byteLength);
        this.#copySegments(g.view, at, n);
        continue;
      }
      const m = this.#mapTransient(ref, true);
      try {
        this.#copySegments(new DataView(m.page.buffer, m.page.byteOffset, m.page.byteLength), at, n);
      } finally {
        this.#unmapQuietly(m.handle, ref);
      }
    }
    return this.#rw(who, op, nseg);
  }

  /** Copies `n` segment descriptors from an indirect page into #segs from index `at` on. */
  #copySegments(page: DataView, at: number, n: number): void {
    if (n * BLKIF_SEGMENT.size > page.byteLength) {
      throw new Refused(`indirect page of ${page.byteLength} bytes holds no ${n} segments`);
    }
    readIndirectSegments(page, n, this.#segs, at);
  }

  /** The persistent grant for `ref` (mapping it now if there is room), or undefined. */
  #persistentFor(ref: number): PersistentGrant | undefined {
    if (!this.#o.persistent) return undefined;
    const have = this.#persistent.get(ref);
    if (have !== undefined) return have;
    if (this.#persistent.size >= this.#maxPersistent) return undefined;
    let m: MappedGrant;
    try {
      // Persistent grants are always mapped read-write (the frontend grants its pool so).
      m = this.#o.map(ref, false);
    } catch (e) {
      throw new Refused(`invalid buffer: could not map grant ${ref}: ${(e as Error).message}`);
    }
    const g: PersistentGrant = { handle: m.handle, page: m.page, inUse: false, view: null };
    this.#persistent.set(ref, g);
    this.stats.persistentGrants = this.#persistent.size;
    return g;
  }

  #mapTransient(ref: number, readonly: boolean): MappedGrant {
    try {
      const m = this.#o.map(ref, readonly);
      this.stats.transientMaps++;
      return m;
    } catch (e) {
      throw new Refused(`invalid buffer: could not map grant ${ref}: ${(e as Error).message}`);
    }
  }

  #unmapQuietly(handle: number, ref: number): void {
    try {
      this.#o.unmap(handle);
    } catch (e) {
      this.#o.log(`unmap of grant ${ref} failed: ${(e as Error).message}`);
    }
  }

  /**
   * READ/WRITE/BARRIER/FLUSH with the `nseg` segments in #segs (from the request or its indirect
   * pages). Throws Refused before any I/O; the returned promise settles when the response is written.
   */
  #rw(who: Ident, op: 0 | 1 | 2 | 3, nseg: number): Promise<void> {
    const flush = op === BLKIF_OP.flushDiskcache || op === BLKIF_OP.writeBarrier;
    const write = op !== BLKIF_OP.read;
    const { gref: grefs, firstSect: firsts, lastSect: lasts } = this.#segs;
    let nsec = 0;
    for (let i = 0; i < nseg; i++) {
      const f = firsts[i]!;
      const l = lasts[i]!;
      if (l >= SECTORS_PER_PAGE || l < f) throw new Refused(`bad segment: sectors ${f}..${l}`);
      nsec += l - f + 1;
    }
    // xen_vbd_translate: writable, inside the disk, no wrap. Both request layouts keep the sector
    // at offset 16; a value past 2^53 is inexact here but far past any disk, so still refused.
    if (write && this.#o.readonly) throw new Refused("write on a read-only device");
    const v = this.#sv;
    const sector = requestSector(v);
    if (sector + nsec > this.#nsectors) {
      throw new Refused(`access beyond end of device (${requestSectorBig(v)} + ${nsec} > ${this.#nsectors})`);
    }
    if (op === BLKIF_OP.read) this.stats.rdReq++;
    else if (op === BLKIF_OP.write) this.stats.wrReq++;
    else this.stats.fReq++;
    // Map every segment before any I/O; a refusal unmaps what was mapped.
    const bufs: Uint8Array[] = new Array(nseg);
    const transient: { handle: number; ref: number }[] = [];
    const held: PersistentGrant[] = [];
    try {
      for (let i = 0; i < nseg; i++) {
        const ref = grefs[i]!;
        let page: Uint8Array;
        const g = this.#persistentFor(ref);
        if (g !== undefined) {
          if (g.inUse) throw new Refused(`grant ${ref} already in use by another request`);
          g.inUse = true;
          held.push(g);
          page = g.page;
        } else {
          // A read fills the page (map it writable); a write only reads it.
          const m = this.#mapTransient(ref, write);
          transient.push({ handle: m.handle, ref });
          page = m.page;
        }
        const f = firsts[i]!;
        const l = lasts[i]!;
        // A whole page (the usual segment) is the mapped view itself: no new view per request.
        bufs[i] =
          f === 0 && l === SECTORS_PER_PAGE - 1 && page.byteLength === 4096
            ? page
            : page.subarray(f * 512, (l + 1) * 512);
      }
    } catch (e) {
      this.#release(held, transient);
      throw e;
    }
    const pos = sector * 512;
    const store = this.#o.store;
    const answer = (): void => {
      if (write) this.stats.wrSect += nsec;
      else this.stats.rdSect += nsec;
      this.#release(held, transient);
      this.#respond(who, BLKIF_RSP.okay);
    };
    const end = pos + nsec * 512;
    if (!flush && this.#o.inline === true && (write ? store.writevSync : store.readvSync) !== undefined) {
      // io=inline: into the plug, issued and answered at the end of the pass (#unplug) in this
      // thread; an I/O error is answered there.
      this.#plug.push({
        write,
        pos,
        end,
        bufs,
        done: (ok, e) => {
          if (ok) answer();
          else {
            this.#release(held, transient);
            this.#fail(who, e);
          }
        },
      });
      return DONE;
    }
    const io = async (): Promise<void> => {
      if (!flush) {
        // Plain reads and writes wait in the plug, to be merged with their neighbours on disk.
        await new Promise<void>((resolve, reject) => {
          this.#plug.push({ write, pos, end, bufs, done: (ok, e) => (ok ? resolve() : reject(e)) });
        });
        return;
      }
      if (op === BLKIF_OP.writeBarrier) {
        // A barrier drains what is in flight first (Linux: drain_io).
        const others = [...this.#inflight];
        await Promise.allSettled(others);
      }
      await store.flush();
      if (bufs.length === 0) return;
      this.stats.ioCalls++;
      if (write) await store.writev(bufs, pos);
      else await store.readv(bufs, pos);
    };
    return io().then(answer, (e: unknown) => {
      this.#release(held, transient);
      throw e;
    });
  }

  #release(held: PersistentGrant[], transient: { handle: number; ref: number }[]): void {
    for (const g of held) g.inUse = false;
    for (const t of transient) this.#unmapQuietly(t.handle, t.ref);
  }

  /**
   * dispatch_discard_io, with xen_vbd_translate's checks: writable, inside the disk, no wrap. A
   * 64-bit field past 2^53 is inexact as a number but far past any disk, so still refused; the
   * refusal names the exact values.
   */
  #discard(who: Ident): Promise<void> {
    if (!this.#o.discard) throw new Refused("discard not supported", BLKIF_RSP.eopnotsupp);
    this.stats.dsReq++;
    if (this.#o.readonly) throw new Refused("write on a read-only device");
    const v = this.#sv;
    const sector = requestSector(v);
    const count = discardNrSectors(v);
    if (sector + count > this.#nsectors) {
      throw new Refused(
        `access beyond end of device (${requestSectorBig(v)} + ${discardNrSectorsBig(v)} > ${this.#nsectors})`,
      );
    }
    return this.#o.store.discard(sector * 512, count * 512).then(() => this.#respond(who, BLKIF_RSP.okay));
  }

  /** make_response: writes the response now; the push is batched (one per event-loop turn). */
  #respond(who: Ident, status: number): void {
    const ring = this.#ring;
    const idx = ring.rspProdPvt;
    writeResponse(this.#rv, who.idLo, who.idHi, who.rspOp, status);
    ring.shared.write(idx, this.#rsp);
    ring.rspProdPvt = (idx + 1) >>> 0;
    if (this.#pushScheduled) return;
    this.#pushScheduled = true;
    setImmediate(() => this.#flushResponses());
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY, and the event if the frontend asked for one. */
  #pushResponses(): void {
    const ring = this.#ring;
    if (ring.rspProdPvt !== ring.shared.rspProd && ring.pushResponsesAndCheckNotify()) {
      this.stats.kicks++;
      this.#o.notify();
    }
  }

  #flushResponses(): void {
    this.#pushScheduled = false;
    this.#pushResponses();
    // Requests a (hostile) frontend queued beyond the ring's free slots can go now.
    if (!this.#halted && !this.#stopped && this.#ring.hasUnconsumedRequests()) this.onEvent();
  }
}
