/**
 * Grant tables, the hypervisor's side (Xen's `common/grant_table.c`): map, unmap and copy, in the
 * main thread. The layout and flags are src/xen/grant-table-abi.ts; the granting guest's side is
 * src/kernel/grant-table.ts.
 *
 * The hypervisor keeps the state the guest must not be able to forge (pin counts, the page an
 * entry resolved to, the maptrack) in its own memory; it reads an entry's frame once, at first
 * pin, and writes only the (flags, domid) word: GTF_reading / GTF_writing set with CMPXCHG (at
 * most 5 tries: a guest rewriting its entry in a loop must not livelock the hypervisor) and
 * cleared with an atomic AND, as Xen does.
 *
 * Pin counts and flags, a worked example (each line is a test in test/hv/grant-table.test.ts).
 * Domain 1 grants gfn 5 to domain 2 in ref 8, writable:
 *
 *   op (by domain 2)             pin (hstw, hstr)  entry flags
 *   grant (by domain 1)          —                 permit_access
 *   map host_map|readonly   → h0  (0, 1)           permit_access|reading
 *   map host_map            → h1  (1, 1)           permit_access|reading|writing
 *   endForeignAccess (dom 1)      (1, 1)           unchanged: returns false, the page is mapped
 *   unmap h1                      (0, 1)           permit_access|reading   (last writer gone)
 *   unmap h1                      (0, 1)           GNTST_bad_handle
 *   unmap h0                      —                permit_access           (last pin gone)
 *   endForeignAccess (dom 1)      —                0: returns true
 *
 * Read-only maps cannot be enforced in JS: a SharedArrayBuffer is always writable by whoever holds
 * it. A map therefore returns `readonly: true` with the page, and the domain kernel must expose it
 * only through a view with no write path. What *is* enforced: a read-only grant never gets
 * GTF_writing, never maps writable and is never the destination of a copy.
 */
import {
  checkU16,
  checkU32,
  GNTCOPY,
  GNTMAP,
  GNTST,
  type GrantError,
  type GrantStatus,
  GrantTableFrames,
  GTF,
  wordIndex,
} from "../xen/grant-table-abi.ts";
import { DOMID_SELF, pageBytes, XEN_PAGE_SIZE } from "../xen/xen.ts";
// Hypervisor side

/** What the hypervisor knows of a domain. */
export interface GrantDomain {
  readonly domid: number;
  /** Its memory, indexed by gfn; a hole or an index past the end is not a page. */
  readonly pages: readonly (SharedArrayBuffer | undefined)[];
  /** Its grant table frames. */
  readonly grantFrames: readonly SharedArrayBuffer[];
}

/** Finds a live domain by domid. */
export type DomainLookup = (domid: number) => GrantDomain | undefined;

/** `struct gnttab_map_grant_ref`'s inputs (host_addr has no meaning here). */
export interface MapGrantRef {
  /** GNTMAP_*: host_map and/or device_map, optionally readonly. */
  readonly flags: number;
  readonly ref: number;
  /** The granting domain. */
  readonly dom: number;
}

export type MapResult =
  | {
      readonly status: typeof GNTST.okay;
      readonly handle: number;
      /** The granted page: this one page and nothing else of the granter. */
      readonly page: SharedArrayBuffer;
      /** Not enforceable: wrap `page` in a view with no write path (see the module comment). */
      readonly readonly: boolean;
      /** The granter's gfn, for `dev_bus_addr`-like reporting. */
      readonly gfn: number;
    }
  | { readonly status: GrantError };

/** `struct gnttab_copy_ptr`. */
export interface CopyPtr {
  /** C's union `u`: the grant ref when the op's flag for this side is set, else a gfn. */
  readonly u: number;
  /** The grant's owner, or DOMID_SELF for a gfn of the caller. */
  readonly domid: number;
  readonly offset: number;
}

/** `struct gnttab_copy`'s inputs. */
export interface GrantCopy {
  readonly source: CopyPtr;
  readonly dest: CopyPtr;
  readonly len: number;
  /** GNTCOPY_source_gref | GNTCOPY_dest_gref. */
  readonly flags: number;
}

/** Pin counts of one active entry, by kind, as Xen's 4 × 8-bit `act->pin`. */
export interface PinCounts {
  readonly hostWrite: number;
  readonly hostRead: number;
  readonly devWrite: number;
  readonly devRead: number;
}

/** A grant in use: by whom, which ref of whose table, how pinned. */
export interface GrantUse {
  readonly granter: number;
  readonly ref: number;
  readonly mapper: number;
  readonly gfn: number;
  readonly pins: PinCounts;
}

export interface GrantTablesOptions {
  /** Maptrack handles per mapping domain (Xen: 1024 frames × 256). */
  readonly maxMaptrackHandles?: number;
  /** EVTCHNOP_send by `domid` on its `port`: how an unmap notification signals. */
  readonly sendEvent?: (domid: number, port: number) => void;
}

/**
 * Linux's grant-device unmap notification (gntdev/gntalloc `UNMAP_NOTIFY_CLEAR_BYTE |
 * UNMAP_NOTIFY_SEND_EVENT`): when the page goes, byte `offset` of it is set to 0 and the domain
 * signals `port`. libxenvchan puts its live bytes here so that a peer that dies is noticed.
 */
export interface UnmapNotify {
  readonly offset: number;
  readonly port: number;
}

// act->pin: four 8-bit counters in one word, as Xen.
const PIN = { hstw: 1 << 0, hstr: 1 << 8, devw: 1 << 16, devr: 1 << 24 } as const;
const PIN_WRITE_MASK = 0xff * PIN.hstw + 0xff * PIN.devw;
/** Bounded CMPXCHG retries on the shared word (Xen: 5 tries). */
const SET_STATUS_TRIES = 5;
const MAPTRACK_PER_PAGE = 256;

/** Xen's `active_grant_entry`: the hypervisor's private shadow of a pinned entry. */
interface Active {
  pin: number;
  /** The domain the entry is pinned by. */
  readonly domid: number;
  /** The page resolved at first pin; later pins reuse it even if the guest rewrites `frame`. */
  readonly gfn: number;
  readonly page: SharedArrayBuffer;
}

/** A granting domain's hypervisor-side state. */
interface Granter {
  readonly domain: GrantDomain;
  readonly table: GrantTableFrames;
  readonly active: Map<number, Active>;
}

interface Mapping {
  readonly granter: Granter;
  readonly ref: number;
  readonly flags: number;
  notify?: UnmapNotify;
}

/** A page a domain shares with an unmap notification armed (gntalloc's side). */
interface Share {
  readonly gfn: number;
  readonly notify: UnmapNotify;
}

/**
 * One domain's maptrack: handle → mapping. Handles are small integers, handed out a page (256) at
 * a time; a freed handle goes to the tail of the free list (as Xen's `put_maptrack_handle`), so a
 * stale handle is not at once reused.
 */
class Maptrack {
  readonly entries: (Mapping | undefined)[] = [];
  #free: number[] = [];
  #head = 0;
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** A free handle, or -1 when the limit is reached. */
  get(): number {
    if (this.#head === this.#free.length) {
      const base = this.entries.length;
      if (base >= this.#limit) return -1;
      const n = Math.min(MAPTRACK_PER_PAGE, this.#limit - base);
      for (let h = base; h < base + n; h++) this.#free.push(h);
      this.entries.length = base + n;
    }
    const h = this.#free[this.#head++]!;
    if (this.#head > 1024 && this.#head * 2 > this.#free.length) {
      this.#free = this.#free.slice(this.#head);
      this.#head = 0;
    }
    return h;
  }

  put(handle: number): void {
    this.entries[handle] = undefined;
    this.#free.push(handle);
  }
}

/**
 * The hypervisor's grant operations over every domain's grant tables. `lookup` gives the live
 * domains; all hypervisor-side state (active entries, maptracks) lives here.
 *
 * A mapping keeps its granter's state alive: unmapping works after the granter has left
 * `lookup` (Xen keeps a dying domain as a zombie until the last foreign mapping goes). The
 * toolstack destroys a domain with `releaseMappings(domid)` (what it mapped) and keeps its pages
 * until `usesOf(domid)` is empty (what others map); it must not reuse the domid before.
 *
 * Unmap notifications. In Linux the grant devices of the dying process's own kernel fire them
 * (gntdev when a mapping goes, gntalloc when a shared page is freed), so they fire on a process's
 * crash but not when Xen destroys the whole domain. In xenlab a peer's death is its domain's
 * destruction, so the hypervisor keeps them: a mapping's fires on its unmap, explicit or by
 * `releaseMappings()`; a share's fires on `endShareNotify(…, true)` or `releaseShares()`, which
 * the hypervisor calls before it closes the dying domain's event channels.
 */
export class GrantTables {
  readonly #lookup: DomainLookup;
  readonly #granters = new WeakMap<GrantDomain, Granter>();
  /** Granters with at least one pinned entry; found by domid even after they left `lookup`. */
  readonly #inUse = new Set<Granter>();
  readonly #maptracks = new Map<number, Maptrack>();
  readonly #maxHandles: number;
  readonly #sendEvent: (domid: number, port: number) => void;
  /** Shares with a notification, by granting domid, then ref. */
  readonly #shares = new Map<number, Map<number, Share>>();

  constructor(lookup: DomainLookup, options: GrantTablesOptions = {}) {
    this.#lookup = lookup;
    this.#maxHandles = options.maxMaptrackHandles ?? 1024 * MAPTRACK_PER_PAGE;
    this.#sendEvent = options.sendEvent ?? (() => {});
  }

  /**
   * `GNTTABOP_map_grant_ref` by domain `mapper`. Checks, in Xen's order: a host or device map is
   * asked for (else bad_gntref); the granter exists (bad_domain); a maptrack handle is free
   * (no_space); the ref is inside the table (bad_gntref); an entry already pinned is pinned by
   * this mapper and its counter will not overflow (general_error); then, unless already pinned
   * suitably, the entry permits access to this mapper, writable if asked (general_error), and its
   * gfn is a page of the granter (bad_page).
   */
  mapGrantRef(mapper: number, op: MapGrantRef): MapResult {
    checkU16("mapper domid", mapper);
    checkU32("map flags", op.flags);
    checkU32("grant ref", op.ref);
    checkU16("granting domid", op.dom);
    const ro = (op.flags & GNTMAP.readonly) !== 0;
    let incr = 0;
    if (op.flags & GNTMAP.device_map) incr += ro ? PIN.devr : PIN.devw;
    if (op.flags & GNTMAP.host_map) incr += ro ? PIN.hstr : PIN.hstw;
    if (incr === 0) return { status: GNTST.bad_gntref };

    const rd = this.#lookup(op.dom);
    if (rd === undefined) return { status: GNTST.bad_domain };
    const mt = this.#maptrack(mapper);
    const handle = mt.get();
    if (handle < 0) return { status: GNTST.no_space };

    const g = this.#granter(rd);
    const result = this.#pin(g, op.ref, mapper, ro, incr, true);
    if (typeof result === "number") {
      mt.put(handle);
      return { status: result };
    }
    mt.entries[handle] = { granter: g, ref: op.ref, flags: op.flags };
    return { status: GNTST.okay, handle, page: result.page, readonly: ro, gfn: result.gfn };
  }

  /** `GNTTABOP_unmap_grant_ref` of `handle` by domain `mapper`: drops the whole mapping. */
  unmapGrantRef(mapper: number, handle: number): GrantStatus {
    const mt = this.#maptracks.get(mapper);
    if (mt === undefined || !Number.isInteger(handle) || handle < 0) return GNTST.bad_handle;
    const m = mt.entries[handle];
    if (m === undefined) return GNTST.bad_handle;
    const ro = (m.flags & GNTMAP.readonly) !== 0;
    let decr = 0;
    if (m.flags & GNTMAP.device_map) decr += ro ? PIN.devr : PIN.devw;
    if (m.flags & GNTMAP.host_map) decr += ro ? PIN.hstr : PIN.hstw;
    if (m.notify !== undefined) {
      // gntdev's unmap_grant_pages: clear the byte while the page is still ours, then signal.
      const act = m.granter.active.get(m.ref);
      if (act !== undefined) Atomics.store(pageBytes(act.page), m.notify.offset, 0);
      this.#sendEvent(mapper, m.notify.port);
    }
    this.#unpin(m.granter, m.ref, ro, decr);
    mt.put(handle);
    return GNTST.okay;
  }

  /**
   * gntdev's IOCTL_GNTDEV_SET_UNMAP_NOTIFY on `mapper`'s mapping `handle`: on unmap (or the
   * mapper's death) byte `offset` of the page becomes 0 and `mapper` signals its `port`. The
   * mapping must be writable (Linux: EINVAL for a read-only one). Replaces an earlier one.
   */
  setUnmapNotify(mapper: number, handle: number, notify: UnmapNotify): GrantStatus {
    checkNotify(notify);
    const m = this.#maptracks.get(mapper)?.entries[handle];
    if (m === undefined) return GNTST.bad_handle;
    if ((m.flags & GNTMAP.readonly) !== 0) return GNTST.general_error;
    m.notify = notify;
    return GNTST.okay;
  }

  /**
   * gntalloc's IOCTL_GNTALLOC_SET_UNMAP_NOTIFY on `granter`'s own page of grant `ref`: when the
   * share ends (endShareNotify with fire) or the granter dies, byte `offset` of the page becomes 0
   * and the granter signals its `port`.
   */
  setShareNotify(granter: number, ref: number, notify: UnmapNotify): GrantStatus {
    checkNotify(notify);
    const d = this.#lookup(granter);
    if (d === undefined) return GNTST.bad_domain;
    const g = this.#granter(d);
    if (ref >= g.table.nrEntries) return GNTST.bad_gntref;
    const gfn = g.table.frame(ref);
    if (d.pages[gfn] === undefined) return GNTST.bad_page;
    const m = this.#shares.get(granter) ?? new Map<number, Share>();
    this.#shares.set(granter, m);
    m.set(ref, { gfn, notify });
    return GNTST.okay;
  }

  /** Drops `granter`'s notification on `ref`, firing it first when `fire` (the share is freed). */
  endShareNotify(granter: number, ref: number, fire: boolean): GrantStatus {
    const s = this.#shares.get(granter)?.get(ref);
    if (s === undefined) return GNTST.bad_gntref;
    this.#shares.get(granter)!.delete(ref);
    if (fire) this.#fireShare(granter, s);
    return GNTST.okay;
  }

  /** Fires and forgets every share notification of `granter` (at its destruction). */
  releaseShares(granter: number): number {
    const m = this.#shares.get(granter);
    if (m === undefined) return 0;
    this.#shares.delete(granter);
    for (const s of m.values()) this.#fireShare(granter, s);
    return m.size;
  }

  #fireShare(granter: number, s: Share): void {
    const page = this.#lookup(granter)?.pages[s.gfn];
    if (page !== undefined) Atomics.store(pageBytes(page), s.notify.offset, 0);
    this.#sendEvent(granter, s.notify.port);
  }

  /**
   * `GNTTABOP_copy` by domain `caller`: `len` bytes from source to dest. A side is a grant ref of
   * `domid`'s table (flag GNTCOPY_*_gref) or a gfn of the caller, named DOMID_SELF (any other domid
   * → permission_denied). Order as Xen: len 0 → okay; the domains (permission_denied,
   * bad_domain); the source grant, read (bad_gntref, general_error, bad_page); the dest grant,
   * write; then offset + len inside the page (bad_copy_arg). The grants are pinned only for the
   * copy (GTF_reading/GTF_writing set and cleared around it).
   */
  copy(caller: number, op: GrantCopy): GrantStatus {
    checkU16("caller domid", caller);
    const len = checkU16("copy len", op.len);
    const flags = checkU16("copy flags", op.flags);
    for (const p of [op.source, op.dest]) {
      checkU16("copy domid", p.domid);
      checkU16("copy offset", p.offset);
      if (!Number.isSafeInteger(p.u) || p.u < 0) throw new RangeError(`Invalid copy ref or gfn: ${p.u}`);
    }
    if (len === 0) return GNTST.okay;

    const srcGref = (flags & GNTCOPY.source_gref) !== 0;
    const dstGref = (flags & GNTCOPY.dest_gref) !== 0;
    const sd = this.#copyDomain(caller, op.source.domid, srcGref);
    if (typeof sd === "number") return sd;
    const dd = this.#copyDomain(caller, op.dest.domid, dstGref);
    if (typeof dd === "number") return dd;

    const src = this.#claim(caller, sd, op.source.u, srcGref, true);
    if (typeof src === "number") return src;
    const dst = this.#claim(caller, dd, op.dest.u, dstGref, false);
    if (typeof dst === "number") {
      src.release();
      return dst;
    }
    let rc: GrantStatus = GNTST.okay;
    if (op.source.offset + len > XEN_PAGE_SIZE || op.dest.offset + len > XEN_PAGE_SIZE) {
      rc = GNTST.bad_copy_arg;
    } else {
      const from = new Uint8Array(src.page, op.source.offset, len);
      new Uint8Array(dst.page, op.dest.offset, len).set(from);
    }
    dst.release();
    src.release();
    return rc;
  }

  /**
   * Unmaps everything domain `mapper` has mapped (Xen's `gnttab_release_mappings`, at domain
   * destruction) and forgets its maptrack. Returns the number of mappings released.
   */
  releaseMappings(mapper: number): number {
    const mt = this.#maptracks.get(mapper);
    if (mt === undefined) return 0;
    let n = 0;
    for (let h = 0; h < mt.entries.length; h++) {
      if (mt.entries[h] !== undefined) {
        this.unmapGrantRef(mapper, h);
        n++;
      }
    }
    this.#maptracks.delete(mapper);
    return n;
  }

  /** The grants of `granter` that are mapped now (by anyone, itself included). */
  usesOf(granter: number): GrantUse[] {
    const out: GrantUse[] = [];
    for (const g of this.#inUse) {
      if (g.domain.domid !== granter) continue;
      for (const [ref, act] of g.active) {
        out.push({ granter, ref, mapper: act.domid, gfn: act.gfn, pins: pinCounts(act.pin) });
      }
    }
    return out;
  }

  /** The grants that domain `mapper` holds mapped, by handle. */
  mappingsBy(mapper: number): { handle: number; granter: number; ref: number; flags: number }[] {
    const mt = this.#maptracks.get(mapper);
    const out: { handle: number; granter: number; ref: number; flags: number }[] = [];
    mt?.entries.forEach((m, handle) => {
      if (m !== undefined) out.push({ handle, granter: m.granter.domain.domid, ref: m.ref, flags: m.flags });
    });
    return out;
  }

  /** Pin counts of `granter`'s `ref`, or undefined when it is not pinned. */
  pinsOf(granter: number, ref: number): PinCounts | undefined {
    const use = this.usesOf(granter).find((u) => u.ref === ref);
    return use?.pins;
  }

  #maptrack(domid: number): Maptrack {
    let mt = this.#maptracks.get(domid);
    if (mt === undefined) {
      mt = new Maptrack(this.#maxHandles);
      this.#maptracks.set(domid, mt);
    }
    return mt;
  }

  #granter(d: GrantDomain): Granter {
    let g = this.#granters.get(d);
    if (g === undefined) {
      g = { domain: d, table: new GrantTableFrames(d.grantFrames), active: new Map() };
      this.#granters.set(d, g);
    }
    return g;
  }

  /**
   * Pins `ref` of `g` for `ldom` (map_grant_ref's and acquire_grant_for_copy's common core).
   * Returns the active entry or an error status, having undone any flag it set.
   */
  #pin(
    g: Granter,
    ref: number,
    ldom: number,
    ro: boolean,
    incr: number,
    mapflag: boolean,
  ): Active | GrantError {
    if (ref >= g.table.nrEntries) return GNTST.bad_gntref;
    let act = g.active.get(ref);
    const pin = act?.pin ?? 0;
    if (act !== undefined && (act.domid !== ldom || (pin & (incr << 7)) !== 0)) return GNTST.general_error;
    if (act === undefined || (!ro && (pin & PIN_WRITE_MASK) === 0)) {
      const rc = setStatus(g.table, ref, act !== undefined, ro, mapflag, ldom);
      if (rc !== GNTST.okay) return rc;
      if (act === undefined) {
        const gfn = g.table.frame(ref);
        const page = g.domain.pages[gfn];
        if (page === undefined) {
          reduceStatusForPin(g.table, ref, 0, ro);
          return GNTST.bad_page;
        }
        act = { pin: 0, domid: ldom, gfn, page };
        g.active.set(ref, act);
        this.#inUse.add(g);
      }
    }
    act.pin += incr;
    return act;
  }

  #unpin(g: Granter, ref: number, ro: boolean, decr: number): void {
    const act = g.active.get(ref);
    if (act === undefined)
      throw new Error(`Grant state corrupt: d${g.domain.domid} ref ${ref} is not pinned`);
    act.pin -= decr;
    reduceStatusForPin(g.table, ref, act.pin, ro);
    if (act.pin === 0) {
      g.active.delete(ref);
      if (g.active.size === 0) this.#inUse.delete(g);
    }
  }

  /** `gnttab_copy_lock_domain`. */
  #copyDomain(caller: number, domid: number, isGref: boolean): GrantDomain | GrantError {
    if (domid !== DOMID_SELF && !isGref) return GNTST.permission_denied;
    const d = this.#lookup(domid === DOMID_SELF ? caller : domid);
    return d ?? GNTST.bad_domain;
  }

  /** `gnttab_copy_claim_buf`: the page of one side of a copy, pinned if it is a grant. */
  #claim(
    caller: number,
    d: GrantDomain,
    u: number,
    isGref: boolean,
    ro: boolean,
  ): { page: SharedArrayBuffer; release: () => void } | GrantError {
    if (!isGref) {
      const page = d.pages[u];
      return page === undefined ? GNTST.bad_page : { page, release: () => {} };
    }
    if (u > 0xffffffff) return GNTST.bad_gntref;
    const g = this.#granter(d);
    const incr = ro ? PIN.hstr : PIN.hstw;
    const act = this.#pin(g, u, caller, ro, incr, false);
    if (typeof act === "number") return act;
    return { page: act.page, release: () => this.#unpin(g, u, ro, incr) };
  }
}

/**
 * `_set_status_v1`: add GTF_reading (and GTF_writing unless `ro`) to the entry's word with
 * CMPXCHG. Unless the entry is already pinned, its type must be permit_access (and not sub_page
 * for a map) and its domid the mapper; a write needs !GTF_readonly. The guest may race us; after
 * 5 failed CMPXCHGs the entry is taken as unstable.
 */
function setStatus(
  table: GrantTableFrames,
  ref: number,
  pinned: boolean,
  ro: boolean,
  mapflag: boolean,
  ldom: number,
): GrantStatus {
  const w = table.words(ref);
  const i = wordIndex(ref);
  const mask = GTF.type_mask | (mapflag ? GTF.sub_page : 0);
  let cur = Atomics.load(w, i);
  for (let tries = 1; ; tries++) {
    const flags = cur & 0xffff;
    if (!pinned && ((flags & mask) !== GTF.permit_access || cur >>> 16 !== ldom)) return GNTST.general_error;
    let next = cur | GTF.reading;
    if (!ro) {
      if (flags & GTF.readonly) return GNTST.general_error;
      next |= GTF.writing;
    }
    const prev = Atomics.compareExchange(w, i, cur, next);
    if (prev === cur) return GNTST.okay;
    if (tries === SET_STATUS_TRIES) return GNTST.general_error;
    cur = prev;
  }
}

/** `reduce_status_for_pin`: clear GTF_reading when unpinned, GTF_writing when no writer is left. */
function reduceStatusForPin(table: GrantTableFrames, ref: number, pin: number, ro: boolean): void {
  let clear = pin === 0 ? GTF.reading : 0;
  if (!ro && (pin & PIN_WRITE_MASK) === 0) clear |= GTF.writing;
  if (clear !== 0) Atomics.and(table.words(ref), wordIndex(ref), ~clear);
}

function checkNotify(n: UnmapNotify): void {
  if (!Number.isInteger(n.offset) || n.offset < 0 || n.offset >= XEN_PAGE_SIZE)
    throw new RangeError(
      `Invalid unmap-notify offset: ${n.offset} (a byte of the page, 0..${XEN_PAGE_SIZE - 1})`,
    );
  checkU32("unmap-notify port", n.port);
}

function pinCounts(pin: number): PinCounts {
  return {
    hostWrite: pin & 0xff,
    hostRead: (pin >>> 8) & 0xff,
    devWrite: (pin >>> 16) & 0xff,
    devRead: (pin >>> 24) & 0xff,
  };
}
