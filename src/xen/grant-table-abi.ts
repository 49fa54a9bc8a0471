/**
 * Grant tables, version 1: the ABI both sides share (Xen's `public/grant_table.h`).
 *
 * A domain shares one of its pages with one other domain by writing a `grant_entry_v1` into its
 * grant table: 8 bytes, `flags` u16 @0, `domid` u16 @2 (the grantee), `frame` u32 @4 (the gfn),
 * little endian, 512 per 4 KiB frame. Two sides touch these frames:
 *
 * - The granting domain's kernel (src/kernel/grant-table.ts, as Linux's
 *   `drivers/xen/grant-table.c`): grant, end and query access, and the ref allocator. It runs in
 *   the domain's worker on its own frames.
 * - The hypervisor (src/hv/grant-table.ts, main thread, as Xen's `common/grant_table.c`): map,
 *   unmap and copy.
 *
 * This file holds what both use: the entry and op layouts (checked against `grant_table.h` with
 * gcc in test/hv/grant-layout.test.ts), the flags and status codes, and `GrantTableFrames`, the
 * frames as 32-bit words.
 *
 * The (flags, domid) pair is one 32-bit word: flags in the low 16 bits, domid in the high 16 (an
 * `Int32Array` is native endian, and every platform Node runs on here is little endian, as the
 * entry is). Every access to it is an `Atomics` operation on that `Int32Array`: the guest
 * publishes with a release store and revokes with CMPXCHG; the hypervisor sets GTF_reading /
 * GTF_writing with CMPXCHG (at most 5 tries: a guest rewriting its entry in a loop must not
 * livelock the hypervisor) and clears them with an atomic AND, as Xen does.
 *
 */
import { XEN_PAGE_SIZE as PAGE_SIZE } from "./xen.ts";

/** `struct grant_entry_v1`: byte offsets and size. */
export const GRANT_ENTRY_V1 = { flags: 0, domid: 2, frame: 4, size: 8 } as const;

/** Entries of one 4 KiB grant frame. */
export const GRANT_ENTRIES_PER_FRAME = PAGE_SIZE / GRANT_ENTRY_V1.size;

/** `GNTTAB_NR_RESERVED_ENTRIES` and the two refs the toolstack pre-populates. */
export const GNTTAB_RESERVED = { entries: 8, console: 0, xenstore: 1 } as const;

/** `GTF_*`: the entry's flags. Type in bits 0–1, subflags above. */
export const GTF = {
  invalid: 0,
  permit_access: 1,
  accept_transfer: 2,
  transitive: 3,
  type_mask: 3,
  /** Grantee may only read. [guest] */
  readonly: 1 << 2,
  /** Mapped or being copied from by the grantee. [Xen] */
  reading: 1 << 3,
  /** Mapped writable or being copied to by the grantee. [Xen] */
  writing: 1 << 4,
  PWT: 1 << 5,
  PCD: 1 << 6,
  PAT: 1 << 7,
  /** Copy-only access to part of the page (v2 entries; a v1 map refuses it). */
  sub_page: 1 << 8,
  /** accept_transfer subflags. */
  transfer_committed: 1 << 2,
  transfer_completed: 1 << 3,
} as const;

/** `GNTMAP_*`: flags of a map request. */
export const GNTMAP = {
  device_map: 1 << 0,
  host_map: 1 << 1,
  readonly: 1 << 2,
  application_map: 1 << 3,
  contains_pte: 1 << 4,
  guest_avail_mask: 0xffff0000,
} as const;

/** `GNTCOPY_*`: which side of a copy is a grant ref (otherwise a gfn of the caller). */
export const GNTCOPY = { source_gref: 1 << 0, dest_gref: 1 << 1 } as const;

/** `GNTTABOP_*`: the grant table hypercall's commands. */
export const GNTTABOP = {
  map_grant_ref: 0,
  unmap_grant_ref: 1,
  setup_table: 2,
  dump_table: 3,
  transfer: 4,
  copy: 5,
  query_size: 6,
  unmap_and_replace: 7,
  set_version: 8,
  get_status_frames: 9,
  get_version: 10,
  swap_grant_ref: 11,
  cache_flush: 12,
} as const;

/** `GNTST_*`: per-operation status, Xen's numbers. */
export const GNTST = {
  okay: 0,
  general_error: -1,
  bad_domain: -2,
  bad_gntref: -3,
  bad_handle: -4,
  bad_virt_addr: -5,
  bad_dev_addr: -6,
  no_device_space: -7,
  permission_denied: -8,
  bad_page: -9,
  bad_copy_arg: -10,
  address_too_big: -11,
  eagain: -12,
  no_space: -13,
} as const;

export type GrantStatus = (typeof GNTST)[keyof typeof GNTST];
export type GrantError = Exclude<GrantStatus, 0>;

/** `GNTTABOP_error_msgs`, indexed by `-status`. */
export const GNTST_MESSAGES = [
  "okay",
  "undefined error",
  "unrecognised domain id",
  "invalid grant reference",
  "invalid mapping handle",
  "invalid virtual address",
  "invalid device address",
  "no spare translation slot in the I/O MMU",
  "permission denied",
  "bad page",
  "copy arguments cross page boundary",
  "page address size too large",
  "operation not done; try again",
  "out of space",
] as const;

/** `struct gnttab_map_grant_ref` (32 bytes): byte offsets. */
export const GNTTAB_MAP_GRANT_REF = {
  hostAddr: 0,
  flags: 8,
  ref: 12,
  dom: 16,
  status: 18,
  handle: 20,
  devBusAddr: 24,
  size: 32,
} as const;

/** `struct gnttab_unmap_grant_ref` (24 bytes): byte offsets. */
export const GNTTAB_UNMAP_GRANT_REF = {
  hostAddr: 0,
  devBusAddr: 8,
  handle: 16,
  status: 20,
  size: 24,
} as const;

/**
 * `struct gnttab_copy` (40 bytes): byte offsets. `source` and `dest` are each a
 * `struct gnttab_copy_ptr` (16 bytes): the union `u` (ref u32 or gmfn u64) @0, domid @8, offset @10.
 */
export const GNTTAB_COPY = {
  source: 0,
  dest: 16,
  ptr: { u: 0, domid: 8, offset: 10, size: 16 },
  len: 32,
  flags: 34,
  status: 36,
  size: 40,
} as const;

// ---------------------------------------------------------------------------------------------
// The shared frames

/**
 * The grant frames of one domain, as the guest and the hypervisor both see them. Each frame is its
 * own `SharedArrayBuffer(4096)`; the array may grow (more frames, more refs) but frames never move.
 */
export class GrantTableFrames {
  readonly #frames: readonly SharedArrayBuffer[];
  readonly #words: Int32Array[] = [];

  constructor(frames: readonly SharedArrayBuffer[]) {
    this.#frames = frames;
  }

  /** Number of entries (refs 0 … nrEntries-1). */
  get nrEntries(): number {
    return this.#frames.length * GRANT_ENTRIES_PER_FRAME;
  }

  /**
   * The frame holding `ref` as 32-bit words: `[i]` is its (flags | domid << 16) word, `[i + 1]`
   * its frame (gfn), where `i = wordIndex(ref)`. The caller has checked `ref < nrEntries`.
   */
  words(ref: number): Int32Array {
    const f = ref >>> 9;
    let w = this.#words[f];
    if (w === undefined) {
      const sab = this.#frames[f];
      if (sab === undefined) throw new RangeError(`Cannot access grant ref ${ref}: no frame ${f}`);
      if (sab.byteLength !== PAGE_SIZE) {
        throw new RangeError(`Cannot use grant frame ${f}: need ${PAGE_SIZE} bytes, got ${sab.byteLength}`);
      }
      w = new Int32Array(sab);
      this.#words[f] = w;
    }
    return w;
  }

  /** The GTF_* flags of `ref` (one atomic load). */
  flags(ref: number): number {
    return Atomics.load(this.words(checkRef(this, ref)), wordIndex(ref)) & 0xffff;
  }

  /** The grantee domid of `ref`. */
  domid(ref: number): number {
    return Atomics.load(this.words(checkRef(this, ref)), wordIndex(ref)) >>> 16;
  }

  /** The gfn of `ref`. */
  frame(ref: number): number {
    return Atomics.load(this.words(checkRef(this, ref)), wordIndex(ref) + 1) >>> 0;
  }
}

/** Index of the (flags, domid) word of `ref` in `GrantTableFrames.words(ref)`. */
export function wordIndex(ref: number): number {
  return (ref & (GRANT_ENTRIES_PER_FRAME - 1)) * 2;
}

export function checkRef(table: GrantTableFrames, ref: number): number {
  if (!Number.isInteger(ref) || ref < 0 || ref >= table.nrEntries) {
    throw new RangeError(`Cannot use grant ref ${ref}: the table has ${table.nrEntries} entries`);
  }
  return ref;
}

export function checkU16(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`Invalid ${what}: ${v}`);
  return v;
}

export function checkU32(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`Invalid ${what}: ${v}`);
  return v;
}

/**
 * `gnttab_grant_foreign_access_ref`: let `domid` map or copy gfn `gfn`. The frame goes out first;
 * flags and domid follow in one 32-bit release store, so whoever sees GTF_permit_access sees the
 * frame (Linux: frame, domid, wmb, flags — the same publication order). The guest kernel grants
 * through it, and so does the domain builder for the console and XenStore refs (libxc's
 * `xc_dom_gnttab_seed`).
 */
export function grantForeignAccess(
  table: GrantTableFrames,
  ref: number,
  domid: number,
  gfn: number,
  readonly: boolean,
): void {
  checkRef(table, ref);
  checkU16("domid", domid);
  checkU32("gfn", gfn);
  const w = table.words(ref);
  const i = wordIndex(ref);
  Atomics.store(w, i + 1, gfn | 0);
  Atomics.store(w, i, (domid << 16) | GTF.permit_access | (readonly ? GTF.readonly : 0));
}
