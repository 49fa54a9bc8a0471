/**
 * Differential test: src/drivers/blk/blkif.ts against Xen's own structs.
 *
 * test/blk/c/blkif_diff.c is built with gcc against /usr/include/xen/io/blkif.h (Debian
 * libxen-dev). It prints the structs' layout (sizeof, offsetof, the constants), then the bytes of
 * each request and response it is asked to build. The TypeScript codec must give the same
 * layout and the same bytes for fast-check's random fields, and decode the C bytes back to them:
 * through its objects (encodeRequest, decodeResponse, ...) and through the in-place accessors the
 * drivers call (writeRwRequest, readRequestSegments, writeResponse, ...), 64-bit fields as numbers.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  BLKIF_DISCARD_SECURE,
  BLKIF_ENTRY_SIZE,
  BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP,
  BLKIF_REQUEST,
  BLKIF_REQUEST_DISCARD,
  BLKIF_REQUEST_INDIRECT,
  BLKIF_RESPONSE,
  BLKIF_RSP,
  BLKIF_SEGMENT,
  type BlkifRequest,
  type BlkifResponse,
  decodeIndirectSegments,
  decodeRequest,
  decodeResponse,
  discardNrSectors,
  encodeIndirectSegments,
  encodeRequest,
  encodeResponse,
  getU64,
  indirectNrSegments,
  indirectOp,
  readRequestSegments,
  requestIdHi,
  requestIdLo,
  requestOperation,
  requestSector,
  responseIdHi,
  responseIdLo,
  responseOperation,
  responseStatus,
  setU64,
  VDISK,
  writeDiscardRequest,
  writeIndirectGref,
  writeIndirectRequest,
  writeRequestSegment,
  writeResponse,
  writeRwRequest,
} from "../../src/drivers/blk/blkif.ts";

import { ringSize } from "../../src/ring/ring.ts";
import { cReference } from "../helpers/c-reference.ts";

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), "c/blkif_diff.c");
const HEADER = "/usr/include/xen/io/blkif.h";
const REFERENCE = { source: SOURCE, headers: [HEADER] };

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/** The script line that makes C build `r`. */
function line(r: BlkifRequest): string {
  if ("seg" in r) {
    const segs = r.seg.map((s) => `${s.gref} ${s.firstSect} ${s.lastSect}`).join(" ");
    return `rw ${r.operation} ${r.nrSegments} ${r.handle} ${r.id} ${r.sectorNumber} ${segs}`.trimEnd();
  }
  if ("nrSectors" in r) return `discard ${r.flag} ${r.handle} ${r.id} ${r.sectorNumber} ${r.nrSectors}`;
  if ("indirectGrefs" in r) {
    return `indirect ${r.indirectOp} ${r.nrSegments} ${r.handle} ${r.id} ${r.sectorNumber} ${r.indirectGrefs.join(" ")}`;
  }
  throw new Error("no C line for this request");
}

const u8 = fc.integer({ min: 0, max: 255 });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const segment = fc.record({ gref: u32, firstSect: u8, lastSect: u8 });

const rwRequest = fc
  .record({
    operation: fc.constantFrom(0, 1, 2, 3) as fc.Arbitrary<0 | 1 | 2 | 3>,
    handle: u16,
    id: u64,
    sectorNumber: u64,
    seg: fc.array(segment, { maxLength: BLKIF_MAX_SEGMENTS_PER_REQUEST }),
    extra: u8,
  })
  // nr_segments is its own byte: also values that disagree with the segments given.
  .map(({ extra, ...r }) => ({ ...r, nrSegments: extra % 2 === 0 ? r.seg.length : extra }));
const discardRequest = fc.record({
  operation: fc.constant(5 as const),
  flag: u8,
  handle: u16,
  id: u64,
  sectorNumber: u64,
  nrSectors: u64,
});
const indirectRequest = fc.record({
  operation: fc.constant(6 as const),
  indirectOp: u8,
  nrSegments: u16,
  handle: u16,
  id: u64,
  sectorNumber: u64,
  indirectGrefs: fc.array(u32, {
    minLength: BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
    maxLength: BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
  }),
});
const response = fc.record({ id: u64, operation: u8, status: fc.integer({ min: -32768, max: 32767 }) });

describe("blkif codec against io/blkif.h (gcc)", () => {
  it("has the C layout: sizes, offsets and constants", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const first = bin.run([])[0]!;
    const c = Object.fromEntries(first.split(" ").map((kv) => kv.split("=") as [string, string]));
    const ts: Record<string, number> = {
      entry: BLKIF_ENTRY_SIZE,
      request: BLKIF_REQUEST.size,
      discard: BLKIF_REQUEST_DISCARD.size,
      indirect: BLKIF_REQUEST_INDIRECT.size,
      response: BLKIF_RESPONSE.size,
      segment: BLKIF_SEGMENT.size,
      "blkif_request.operation": BLKIF_REQUEST.operation,
      "blkif_request.nr_segments": BLKIF_REQUEST.nrSegments,
      "blkif_request.handle": BLKIF_REQUEST.handle,
      "blkif_request.id": BLKIF_REQUEST.id,
      "blkif_request.sector_number": BLKIF_REQUEST.sectorNumber,
      "blkif_request.seg": BLKIF_REQUEST.seg,
      "blkif_request_discard.flag": BLKIF_REQUEST_DISCARD.flag,
      "blkif_request_discard.handle": BLKIF_REQUEST_DISCARD.handle,
      "blkif_request_discard.id": BLKIF_REQUEST_DISCARD.id,
      "blkif_request_discard.sector_number": BLKIF_REQUEST_DISCARD.sectorNumber,
      "blkif_request_discard.nr_sectors": BLKIF_REQUEST_DISCARD.nrSectors,
      "blkif_request_indirect.indirect_op": BLKIF_REQUEST_INDIRECT.indirectOp,
      "blkif_request_indirect.nr_segments": BLKIF_REQUEST_INDIRECT.nrSegments,
      "blkif_request_indirect.id": BLKIF_REQUEST_INDIRECT.id,
      "blkif_request_indirect.sector_number": BLKIF_REQUEST_INDIRECT.sectorNumber,
      "blkif_request_indirect.handle": BLKIF_REQUEST_INDIRECT.handle,
      "blkif_request_indirect.indirect_grefs": BLKIF_REQUEST_INDIRECT.indirectGrefs,
      "blkif_response.id": BLKIF_RESPONSE.id,
      "blkif_response.operation": BLKIF_RESPONSE.operation,
      "blkif_response.status": BLKIF_RESPONSE.status,
      "blkif_request_segment.gref": BLKIF_SEGMENT.gref,
      "blkif_request_segment.first_sect": BLKIF_SEGMENT.firstSect,
      "blkif_request_segment.last_sect": BLKIF_SEGMENT.lastSect,
      max_segments: BLKIF_MAX_SEGMENTS_PER_REQUEST,
      max_indirect_pages: BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
      rsp_okay: BLKIF_RSP.okay,
      rsp_error: BLKIF_RSP.error,
      rsp_eopnotsupp: BLKIF_RSP.eopnotsupp,
      op_read: BLKIF_OP.read,
      op_write: BLKIF_OP.write,
      op_barrier: BLKIF_OP.writeBarrier,
      op_flush: BLKIF_OP.flushDiskcache,
      op_discard: BLKIF_OP.discard,
      op_indirect: BLKIF_OP.indirect,
      vdisk_cdrom: VDISK.cdrom,
      vdisk_removable: VDISK.removable,
      vdisk_readonly: VDISK.readonly,
      discard_secure: BLKIF_DISCARD_SECURE,
      ring_32: ringSize(4096, BLKIF_ENTRY_SIZE),
      ring_16: ringSize(16 * 4096, BLKIF_ENTRY_SIZE),
    };
    assert.deepEqual(Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Number(v)])), ts);
  });

  it("encodes requests byte for byte as C, and decodes C's bytes back", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const reqs = fc.sample(fc.oneof(rwRequest, discardRequest, indirectRequest), { numRuns: 600, seed: 42 });
    const out = bin.run(reqs.map(line)).slice(1);
    assert.equal(out.length, reqs.length);
    const buf = new Uint8Array(BLKIF_ENTRY_SIZE);
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i]!;
      assert.equal(hex(encodeRequest(buf, r)), out[i], line(r));
      const back = decodeRequest(new Uint8Array(Buffer.from(out[i]!, "hex")));
      if ("seg" in r) {
        // The decoder gives min(nr_segments, 11) segments: those the C side wrote, then zeros.
        const n = Math.min(r.nrSegments, BLKIF_MAX_SEGMENTS_PER_REQUEST);
        const seg = Array.from({ length: n }, (_, j) => ({
          ...(r.seg[j] ?? { gref: 0, firstSect: 0, lastSect: 0 }),
        }));
        assert.deepEqual(back, { ...r, seg });
      } else {
        assert.deepEqual(back, {
          ...r,
          ...("indirectGrefs" in r ? { indirectGrefs: [...r.indirectGrefs] } : {}),
        });
      }
    }
  });

  it("writes and reads requests in place, 64-bit fields as numbers (the drivers' path), as C", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const safe = fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) });
    const reqs = fc.sample(
      fc.oneof(
        rwRequest.chain((r) => fc.record({ id: safe, sectorNumber: safe }).map((x) => ({ ...r, ...x }))),
        discardRequest.chain((r) =>
          fc.record({ id: safe, sectorNumber: safe, nrSectors: safe }).map((x) => ({ ...r, ...x })),
        ),
        indirectRequest.chain((r) =>
          fc.record({ id: safe, sectorNumber: safe }).map((x) => ({ ...r, ...x })),
        ),
      ),
      { numRuns: 300, seed: 11 },
    );
    const out = bin.run(reqs.map(line)).slice(1);
    const buf = new Uint8Array(BLKIF_ENTRY_SIZE);
    const v = new DataView(buf.buffer);
    const cols = {
      gref: new Uint32Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
      firstSect: new Uint8Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
      lastSect: new Uint8Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
    };
    buf.fill(0xa5); // the writers clear what a previous request left
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i]!;
      const id = Number(r.id);
      const sector = Number(r.sectorNumber);
      if ("seg" in r) {
        writeRwRequest(v, r.operation, r.nrSegments, r.handle, id, sector);
        r.seg.forEach((s, j) => {
          writeRequestSegment(v, j, s.gref, s.firstSect, s.lastSect);
        });
      } else if ("nrSectors" in r) {
        writeDiscardRequest(v, r.flag, r.handle, id, sector, Number(r.nrSectors));
      } else if ("indirectGrefs" in r) {
        writeIndirectRequest(v, r.indirectOp, r.nrSegments, r.handle, id, sector);
        r.indirectGrefs.forEach((g, j) => {
          writeIndirectGref(v, j, g);
        });
      }
      assert.equal(hex(buf), out[i], line(r));
      const c = new DataView(new Uint8Array(Buffer.from(out[i]!, "hex")).buffer);
      assert.equal(requestOperation(c), r.operation);
      assert.equal(requestIdLo(c) + requestIdHi(c) * 2 ** 32, id);
      assert.equal(requestSector(c), sector);
      if ("seg" in r) {
        const n = Math.min(r.nrSegments, r.seg.length);
        readRequestSegments(c, n, cols);
        for (let j = 0; j < n; j++) {
          assert.deepEqual(
            [cols.gref[j], cols.firstSect[j], cols.lastSect[j]],
            [r.seg[j]!.gref, r.seg[j]!.firstSect, r.seg[j]!.lastSect],
          );
        }
      } else if ("nrSectors" in r) {
        assert.equal(discardNrSectors(c), Number(r.nrSectors));
      } else if ("indirectGrefs" in r) {
        assert.equal(indirectOp(c), r.indirectOp);
        assert.equal(indirectNrSegments(c), r.nrSegments);
      }
    }
  });

  it("encodes responses and segments byte for byte as C", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const rsps: BlkifResponse[] = fc.sample(response, { numRuns: 300, seed: 7 });
    const segs = fc.sample(segment, { numRuns: 100, seed: 9 });
    const out = bin
      .run([
        ...rsps.map((r) => `rsp ${r.id} ${r.operation} ${r.status}`),
        ...segs.map((s) => `seg ${s.gref} ${s.firstSect} ${s.lastSect}`),
      ])
      .slice(1);
    const b = new Uint8Array(BLKIF_RESPONSE.size);
    rsps.forEach((r, i) => {
      assert.equal(hex(encodeResponse(b, r)), out[i]);
      assert.deepEqual(decodeResponse(new Uint8Array(Buffer.from(out[i]!, "hex"))), { ...r });
      // In place, as blkback writes and blkfront reads it: the id as two halves.
      const v = new DataView(b.buffer);
      b.fill(0xa5);
      writeResponse(v, Number(r.id & 0xffffffffn), Number(r.id >> 32n), r.operation, r.status);
      assert.equal(hex(b), out[i]);
      assert.deepEqual(
        [responseIdLo(v), responseIdHi(v), responseOperation(v), responseStatus(v)],
        [Number(r.id & 0xffffffffn), Number(r.id >> 32n), r.operation, r.status],
      );
    });
    const page = new Uint8Array(4096);
    encodeIndirectSegments(page, segs);
    for (let i = 0; i < segs.length; i++) {
      assert.equal(hex(page.subarray(i * 8, i * 8 + 8)), out[rsps.length + i]);
    }
    assert.deepEqual(
      decodeIndirectSegments(page, segs.length),
      segs.map((x) => ({ ...x })),
    );
  });
});

describe("the drivers' in-place u64 fields", () => {
  it("setU64 writes and getU64 reads the bytes DataView's BigInt u64 does, up to 2^53", () => {
    const v = new DataView(new ArrayBuffer(16));
    fc.assert(
      fc.property(fc.maxSafeNat(), fc.integer({ min: 0, max: 8 }), (n, off) => {
        setU64(v, off, n);
        assert.equal(v.getBigUint64(off, true), BigInt(n));
        v.setBigUint64(off, BigInt(n), true);
        assert.equal(getU64(v, off), n);
      }),
    );
  });
});
