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
 *
 * Two faces over the same field accessors. In place, for the drivers' hot paths: a request, a
 * response or a segment is written into, or read out of, a DataView over a private ring entry or an
 * indirect page, field by field, with no object, BigInt or copy per request (64-bit sectors as
 * numbers, exact up to 2^53; ids as two u32 halves, so an id is echoed exactly). As objects, for
 * tests and tools: encodeRequest / decodeRequest and the rest, which call the same accessors and
 * give 64-bit fields as bigint so a hostile value is seen exactly. test/blk/blkif-diff.test.ts
 * feeds both faces to gcc's structs: the bytes it checks are the bytes the drivers write.
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

/** A u64 field's value as a writer takes it: a number (the drivers', up to 2^53) or any bigint. */
export type U64 = number | bigint;

function putU64(v: DataView, off: number, n: U64): void {
  if (typeof n === "number") setU64(v, off, n);
  else v.setBigUint64(off, n, true);
}

function bigU64(lo: number, hi: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

// ---------------------------------------------------------------- requests, in place
//
// Writers take `v`, a view of a whole 112-byte ring entry (a private copy, copied into the ring
// with SharedRing.write()): each zeroes the entry, then sets the fields, so padding is 0 as in C.

const R = BLKIF_REQUEST;
const S = BLKIF_SEGMENT;
const D = BLKIF_REQUEST_DISCARD;
const I = BLKIF_REQUEST_INDIRECT;
const P = BLKIF_RESPONSE;

/** Zeroes the entry and sets the fields every request layout has: operation, id, sector_number. */
function writeHead(v: DataView, operation: number, id: U64, sector: U64): void {
  for (let o = 0; o < BLKIF_ENTRY_SIZE; o += 4) v.setUint32(o, 0);
  v.setUint8(R.operation, operation);
  putU64(v, R.id, id);
  putU64(v, R.sectorNumber, sector);
}

/** A READ, WRITE, WRITE_BARRIER or FLUSH_DISKCACHE request; its segments follow (writeRequestSegment). */
export function writeRwRequest(
  v: DataView,
  operation: number,
  nrSegments: number,
  handle: number,
  id: U64,
  sector: U64,
): void {
  writeHead(v, operation, id, sector);
  v.setUint8(R.nrSegments, nrSegments);
  v.setUint16(R.handle, handle, true);
}

/** Segment `i` (0..10) of a READ/WRITE request written by writeRwRequest. */
export function writeRequestSegment(
  v: DataView,
  i: number,
  gref: number,
  firstSect: number,
  lastSect: number,
): void {
  writeSegment(v, R.seg + i * S.size, gref, firstSect, lastSect);
}

/** A DISCARD request (`struct blkif_request_discard`). */
export function writeDiscardRequest(
  v: DataView,
  flag: number,
  handle: number,
  id: U64,
  sector: U64,
  nrSectors: U64,
): void {
  writeHead(v, BLKIF_OP.discard, id, sector);
  v.setUint8(D.flag, flag);
  v.setUint16(D.handle, handle, true);
  putU64(v, D.nrSectors, nrSectors);
}

/**
 * An INDIRECT request (`struct blkif_request_indirect`); its indirect pages' refs follow
 * (writeIndirectGref), their segments go into the pages (writeIndirectSegment).
 */
export function writeIndirectRequest(
  v: DataView,
  indirectOp: number,
  nrSegments: number,
  handle: number,
  id: U64,
  sector: U64,
): void {
  writeHead(v, BLKIF_OP.indirect, id, sector);
  v.setUint8(I.indirectOp, indirectOp);
  v.setUint16(I.nrSegments, nrSegments, true);
  v.setUint16(I.handle, handle, true);
}

/** `indirect_grefs[i]` (0..7) of an INDIRECT request. */
export function writeIndirectGref(v: DataView, i: number, gref: number): void {
  v.setUint32(I.indirectGrefs + 4 * i, gref, true);
}

/** Segment descriptor `slot` (0..511) of indirect page `page`, its padding 0. */
export function writeIndirectSegment(
  page: DataView,
  slot: number,
  gref: number,
  firstSect: number,
  lastSect: number,
): void {
  writeSegment(page, slot * S.size, gref, firstSect, lastSect);
}

function writeSegment(v: DataView, o: number, gref: number, firstSect: number, lastSect: number): void {
  v.setUint32(o + S.gref, gref, true);
  v.setUint8(o + S.firstSect, firstSect);
  v.setUint8(o + S.lastSect, lastSect);
  v.setUint16(o + S.lastSect + 1, 0, true);
}

// Readers take a view of a private copy of the entry (never the shared slot: the frontend can
// change it between two reads, XSA-155) or of an indirect page.

/** `operation`, at offset 0 in every layout. */
export function requestOperation(v: DataView): number {
  return v.getUint8(R.operation);
}
/** The low and high halves of `id`, at offset 8 in every layout. */
export function requestIdLo(v: DataView): number {
  return v.getUint32(R.id, true);
}
export function requestIdHi(v: DataView): number {
  return v.getUint32(R.id + 4, true);
}
/** `sector_number`, at offset 16 in every layout, as a number (exact up to 2^53). */
export function requestSector(v: DataView): number {
  return getU64(v, R.sectorNumber);
}
/** `sector_number` exactly. */
export function requestSectorBig(v: DataView): bigint {
  return bigU64(v.getUint32(R.sectorNumber, true), v.getUint32(R.sectorNumber + 4, true));
}
/** A READ/WRITE request's `nr_segments` (u8). */
export function rwNrSegments(v: DataView): number {
  return v.getUint8(R.nrSegments);
}
export function rwHandle(v: DataView): number {
  return v.getUint16(R.handle, true);
}
export function discardFlag(v: DataView): number {
  return v.getUint8(D.flag);
}
export function discardHandle(v: DataView): number {
  return v.getUint16(D.handle, true);
}
/** A DISCARD's `nr_sectors` as a number (exact up to 2^53). */
export function discardNrSectors(v: DataView): number {
  return getU64(v, D.nrSectors);
}
export function discardNrSectorsBig(v: DataView): bigint {
  return bigU64(v.getUint32(D.nrSectors, true), v.getUint32(D.nrSectors + 4, true));
}
export function indirectOp(v: DataView): number {
  return v.getUint8(I.indirectOp);
}
/** An INDIRECT request's `nr_segments` (u16). */
export function indirectNrSegments(v: DataView): number {
  return v.getUint16(I.nrSegments, true);
}
export function indirectHandle(v: DataView): number {
  return v.getUint16(I.handle, true);
}
export function indirectGref(v: DataView, i: number): number {
  return v.getUint32(I.indirectGrefs + 4 * i, true);
}

/** Segment descriptors as columns: where a reader copies them, each byte read once. */
export interface SegmentColumns {
  readonly gref: Uint32Array;
  readonly firstSect: Uint8Array;
  readonly lastSect: Uint8Array;
}

/** Copies `count` segments of a READ/WRITE request into `into` at 0..count-1. */
export function readRequestSegments(v: DataView, count: number, into: SegmentColumns): void {
  readSegments(v, R.seg, count, into, 0);
}

/**
 * Copies `count` descriptors (the page holds at least that many) of indirect page `page` into
 * `into` at `at`.. (Linux xen_blkbk_parse_indirect: the copies are checked, never the page).
 */
export function readIndirectSegments(page: DataView, count: number, into: SegmentColumns, at: number): void {
  readSegments(page, 0, count, into, at);
}

function readSegments(v: DataView, base: number, count: number, into: SegmentColumns, at: number): void {
  for (let i = 0; i < count; i++) {
    const o = base + i * S.size;
    into.gref[at + i] = v.getUint32(o + S.gref, true);
    into.firstSect[at + i] = v.getUint8(o + S.firstSect);
    into.lastSect[at + i] = v.getUint8(o + S.lastSect);
  }
}

// ---------------------------------------------------------------- responses, in place

/** Writes all 16 bytes of a response (padding 0); the id as the request's two halves. */
export function writeResponse(
  v: DataView,
  idLo: number,
  idHi: number,
  operation: number,
  status: number,
): void {
  v.setUint32(P.id, idLo, true);
  v.setUint32(P.id + 4, idHi, true);
  v.setUint8(P.operation, operation);
  v.setUint8(P.operation + 1, 0);
  v.setInt16(P.status, status, true);
  v.setUint32(P.status + 2, 0, true);
}

export function responseIdLo(v: DataView): number {
  return v.getUint32(P.id, true);
}
export function responseIdHi(v: DataView): number {
  return v.getUint32(P.id + 4, true);
}
export function responseOperation(v: DataView): number {
  return v.getUint8(P.operation);
}
export function responseStatus(v: DataView): number {
  return v.getInt16(P.status, true);
}

// ---------------------------------------------------------------- objects

function viewOf(b: Uint8Array, need: number, what: string): DataView {
  if (b.byteLength < need) throw new RangeError(`Cannot ${what}: need ${need} bytes, got ${b.byteLength}`);
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function columns(n: number): SegmentColumns {
  return { gref: new Uint32Array(n), firstSect: new Uint8Array(n), lastSect: new Uint8Array(n) };
}

function segmentsOf(c: SegmentColumns, n: number): BlkifSegment[] {
  const out: BlkifSegment[] = [];
  for (let i = 0; i < n; i++)
    out.push({ gref: c.gref[i]!, firstSect: c.firstSect[i]!, lastSect: c.lastSect[i]! });
  return out;
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
  const operation = requestOperation(v);
  const id = bigU64(requestIdLo(v), requestIdHi(v));
  if (operation <= BLKIF_OP.flushDiskcache) {
    const nrSegments = rwNrSegments(v);
    const n = Math.min(nrSegments, BLKIF_MAX_SEGMENTS_PER_REQUEST);
    const c = columns(n);
    readRequestSegments(v, n, c);
    return {
      operation: operation as 0 | 1 | 2 | 3,
      nrSegments,
      handle: rwHandle(v),
      id,
      sectorNumber: requestSectorBig(v),
      seg: segmentsOf(c, n),
    };
  }
  if (operation === BLKIF_OP.discard) {
    return {
      operation,
      flag: discardFlag(v),
      handle: discardHandle(v),
      id,
      sectorNumber: requestSectorBig(v),
      nrSectors: discardNrSectorsBig(v),
    };
  }
  if (operation === BLKIF_OP.indirect) {
    const indirectGrefs: number[] = [];
    for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) indirectGrefs.push(indirectGref(v, i));
    return {
      operation,
      indirectOp: indirectOp(v),
      nrSegments: indirectNrSegments(v),
      id,
      sectorNumber: requestSectorBig(v),
      handle: indirectHandle(v),
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
  if (isRw(r)) {
    if (r.seg.length > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
      throw new RangeError(`Cannot encode request: ${r.seg.length} segments, at most 11 fit`);
    }
    writeRwRequest(v, r.operation, r.nrSegments, r.handle, r.id, r.sectorNumber);
    r.seg.forEach((s, i) => {
      writeRequestSegment(v, i, s.gref, s.firstSect, s.lastSect);
    });
  } else if (isDiscard(r)) {
    writeDiscardRequest(v, r.flag, r.handle, r.id, r.sectorNumber, r.nrSectors);
  } else if (isIndirect(r)) {
    writeIndirectRequest(v, r.indirectOp, r.nrSegments, r.handle, r.id, r.sectorNumber);
    for (let i = 0; i < Math.min(r.indirectGrefs.length, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST); i++) {
      writeIndirectGref(v, i, r.indirectGrefs[i]!);
    }
  } else {
    writeHead(v, r.operation, r.id, 0);
  }
  return out;
}

export function decodeResponse(b: Uint8Array): BlkifResponse {
  const v = viewOf(b, BLKIF_RESPONSE.size, "decode blkif response");
  return {
    id: bigU64(responseIdLo(v), responseIdHi(v)),
    operation: responseOperation(v),
    status: responseStatus(v),
  };
}

/** Encodes a response into `out` (16 bytes, padding 0). */
export function encodeResponse(out: Uint8Array, r: BlkifResponse): Uint8Array {
  const v = viewOf(out, BLKIF_RESPONSE.size, "encode blkif response");
  const id = BigInt.asUintN(64, r.id);
  writeResponse(v, Number(id & 0xffffffffn), Number(id >> 32n), r.operation, r.status);
  return out;
}

/** Writes segment descriptors `segs` into indirect page `page`, from slot `first` on. */
export function encodeIndirectSegments(page: Uint8Array, segs: readonly BlkifSegment[], first = 0): void {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  segs.forEach((s, i) => {
    writeIndirectSegment(v, first + i, s.gref, s.firstSect, s.lastSect);
  });
}

/**
 * Reads `count` segment descriptors from a (mapped, shared) indirect page, each byte once, into
 * private records (Linux xen_blkbk_parse_indirect): validate the records, never the page.
 */
export function decodeIndirectSegments(page: Uint8Array, count: number, first = 0): BlkifSegment[] {
  if ((first + count) * BLKIF_SEGMENT.size > page.byteLength) {
    throw new RangeError(`Cannot decode ${count} segments from slot ${first}: the page holds 512`);
  }
  const v = new DataView(page.buffer, page.byteOffset + first * S.size, page.byteLength - first * S.size);
  const c = columns(count);
  readIndirectSegments(v, count, c, 0);
  return segmentsOf(c, count);
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
