import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BLKIF_ENTRY_SIZE } from "../../src/drivers/blk/blkif.ts";
import {
  BackRing,
  FrontRing,
  initSharedRing,
  ringSize,
  roundDownPow2,
  SharedRing,
  SRING,
} from "../../src/ring/ring.ts";
import { XEN_PAGE_SIZE } from "../../src/xen/xen.ts";

const ENTRY = BLKIF_ENTRY_SIZE;

function page(pages = 1, fill = 0xa5): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(pages * XEN_PAGE_SIZE)).fill(fill);
}

/** A one-page blkif-sized ring initialised by the frontend and both ends resumed at `start`. */
function pair(start = 0): { front: FrontRing; back: BackRing; mem: Uint8Array } {
  const mem = page();
  const front = FrontRing.init(mem, ENTRY);
  front.shared.reqProd = start;
  front.shared.rspProd = start;
  front.shared.reqEvent = start + 1;
  front.shared.rspEvent = start + 1;
  return {
    front: FrontRing.attach(mem, ENTRY, start),
    back: BackRing.attach(mem, ENTRY, start),
    mem,
  };
}

/** Frontend writes `n` requests (first byte = a tag) without pushing them. */
function produce(front: FrontRing, n: number, tag = 0): void {
  for (let i = 0; i < n; i++) {
    front.getRequest(front.reqProdPvt)[0] = (tag + i) & 0xff;
    front.reqProdPvt += 1;
  }
}

/** The consumer loop of the module comment; returns the first byte of each request taken. */
function consumeAll(back: BackRing): number[] {
  const taken: number[] = [];
  const rp = back.shared.reqProd;
  for (let rc = back.reqCons; rc !== rp && !back.requestConsOverflow(rc); rc = (rc + 1) >>> 0) {
    taken.push(back.copyRequest(rc)[0]!);
    back.reqCons = (rc + 1) >>> 0;
  }
  return taken;
}

describe("roundDownPow2() (__RD32)", () => {
  it("rounds down to the nearest power of two and keeps 0", () => {
    const cases: [number, number][] = [
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 2],
      [36, 32],
      [109, 64],
      [256, 256],
      [0x7fffffff, 0x40000000],
      [0xffffffff, 0x80000000],
    ];
    for (const [x, want] of cases) assert.equal(roundDownPow2(x), want, `__RD32(${x})`);
  });
});

describe("ringSize()", () => {
  it("gives blkif 32 entries on one page and 64/128/256/512 on 2/4/8/16 pages", () => {
    assert.equal(ringSize(XEN_PAGE_SIZE, 112), 32);
    assert.deepEqual(
      [2, 4, 8, 16].map((n) => ringSize(n * XEN_PAGE_SIZE, 112)),
      [64, 128, 256, 512],
    );
  });

  it("rounds a 3-page blkif ring (109 entries fit) down to 64", () => {
    assert.equal(ringSize(3 * XEN_PAGE_SIZE, 112), 64);
  });

  it("gives 256 entries for netif's 12-byte tx and 8-byte rx entries", () => {
    assert.equal(ringSize(XEN_PAGE_SIZE, 12), 256);
    assert.equal(ringSize(XEN_PAGE_SIZE, 8), 256);
  });

  it("rejects memory smaller than the header and entry sizes below 1", () => {
    assert.throws(() => ringSize(63, 8), RangeError);
    assert.throws(() => ringSize(XEN_PAGE_SIZE, 0), RangeError);
  });
});

describe("initSharedRing() (SHARED_RING_INIT)", () => {
  it("sets both producers to 0 and both events to 1, zeroes the private union and padding", () => {
    const mem = page();
    initSharedRing(mem);
    const s = new SharedRing(mem, ENTRY);
    assert.deepEqual([s.reqProd, s.reqEvent, s.rspProd, s.rspEvent], [0, 1, 0, 1]);
    assert.ok(mem.subarray(SRING.pvt, SRING.entries).every((b) => b === 0));
  });

  it("leaves the entries untouched", () => {
    const mem = page(1, 0x3c);
    initSharedRing(mem);
    assert.ok(mem.subarray(SRING.entries).every((b) => b === 0x3c));
  });
});

describe("SharedRing", () => {
  it("rejects a page view that is not 4-byte aligned", () => {
    const sab = new SharedArrayBuffer(2 * XEN_PAGE_SIZE);
    assert.throws(() => new SharedRing(new Uint8Array(sab, 2, XEN_PAGE_SIZE), ENTRY), RangeError);
  });

  it("rejects memory that holds no entry", () => {
    assert.throws(() => new SharedRing(new Uint8Array(new SharedArrayBuffer(128)), ENTRY), RangeError);
  });

  it("works on a page view at an offset inside a larger buffer", () => {
    const sab = new SharedArrayBuffer(16 * XEN_PAGE_SIZE);
    const mem = new Uint8Array(sab, 5 * XEN_PAGE_SIZE, XEN_PAGE_SIZE);
    const front = FrontRing.init(mem, ENTRY);
    produce(front, 1, 0x77);
    front.pushRequests();
    const raw = new DataView(sab);
    assert.equal(raw.getUint32(5 * XEN_PAGE_SIZE + SRING.reqProd, true), 1);
    assert.equal(raw.getUint8(5 * XEN_PAGE_SIZE + SRING.entries), 0x77);
  });

  it("maps free-running indexes to slots modulo the ring size", () => {
    const s = new SharedRing(page(), ENTRY);
    assert.equal(s.offsetOf(0), 64);
    assert.equal(s.offsetOf(33), 64 + 112);
    assert.equal(s.offsetOf(0xffffffff), 64 + 31 * 112);
    assert.equal(s.entry(7).byteOffset, s.entry(7 + 32).byteOffset);
  });

  it("stores indexes as native little-endian uint32 at offsets 0, 4, 8 and 12", () => {
    const mem = page();
    const s = new SharedRing(mem, ENTRY);
    s.reqProd = 0x01020304;
    s.reqEvent = 0xfffffffe;
    s.rspProd = -1;
    s.rspEvent = 2 ** 32 + 5;
    const v = new DataView(mem.buffer);
    assert.deepEqual(
      [0, 4, 8, 12].map((o) => v.getUint32(o, true)),
      [0x01020304, 0xfffffffe, 0xffffffff, 5],
    );
  });
});

describe("FrontRing and BackRing", () => {
  it("attach at a start index without touching the shared page (only the frontend initialises)", () => {
    const mem = page();
    const before = mem.slice();
    const front = FrontRing.attach(mem, ENTRY, 0xfffffff0);
    const back = BackRing.attach(mem, ENTRY, 0xfffffff0);
    assert.deepEqual(mem, before);
    assert.deepEqual([front.reqProdPvt, front.rspCons], [0xfffffff0, 0xfffffff0]);
    assert.deepEqual([back.rspProdPvt, back.reqCons], [0xfffffff0, 0xfffffff0]);
  });

  it("count free requests down to full and back as responses are consumed", () => {
    const { front, back } = pair(0xfffffff0);
    assert.equal(front.freeRequests(), 32);
    produce(front, 32);
    assert.equal(front.freeRequests(), 0);
    assert.ok(front.full());
    front.pushRequests();
    assert.equal(consumeAll(back).length, 32);
    for (let i = 0; i < 3; i++) back.rspProdPvt += 1;
    back.pushResponses();
    assert.equal(front.unconsumedResponses(), 3);
    front.rspCons += 3;
    assert.equal(front.freeRequests(), 3);
    assert.ok(!front.full());
  });

  it("publish requests only on push: the backend sees nothing before", () => {
    const { front, back } = pair();
    produce(front, 2);
    assert.equal(back.unconsumedRequests(), 0);
    front.pushRequests();
    assert.equal(back.unconsumedRequests(), 2);
  });

  it("copy a request so that later writes by the frontend cannot change it (double fetch)", () => {
    const { front, back } = pair();
    produce(front, 1, 0x10);
    front.pushRequests();
    const copy = back.copyRequest(back.reqCons);
    front.getRequest(0)[0] = 0x99;
    assert.equal(copy[0], 0x10);
    assert.equal(back.getRequest(0)[0], 0x99);
    assert.equal(copy.length, ENTRY);
    assert.ok(!(copy.buffer instanceof SharedArrayBuffer));
  });

  it("copy into a caller's buffer of up to one entry, and refuse a longer one", () => {
    const { front, back } = pair();
    back.getResponse(3).set([1, 2, 3, 4]);
    const into = new Uint8Array(16);
    assert.equal(front.copyResponse(3, into), into);
    assert.deepEqual([...into.subarray(0, 5)], [1, 2, 3, 4, 0xa5]);
    assert.throws(() => front.copyResponse(3, new Uint8Array(ENTRY + 1)), RangeError);
  });
});

describe("notification suppression (worked examples of the design comment in ring.ts)", () => {
  it("1. notifies a sleeping consumer: event 5, push 4 → 5", () => {
    const { front, back } = pair(4);
    assert.equal(back.finalCheckForRequests(), false);
    assert.equal(back.shared.reqEvent, 5);
    produce(front, 1);
    assert.equal(front.pushRequestsAndCheckNotify(), true);
  });

  it("2. does not notify a busy consumer: event 5, push 5 → 7; its final check finds the work", () => {
    const { front, back } = pair(4);
    back.finalCheckForRequests();
    produce(front, 1);
    front.pushRequestsAndCheckNotify();
    assert.deepEqual(consumeAll(back).length, 1);
    produce(front, 2);
    assert.equal(front.pushRequestsAndCheckNotify(), false);
    assert.equal(back.finalCheckForRequests(), true);
    assert.equal(back.unconsumedRequests(), 2);
  });

  it("3. notifies once for a batch: event 5, push 4 → 8, then 8 → 9 is silent", () => {
    const { front, back } = pair(4);
    back.finalCheckForRequests();
    produce(front, 4);
    assert.equal(front.pushRequestsAndCheckNotify(), true);
    produce(front, 1);
    assert.equal(front.pushRequestsAndCheckNotify(), false);
  });

  it("4. works across the wrap: event 0xffffffff, push 0xfffffffe → 2", () => {
    const { front, back } = pair(0xfffffffe);
    assert.equal(back.finalCheckForRequests(), false);
    assert.equal(back.shared.reqEvent, 0xffffffff);
    produce(front, 4);
    assert.equal(front.reqProdPvt, 2);
    assert.equal(front.pushRequestsAndCheckNotify(), true);
    assert.equal(SharedRing.needsNotify(0xfffffffe, 2, 0xffffffff), true);
  });

  it("5. honours a custom event for batching: event 12, push 4 → 8 silent, 8 → 12 notifies", () => {
    const { front, back } = pair(4);
    back.shared.reqEvent = back.reqCons + 8;
    produce(front, 4);
    assert.equal(front.pushRequestsAndCheckNotify(), false);
    produce(front, 4);
    assert.equal(front.pushRequestsAndCheckNotify(), true);
  });

  it("6. loses no wake-up: a push between the consumer's first check and its re-arm is found by the re-check", () => {
    // Consumer has handled everything up to 5 while req_event was left at 5.
    const { front, back, mem } = pair(4);
    back.finalCheckForRequests();
    produce(front, 1);
    front.pushRequestsAndCheckNotify();
    consumeAll(back);
    assert.deepEqual([back.reqCons, back.shared.reqEvent], [5, 5]);
    // Run the producer exactly inside the window: after the first check, before req_event is set.
    let notified: boolean | undefined;
    class Interleaved extends SharedRing {
      override get reqEvent(): number {
        return super.reqEvent;
      }
      override set reqEvent(v: number) {
        produce(front, 1);
        notified = front.pushRequestsAndCheckNotify();
        super.reqEvent = v;
      }
    }
    const racing = new BackRing(new Interleaved(mem, ENTRY), back.reqCons);
    racing.rspProdPvt = back.rspProdPvt;
    // The producer read the stale event 5 and did not notify, so the final check must say "work".
    assert.equal(racing.finalCheckForRequests(), true);
    assert.equal(notified, false);
    assert.equal(racing.shared.reqEvent, 6);
  });

  it("6. loses no wake-up: a push after the re-arm reads the new event and notifies", () => {
    const { front, back } = pair(4);
    back.finalCheckForRequests();
    produce(front, 1);
    front.pushRequestsAndCheckNotify();
    consumeAll(back);
    assert.equal(back.finalCheckForRequests(), false);
    assert.equal(back.shared.reqEvent, 6);
    produce(front, 1);
    assert.equal(front.pushRequestsAndCheckNotify(), true);
  });

  it("6. (responses) a push inside the frontend's final-check window is found by the re-check", () => {
    const { front, back, mem } = pair(0xfffffff0);
    let notified: boolean | undefined;
    class Interleaved extends SharedRing {
      override get rspEvent(): number {
        return super.rspEvent;
      }
      override set rspEvent(v: number) {
        back.rspProdPvt += 1;
        notified = back.pushResponsesAndCheckNotify();
        super.rspEvent = v;
      }
    }
    // rsp_event is stale at rsp_cons (as after a wake-up), so the racing push does not notify.
    front.shared.rspEvent = front.rspCons;
    const racing = new FrontRing(new Interleaved(mem, ENTRY), front.rspCons);
    assert.equal(racing.finalCheckForResponses(), true);
    assert.equal(notified, false);
  });

  it("applies the same rule to responses (rsp_event armed by the frontend's final check)", () => {
    const { front, back } = pair(0xfffffff0);
    assert.equal(front.finalCheckForResponses(), false);
    assert.equal(front.shared.rspEvent, 0xfffffff1);
    back.rspProdPvt += 2;
    assert.equal(back.pushResponsesAndCheckNotify(), true);
    back.rspProdPvt += 1;
    assert.equal(back.pushResponsesAndCheckNotify(), false);
    assert.equal(front.finalCheckForResponses(), true);
  });
});

describe("overflow checks against a hostile producer", () => {
  for (const start of [0, 0xfffffff0]) {
    const at = (d: number): number => (start + d) >>> 0;

    it(`flags a frontend that claims more than ring-size requests (start ${start})`, () => {
      const { back } = pair(start);
      assert.equal(back.requestProdOverflow(at(32)), false);
      assert.equal(back.requestProdOverflow(at(33)), true);
      assert.equal(back.requestProdOverflow(at(-1)), true);
    });

    it(`bounds the unconsumed count by the ring size, whatever req_prod says (start ${start})`, () => {
      const { back } = pair(start);
      back.shared.reqProd = at(0x80000000);
      assert.equal(back.unconsumedRequests(), 32);
      assert.equal(back.finalCheckForRequests(), true);
    });

    it(`stops consuming at ring size while responses are owed (start ${start})`, () => {
      const { back } = pair(start);
      back.shared.reqProd = at(1000);
      assert.equal(consumeAll(back).length, 32);
      assert.equal(back.reqCons, at(32));
      assert.equal(back.unconsumedRequests(), 0);
      assert.ok(back.requestConsOverflow(back.reqCons));
      back.rspProdPvt += 1;
      assert.equal(back.unconsumedRequests(), 1);
      assert.ok(!back.requestConsOverflow(back.reqCons));
    });

    it(`flags a backend that claims more than ring-size responses (start ${start})`, () => {
      const { front } = pair(start);
      assert.equal(front.responseProdOverflow(at(32)), false);
      assert.equal(front.responseProdOverflow(at(33)), true);
      assert.equal(front.responseProdOverflow(at(-1)), true);
    });
  }
});
