/**
 * The blkif wire format (Xen's `io/blkif.h`, x86_64 ABI, "x86_64-abi"): request and response
 * codecs, the indirect segment page, and the protocol's constants. Pure: bytes in, typed values
 * out. Checked byte for byte against the C structs by test/blk/blkif-diff.test.ts (gcc against
 * /usr/include/xen/io/blkif.h).
 *
 * Layouts (offsets in bytes; a ring entry is the 112-byte union):
 *
 *   blkif_request           operation u8 @0, nr_segments u8 @1, handle u16 @2, id u64 @8,
 *                           sector_number u64 @16, seg[11] @24 (gref u32, first_sect u8,
 *                           last_sect u8, 2 bytes padding)                             112 bytes
 *   blkif_request_discard   operation @0, flag u8 @1, handle @2, id @8, sector_number @16,
 *                           nr_sectors u64 @24                                          32 bytes
 *   blkif_request_indirect  operation @0, indirect_op u8 @1, nr_segments u16 @2, id @8,
 *                           sector_number @16, handle u16 @24, indirect_grefs[8] u32 @28 64 bytes
 *   blkif_response          id u64 @0, operation u8 @8, status i16 @10                   16 bytes
 *
 * `sector_number` and `nr_sectors` are always in 512-byte units, whatever `sector-size` says.
 * 64-bit fields decode as bigint so a hostile value is seen exactly; ids are echoed unchanged.
 */

/** Size of `union blkif_sring_entry`: 32 entries in a one-page ring. */
export const BLKIF_ENTRY_SIZE = 112;

/** `BLKIF_OP_*`. */
export const BLKIF_OP = {
  read: 0,
  write: 1,
  writeBarrier: 2,
  flushDiskcache: 3,
  reserved1: 4,
  discard: 5,
  indirect: 6,
} as const;

/** `BLKIF_RSP_*`. */
export const BLKIF_RSP = { okay: 0, error: -1, eopnotsupp: -2 } as const;

/** The `info` bits (`VDISK_*`). */
export const VDISK = { cdrom: 0x1, removable: 0x2, readonly: 0x4 } as const;

export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;
/** Segment descriptors in one indirect page (4096 / 8). */
export const SEGS_PER_INDIRECT_FRAME = 512;
/** `BLKIF_DISCARD_SECURE`, the discard request's `flag`. */
export const BLKIF_DISCARD_SECURE = 1;
/** 512-byte sectors in one 4 KiB page: `last_sect` is at most 7. */
export const SECTORS_PER_PAGE = 8;

/** `XEN_IO_PROTO_ABI_NATIVE` on x86_64 (io/protocols.h). */
export const XEN_IO_PROTO_ABI_NATIVE = "x86_64-abi";

/** `struct blkif_request` (112 bytes, 8-byte aligned). */
export const BLKIF_REQUEST = {
  size: 112,
  operation: 0,
  nrSegments: 1,
  handle: 2,
  id: 8,
  sectorNumber: 16,
  /** First `struct blkif_request_segment`. */
  seg: 24,
  maxSegments: 11,
} as const;

/** `struct blkif_request_segment` (8 bytes), relative to its start. */
export const BLKIF_SEGMENT = {
  size: 8,
  gref: 0,
  firstSect: 4,
  lastSect: 5,
} as const;

/** `struct blkif_request_discard`. */
export const BLKIF_REQUEST_DISCARD = {
  size: 32,
  operation: 0,
  flag: 1,
  handle: 2,
  id: 8,
  sectorNumber: 16,
  nrSectors: 24,
} as const;

/** `struct blkif_request_indirect`. */
export const BLKIF_REQUEST_INDIRECT = {
  size: 64,
  operation: 0,
  indirectOp: 1,
  nrSegments: 2,
  id: 8,
  sectorNumber: 16,
  handle: 24,
  indirectGrefs: 28,
} as const;

/** `struct blkif_response` (16 bytes). */
export const BLKIF_RESPONSE = {
  size: 16,
  id: 0,
  operation: 8,
  status: 10,
} as const;

/** `struct blkif_request_segment`. */
export interface BlkifSegment {
  gref: number;
  firstSect: number;
  lastSect: number;
}

/** READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE: `struct blkif_request`. */
export interface BlkifRwRequest {
  readonly operation: 0 | 1 | 2 | 3;
  readonly nrSegments: number;
  readonly handle: number;
  readonly id: bigint;
  readonly sectorNumber: bigint;
  /** The first min(nrSegments, 11) segments. */
  readonly seg: readonly BlkifSegment[];
}

/** DISCARD: `struct blkif_request_discard`. */
export interface BlkifDiscardRequest {
  readonly operation: 5;
  readonly flag: number;
  readonly handle: number;
  readonly id: bigint;
  readonly sectorNumber: bigint;
  readonly nrSectors: bigint;
}

/** INDIRECT: `struct blkif_request_indirect`. */
export interface BlkifIndirectRequest {
  readonly operation: 6;
  readonly indirectOp: number;
  readonly nrSegments: number;
  readonly id: bigint;
  readonly sectorNumber: bigint;
  readonly handle: number;
  /** All 8 refs as on the wire; only the first ceil(nrSegments / 512) are meaningful. */
  readonly indirectGrefs: readonly number[];
}

/** Any other operation: only `id` is known (the response echoes it). */
export interface BlkifOtherRequest {
  readonly operation: number;
  readonly id: bigint;
}

export type BlkifRequest = BlkifRwRequest | BlkifDiscardRequest | BlkifIndirectRequest | BlkifOtherRequest;

/** `struct blkif_response`. */
export interface BlkifResponse {
  readonly id: bigint;
  readonly operation: number;
  readonly status: number;
}

function viewOf(b: Uint8Array, need: number, what: string): DataView {
  if (b.byteLength < need) throw new RangeError(`Cannot ${what}: need ${need} bytes, got ${b.byteLength}`);
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function isRw(r: BlkifRequest): r is BlkifRwRequest {
  return r.operation <= BLKIF_OP.flushDiskcache;
}
export function isDiscard(r: BlkifRequest): r is BlkifDiscardRequest {
  return r.operation === BLKIF_OP.discard;
}
export function isIndirect(r: BlkifRequest): r is BlkifIndirectRequest {
  return r.operation === BLKIF_OP.indirect;
}

/**
 * Decodes a request from a private copy of a ring entry (never from the shared slot: the frontend
 * can change it between two reads).
 */
export function decodeRequest(b: Uint8Array): BlkifRequest {
  const v = viewOf(b, BLKIF_ENTRY_SIZE, "decode blkif request");
  const operation = v.getUint8(0);
  const id = v.getBigUint64(BLKIF_REQUEST.id, true);
  if (operation <= BLKIF_OP.flushDiskcache) {
    const nrSegments = v.getUint8(BLKIF_REQUEST.nrSegments);
    const n = Math.min(nrSegments, BLKIF_MAX_SEGMENTS_PER_REQUEST);
    const seg: BlkifSegment[] = [];
    for (let i = 0; i < n; i++) {
      const o = BLKIF_REQUEST.seg + i * BLKIF_SEGMENT.size;
      seg.push({
        gref: v.getUint32(o + BLKIF_SEGMENT.gref, true),
        firstSect: v.getUint8(o + BLKIF_SEGMENT.firstSect),
        lastSect: v.getUint8(o + BLKIF_SEGMENT.lastSect),
      });
    }
    return {
      operation: operation as 0 | 1 | 2 | 3,
      nrSegments,
      handle: v.getUint16(BLKIF_REQUEST.handle, true),
      id,
      sectorNumber: v.getBigUint64(BLKIF_REQUEST.sectorNumber, true),
      seg,
    };
  }
  if (operation === BLKIF_OP.discard) {
    const D = BLKIF_REQUEST_DISCARD;
    return {
      operation,
      flag: v.getUint8(D.flag),
      handle: v.getUint16(D.handle, true),
      id,
      sectorNumber: v.getBigUint64(D.sectorNumber, true),
      nrSectors: v.getBigUint64(D.nrSectors, true),
    };
  }
  if (operation === BLKIF_OP.indirect) {
    const I = BLKIF_REQUEST_INDIRECT;
    const indirectGrefs: number[] = [];
    for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) {
      indirectGrefs.push(v.getUint32(I.indirectGrefs + 4 * i, true));
    }
    return {
      operation,
      indirectOp: v.getUint8(I.indirectOp),
      nrSegments: v.getUint16(I.nrSegments, true),
      id,
      sectorNumber: v.getBigUint64(I.sectorNumber, true),
      handle: v.getUint16(I.handle, true),
      indirectGrefs,
    };
  }
  return { operation, id };
}

/**
 * Encodes a request into `out` (a 112-byte scratch entry, zeroed first so padding is 0), to be
 * written into the ring with SharedRing.write().
 */
export function encodeRequest(out: Uint8Array, r: BlkifRequest): Uint8Array {
  const v = viewOf(out, BLKIF_ENTRY_SIZE, "encode blkif request");
  out.fill(0, 0, BLKIF_ENTRY_SIZE);
  v.setUint8(0, r.operation);
  v.setBigUint64(BLKIF_REQUEST.id, r.id, true);
  if (isRw(r)) {
    v.setUint8(BLKIF_REQUEST.nrSegments, r.nrSegments);
    v.setUint16(BLKIF_REQUEST.handle, r.handle, true);
    v.setBigUint64(BLKIF_REQUEST.sectorNumber, r.sectorNumber, true);
    if (r.seg.length > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
      throw new RangeError(`Cannot encode request: ${r.seg.length} segments, at most 11 fit`);
    }
    for (let i = 0; i < r.seg.length; i++) {
      const s = r.seg[i]!;
      const o = BLKIF_REQUEST.seg + i * BLKIF_SEGMENT.size;
      v.setUint32(o + BLKIF_SEGMENT.gref, s.gref, true);
      v.setUint8(o + BLKIF_SEGMENT.firstSect, s.firstSect);
      v.setUint8(o + BLKIF_SEGMENT.lastSect, s.lastSect);
    }
  } else if (isDiscard(r)) {
    const D = BLKIF_REQUEST_DISCARD;
    v.setUint8(D.flag, r.flag);
    v.setUint16(D.handle, r.handle, true);
    v.setBigUint64(D.sectorNumber, r.sectorNumber, true);
    v.setBigUint64(D.nrSectors, r.nrSectors, true);
  } else if (isIndirect(r)) {
    const I = BLKIF_REQUEST_INDIRECT;
    v.setUint8(I.indirectOp, r.indirectOp);
    v.setUint16(I.nrSegments, r.nrSegments, true);
    v.setBigUint64(I.sectorNumber, r.sectorNumber, true);
    v.setUint16(I.handle, r.handle, true);
    for (let i = 0; i < Math.min(r.indirectGrefs.length, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST); i++) {
      v.setUint32(I.indirectGrefs + 4 * i, r.indirectGrefs[i]!, true);
    }
  }
  return out;
}

export function decodeResponse(b: Uint8Array): BlkifResponse {
  const v = viewOf(b, BLKIF_RESPONSE.size, "decode blkif response");
  return {
    id: v.getBigUint64(BLKIF_RESPONSE.id, true),
    operation: v.getUint8(BLKIF_RESPONSE.operation),
    status: v.getInt16(BLKIF_RESPONSE.status, true),
  };
}

/** Encodes a response into `out` (16 bytes, zeroed first). */
export function encodeResponse(out: Uint8Array, r: BlkifResponse): Uint8Array {
  const v = viewOf(out, BLKIF_RESPONSE.size, "encode blkif response");
  out.fill(0, 0, BLKIF_RESPONSE.size);
  v.setBigUint64(BLKIF_RESPONSE.id, r.id, true);
  v.setUint8(BLKIF_RESPONSE.operation, r.operation);
  v.setInt16(BLKIF_RESPONSE.status, r.status, true);
  return out;
}

/** Writes segment descriptors `segs` into indirect page `page`, from slot `first` on. */
export function encodeIndirectSegments(page: Uint8Array, segs: readonly BlkifSegment[], first = 0): void {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    const o = (first + i) * BLKIF_SEGMENT.size;
    v.setUint32(o + BLKIF_SEGMENT.gref, s.gref, true);
    v.setUint8(o + BLKIF_SEGMENT.firstSect, s.firstSect);
    v.setUint8(o + BLKIF_SEGMENT.lastSect, s.lastSect);
    v.setUint16(o + 6, 0, true);
  }
}

/**
 * Reads `count` segment descriptors from a (mapped, shared) indirect page, each byte once, into
 * private records (Linux xen_blkbk_parse_indirect): validate the records, never the page.
 */
export function decodeIndirectSegments(page: Uint8Array, count: number, first = 0): BlkifSegment[] {
  if ((first + count) * BLKIF_SEGMENT.size > page.byteLength) {
    throw new RangeError(`Cannot decode ${count} segments from slot ${first}: the page holds 512`);
  }
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const out: BlkifSegment[] = [];
  for (let i = 0; i < count; i++) {
    const o = (first + i) * BLKIF_SEGMENT.size;
    out.push({
      gref: v.getUint32(o + BLKIF_SEGMENT.gref, true),
      firstSect: v.getUint8(o + BLKIF_SEGMENT.firstSect),
      lastSect: v.getUint8(o + BLKIF_SEGMENT.lastSect),
    });
  }
  return out;
}

const TWO_32 = 2 ** 32;

/** Writes `n`, an integer in 0..2^53, at `off` as a little-endian u64 (the drivers' in-place path). */
export function setU64(v: DataView, off: number, n: number): void {
  v.setUint32(off, n % TWO_32, true);
  v.setUint32(off + 4, Math.floor(n / TWO_32), true);
}

/** Reads the little-endian u64 at `off` as a number: exact up to 2^53, the nearest double past it. */
export function getU64(v: DataView, off: number): number {
  return v.getUint32(off + 4, true) * TWO_32 + v.getUint32(off, true);
}

/** A status's name, for log lines and errors. */
export function statusName(status: number): string {
  switch (status) {
    case BLKIF_RSP.okay:
      return "BLKIF_RSP_OKAY";
    case BLKIF_RSP.error:
      return "BLKIF_RSP_ERROR";
    case BLKIF_RSP.eopnotsupp:
      return "BLKIF_RSP_EOPNOTSUPP";
    default:
      return `status ${status}`;
  }
}
