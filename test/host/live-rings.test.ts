import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BLKIF_ENTRY_SIZE, BLKIF_OP, writeResponse, writeRwRequest } from "../../src/drivers/blk/blkif.ts";
import { ioRing } from "../../src/host/live-rings.ts";
import { BackRing, FrontRing } from "../../src/ring/ring.ts";
import { XEN_PAGE_SIZE } from "../../src/xen/xen.ts";

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

describe("ioRing()", () => {
  it("reads a blkif ring's shared indexes and decodes answered and outstanding slots", () => {
    const page = new SharedArrayBuffer(XEN_PAGE_SIZE);
    const front = FrontRing.init(new Uint8Array(page), BLKIF_ENTRY_SIZE);
    for (let id = 0; id < 3; id++) {
      const i = front.reqProdPvt;
      writeRwRequest(view(front.getRequest(i)), BLKIF_OP.read, 0, 51712, id, id * 8);
      front.reqProdPvt = i + 1;
    }
    front.pushRequestsAndCheckNotify();
    const back = BackRing.attach(new Uint8Array(page), BLKIF_ENTRY_SIZE);
    back.reqCons = 1;
    writeResponse(view(back.getResponse(0)), 0, 0, BLKIF_OP.read, 0);
    back.rspProdPvt = 1;
    back.pushResponsesAndCheckNotify();

    const r = ioRing(
      page,
      "vbd",
      "vbd/1/51712",
      1,
      "gref 8 of dom1",
      "/local/domain/1/device/vbd/51712/ring-ref",
    );
    assert.deepEqual(r.indexes, { req_prod: 3, req_event: 1, rsp_prod: 1, rsp_event: 1 });
    assert.equal(r.size, 32);
    assert.equal(r.free, 30, "two requests outstanding");
    assert.deepEqual(r.last, [
      "[0] rsp id 0 read status 0",
      "[1] req id 1 read sector 8 0 seg",
      "[2] req id 2 read sector 16 0 seg",
    ]);
  });
});
