/**
 * blkfront's zero-copy API (IoBuffer: allocBuffer, readBuffer, writeBuffer) in a real guest:
 * data written from a buffer's pages is in the image and reads back through the copying API and
 * into another buffer; a buffer too small, freed, or not the disk's own is refused before any
 * request; the pool runs out at max_pages and free() gives the pages back. Byte-exactness under
 * random I/O, for both grant modes, is in blk-random.test.ts (each op picks an API).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { BLKFRONT_MODULE } from "../../src/host/disk.ts";
import type { Host } from "../../src/host/host.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";

const MODULE = new URL("./fixtures/buffers-module.ts", import.meta.url).href;
const SECTORS = 2048;

describe("blkfront IoBuffers (zero-copy I/O)", () => {
  let fx: GuestHost;
  let host: Host;
  let image: string;
  let domid: number;

  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 1024 } });
    ({ host, domU: domid } = fx);
    await host.hv.insmod(domid, BLKFRONT_MODULE, ["max_pages=256"]);
    image = await fx.attachDisk(domid, { sectors: SECTORS });
    await host.hv.insmod(domid, MODULE);
  });
  after(() => fx?.stop());

  const blk = (cmd: string, arg: object) =>
    host.hv.call(domid, "xen_blkfront", cmd, { vdev: "xvda", ...arg });

  it("writes from a buffer's pages and reads back through either API, the image holding the data", async () => {
    const data = new Uint8Array(5 * 4096 + 1024).map((_, i) => (i * 31 + 7) & 0xff);
    await blk("write", { sector: 100, data, zeroCopy: true });
    assert.deepEqual(await blk("read", { sector: 100, count: data.length / 512 }), data);
    assert.deepEqual(await blk("read", { sector: 100, count: data.length / 512, zeroCopy: true }), data);
    assert.deepEqual(new Uint8Array(readFileSync(image).subarray(100 * 512, 100 * 512 + data.length)), data);
  });

  it("gives whole pages: 3 pages and a byte take 4", async () => {
    assert.equal(await host.hv.call(domid, "blk_buffers", "pages-of-alloc", { vdev: "xvda" }), 4);
  });

  it("refuses a buffer too small, freed or not its own, and gives pages back on free()", async () => {
    const r = (await host.hv.call(domid, "blk_buffers", "misuse", { vdev: "xvda" })) as Record<
      string,
      unknown
    >;
    assert.equal(r.tooSmall, "RangeError: Cannot read 17 sectors with a 8192-byte buffer");
    assert.match(String(r.foreign), /^RangeError: Cannot write with that buffer: not a live buffer of xvda/);
    assert.match(String(r.freed), /^RangeError: Cannot read with that buffer: not a live buffer of xvda/);
    assert.match(String(r.exhausted), /^BlockIOError: xvda: no memory for a buffer of 64 pages/);
    // max_pages=256, less the 4 pages the test before kept and what earlier I/O left in the pool.
    assert.ok(Number(r.held) >= 2 && Number(r.held) <= 3, `buffers of 64 pages held: ${r.held}`);
    assert.equal(r.again, "ok");
    // The disk still works after all that.
    const data = new Uint8Array(4096).fill(0xa5);
    await blk("write", { sector: 0, data, zeroCopy: true });
    assert.deepEqual(await blk("read", { sector: 0, count: 8 }), data);
  });
});
