/**
 * A multi-page ring given as separate 4 KiB pages (how granted ring pages arrive) behaves as the
 * same ring in one contiguous buffer: same size, and every entry written through one reads back
 * the same through the other, including the entries that straddle two pages (blkif: entry 72 of
 * a 4-page ring starts 64 bytes before the end of page 1). A live view of such an entry throws.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BLKIF_ENTRY_SIZE } from "../../src/drivers/blk/blkif.ts";
import { FrontRing, SharedRing } from "../../src/ring/ring.ts";
import { XEN_PAGE_SIZE } from "../../src/xen/xen.ts";

function split(mem: Uint8Array, n: number): Uint8Array[] {
  // Views over the same bytes, so both rings share memory.
  return Array.from({ length: n }, (_, i) => mem.subarray(i * XEN_PAGE_SIZE, (i + 1) * XEN_PAGE_SIZE));
}

describe("SharedRing over separate pages", () => {
  for (const order of [1, 2, 4]) {
    const n = 1 << order;
    it(`${n} pages: same size and same bytes as one contiguous buffer`, () => {
      const mem = new Uint8Array(new SharedArrayBuffer(n * XEN_PAGE_SIZE));
      const paged = new SharedRing(split(mem, n), BLKIF_ENTRY_SIZE);
      const flat = new SharedRing(mem, BLKIF_ENTRY_SIZE);
      assert.equal(paged.size, flat.size);
      let straddling = 0;
      for (let i = 0; i < paged.size; i++) {
        const e = new Uint8Array(BLKIF_ENTRY_SIZE).map((_, j) => (i * 7 + j) & 0xff);
        paged.write(i, e);
        assert.deepEqual(flat.copy(i), e);
        assert.deepEqual(paged.copy(i), e);
        assert.deepEqual(paged.copy(i, new Uint8Array(16)), e.subarray(0, 16));
        try {
          paged.entry(i);
        } catch {
          straddling++;
        }
      }
      // 2 pages hold 64 entries, all inside a page (36 fill page 0 exactly); 4 and 16 straddle.
      assert.equal(straddling > 0, n >= 4);
    });
  }

  it("throws for a live view of an entry across two pages, not for others", () => {
    const pages = Array.from({ length: 4 }, () => new Uint8Array(new SharedArrayBuffer(XEN_PAGE_SIZE)));
    const r = new SharedRing(pages, BLKIF_ENTRY_SIZE);
    assert.equal(r.size, 128);
    assert.doesNotThrow(() => r.entry(36)); // starts exactly at page 1
    assert.throws(() => r.entry(72), /straddles two ring pages/);
  });

  it("FrontRing.init takes the pages and initialises the header on the first", () => {
    const pages = Array.from({ length: 2 }, () =>
      new Uint8Array(new SharedArrayBuffer(XEN_PAGE_SIZE)).fill(0xee),
    );
    const f = FrontRing.init(pages, BLKIF_ENTRY_SIZE);
    assert.equal(f.size, 64);
    assert.equal(f.shared.reqEvent, 1);
    assert.equal(f.shared.rspEvent, 1);
    assert.equal(f.shared.reqProd, 0);
  });

  it("refuses pages that are not 4 KiB", () => {
    assert.throws(
      () => new SharedRing([new Uint8Array(4096), new Uint8Array(100)], 112),
      /must be 4096 bytes/,
    );
  });
});
