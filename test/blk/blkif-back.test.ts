/**
 * The backend's ring against a hostile frontend, in one thread: BlkifBack with an in-memory disk
 * and a fake grant table (refs the "frontend" granted; any other ref fails to map, as the
 * hypervisor refuses it). Each check of Linux's dispatch_rw_block_io / xen_vbd_translate is a
 * case; a request rewritten after the backend took it (double fetch) is served as first read;
 * a req_prod more than a ring ahead halts the ring. The backend never throws.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BLKIF_ENTRY_SIZE,
  BLKIF_OP,
  BLKIF_RSP,
  type BlkifRequest,
  type BlkifResponse,
  decodeResponse,
  encodeIndirectSegments,
  encodeRequest,
  encodeResponse,
} from "../../src/drivers/blk/blkif.ts";
import { BlkifBack } from "../../src/drivers/blk/blkif-back.ts";
import type { BlockStore } from "../../src/drivers/blk/image.ts";
import { BackRing, FrontRing } from "../../src/ring/ring.ts";

const SECTORS = 64;

class MemStore implements BlockStore {
  readonly data = new Uint8Array(SECTORS * 512);
  readonly size = SECTORS * 512;
  readonly writable: boolean;
  /** When set, I/O waits for it (to hold a request in flight). */
  gate: Promise<void> | null = null;
  constructor(writable = true) {
    this.writable = writable;
  }
  async readv(bufs: readonly Uint8Array[], pos: number): Promise<void> {
    await this.gate;
    for (const b of bufs) {
      b.set(this.data.subarray(pos, pos + b.length));
      pos += b.length;
    }
  }
  async writev(bufs: readonly Uint8Array[], pos: number): Promise<void> {
    await this.gate;
    for (const b of bufs) {
      this.data.set(b, pos);
      pos += b.length;
    }
  }
  async flush(): Promise<void> {}
  async discard(pos: number, len: number): Promise<void> {
    this.data.fill(0, pos, pos + len);
  }
  async close(): Promise<void> {}
  /** blkback's io=inline path (the gate does not apply: nothing waits). */
  readvSync(bufs: readonly Uint8Array[], pos: number): void {
    for (const b of bufs) {
      b.set(this.data.subarray(pos, pos + b.length));
      pos += b.length;
    }
  }
  writevSync(bufs: readonly Uint8Array[], pos: number): void {
    for (const b of bufs) {
      this.data.set(b, pos);
      pos += b.length;
    }
  }
}

function setup(
  opts: {
    readonly?: boolean;
    persistent?: boolean;
    discard?: boolean;
    inline?: boolean;
    peerPolls?: () => boolean;
  } = {},
) {
  const ringMem = new Uint8Array(new SharedArrayBuffer(4096));
  const front = FrontRing.init(ringMem, BLKIF_ENTRY_SIZE);
  const back = BackRing.attach(ringMem, BLKIF_ENTRY_SIZE);
  const granted = new Map<number, Uint8Array>();
  for (let ref = 10; ref < 40; ref++) granted.set(ref, new Uint8Array(new SharedArrayBuffer(4096)));
  const store = new MemStore(!opts.readonly);
  for (let i = 0; i < store.data.length; i++) store.data[i] = (i * 7 + 3) & 0xff;
  const logs: string[] = [];
  const mapped = new Set<number>();
  /** rsp_prod at each event the backend sent. */
  const pushes: number[] = [];
  let handles = 0;
  const bb = new BlkifBack({
    ring: back,
    store,
    readonly: opts.readonly ?? false,
    discard: opts.discard ?? true,
    persistent: opts.persistent ?? false,
    inline: opts.inline ?? false,
    ...(opts.peerPolls === undefined ? {} : { peerPolls: opts.peerPolls }),
    map(ref) {
      const p = granted.get(ref);
      if (p === undefined) throw new Error(`map of ref ${ref} of domain 1: bad grant reference`);
      mapped.add(++handles);
      return { handle: handles, page: p };
    },
    unmap(h) {
      assert.ok(mapped.delete(h), `unmap of unknown handle ${h}`);
    },
    notify() {
      pushes.push(back.shared.rspProd);
      t.onNotify();
    },
    log: (l) => logs.push(l),
  });
  const scratch = new Uint8Array(BLKIF_ENTRY_SIZE);
  /** Writes raw requests into the ring and kicks the backend. */
  const send = (...reqs: BlkifRequest[]) => {
    for (const r of reqs) {
      front.shared.write(front.reqProdPvt, encodeRequest(scratch, r));
      front.reqProdPvt = front.reqProdPvt + 1;
    }
    front.pushRequests();
    bb.onEvent();
  };
  /** Waits for `n` responses and takes them. */
  const take = async (n: number): Promise<BlkifResponse[]> => {
    for (let i = 0; i < 1000 && front.unconsumedResponses() < n; i++) await new Promise(setImmediate);
    const out: BlkifResponse[] = [];
    while (front.hasUnconsumedResponses()) {
      out.push(decodeResponse(front.copyResponse(front.rspCons)));
      front.rspCons = front.rspCons + 1;
    }
    assert.equal(out.length, n, `expected ${n} responses`);
    return out;
  };
  const t = { front, bb, store, granted, logs, mapped, pushes, send, take, onNotify: (): void => {} };
  return t;
}

const seg = (gref: number, firstSect = 0, lastSect = 7) => ({ gref, firstSect, lastSect });
const rw = (
  operation: 0 | 1 | 2 | 3,
  id: number,
  sector: number,
  segs: ReturnType<typeof seg>[],
  nr = segs.length,
) =>
  ({
    operation,
    nrSegments: nr,
    handle: 51712,
    id: BigInt(id),
    sectorNumber: BigInt(sector),
    seg: segs,
  }) as const;

describe("BlkifBack: requests a sane frontend sends", () => {
  it("reads and writes through the granted pages, and unmaps them after", async () => {
    const t = setup();
    t.send(rw(BLKIF_OP.read, 1, 8, [seg(10), seg(11, 0, 3)]));
    assert.deepEqual(await t.take(1), [{ id: 1n, operation: 0, status: 0 }]);
    assert.deepEqual(t.granted.get(10), t.store.data.subarray(8 * 512, 16 * 512));
    assert.deepEqual(t.granted.get(11)!.subarray(0, 2048), t.store.data.subarray(16 * 512, 20 * 512));
    t.granted.get(12)!.fill(0xab);
    t.send(rw(BLKIF_OP.write, 2, 0, [seg(12, 2, 5)]));
    assert.deepEqual(await t.take(1), [{ id: 2n, operation: 1, status: 0 }]);
    assert.deepEqual(t.store.data.subarray(0, 4 * 512), new Uint8Array(2048).fill(0xab));
    assert.equal(t.mapped.size, 0);
  });

  it("serves an indirect request and answers with its indirect_op, as Linux", async () => {
    const t = setup();
    const segs = Array.from({ length: 8 }, (_, i) => seg(20 + i));
    encodeIndirectSegments(t.granted.get(10)!, segs);
    t.send({
      operation: 6,
      indirectOp: 0,
      nrSegments: 8,
      handle: 0,
      id: 9n,
      sectorNumber: 0n,
      indirectGrefs: [10, 0, 0, 0, 0, 0, 0, 0],
    });
    assert.deepEqual(await t.take(1), [{ id: 9n, operation: 0, status: 0 }]);
    assert.deepEqual(t.granted.get(27), t.store.data.subarray(7 * 4096, 8 * 4096));
  });

  it("answers with the request's whole 64-bit id, in the response bytes the C-checked codec gives", async () => {
    // blkback reads requests and writes responses in place, not through blkif.ts's codec (which
    // test/blk/blkif-diff.test.ts checks against io/blkif.h): the bytes must still be the codec's.
    for (const inline of [false, true]) {
      const t = setup({ inline, persistent: true });
      const ids = [0xfedcba9876543210n, (1n << 32n) + 5n, 0xffffffffn];
      encodeIndirectSegments(t.granted.get(10)!, [seg(20), seg(21)]);
      t.send(
        { ...rw(BLKIF_OP.read, 0, 8, [seg(12)]), id: ids[0]! },
        {
          operation: 6,
          indirectOp: 1,
          nrSegments: 2,
          handle: 0,
          id: ids[1]!,
          sectorNumber: 16n,
          indirectGrefs: [10, 0, 0, 0, 0, 0, 0, 0],
        },
        { ...rw(BLKIF_OP.read, 0, t.store.data.length / 512, [seg(13)]), id: ids[2]! },
      );
      const want = [
        encodeResponse(new Uint8Array(16), { id: ids[0]!, operation: BLKIF_OP.read, status: BLKIF_RSP.okay }),
        encodeResponse(new Uint8Array(16), {
          id: ids[1]!,
          operation: BLKIF_OP.write,
          status: BLKIF_RSP.okay,
        }),
        encodeResponse(new Uint8Array(16), {
          id: ids[2]!,
          operation: BLKIF_OP.read,
          status: BLKIF_RSP.error,
        }),
      ];
      for (let i = 0; i < 1000 && t.front.unconsumedResponses() < 3; i++) await new Promise(setImmediate);
      const got: Uint8Array[] = [];
      while (t.front.hasUnconsumedResponses()) {
        got.push(t.front.copyResponse(t.front.rspCons).slice(0, 16));
        t.front.rspCons = t.front.rspCons + 1;
      }
      // The refusal is answered at once, the I/O when it is done: compare in any order.
      const hex = (bs: Uint8Array[]) => bs.map((b) => Buffer.from(b).toString("hex")).sort();
      assert.deepEqual(hex(got), hex(want), `inline ${inline}`);
      assert.match(t.logs.join("\n"), /request 4294967295 \(op 0\) failed: access beyond end of device/);
    }
  });

  it("io=inline: pushes each response as it goes while the frontend may poll, one push per pass when not", () => {
    for (const polls of [true, false]) {
      const t = setup({ inline: true, peerPolls: () => polls });
      // A frontend awake for every response: rsp_event re-armed at once after each event, as
      // RING_FINAL_CHECK_FOR_RESPONSES leaves it, so every push the backend makes sends one.
      t.onNotify = () => {
        t.front.shared.rspEvent = t.front.shared.rspProd + 1;
      };
      // Apart on disk (sectors 0, 16, 32, 48): four calls, not one merged.
      t.send(...[0, 1, 2, 3].map((i) => rw(BLKIF_OP.read, i, 16 * i, [seg(10 + i)])));
      assert.deepEqual(t.pushes, polls ? [1, 2, 3, 4] : [4], `the frontend may poll: ${polls}`);
    }
  });

  it("merges the requests of one batch that follow each other on disk into one store call", async () => {
    const t = setup();
    const calls: { write: boolean; pos: number; iovs: number }[] = [];
    const readv = t.store.readv.bind(t.store);
    const writev = t.store.writev.bind(t.store);
    t.store.readv = (bufs, pos) => {
      calls.push({ write: false, pos, iovs: bufs.length });
      return readv(bufs, pos);
    };
    t.store.writev = (bufs, pos) => {
      calls.push({ write: true, pos, iovs: bufs.length });
      return writev(bufs, pos);
    };
    t.granted.get(20)!.fill(0xcd);
    t.send(
      rw(BLKIF_OP.read, 1, 0, [seg(10), seg(11)]), //   sectors 0..15
      rw(BLKIF_OP.read, 2, 16, [seg(12)]), //           16..23: merged with 1
      rw(BLKIF_OP.read, 3, 24, [seg(13, 0, 3)]), //     24..27: merged
      rw(BLKIF_OP.read, 4, 40, [seg(14)]), //           a gap: a call of its own
      rw(BLKIF_OP.write, 5, 48, [seg(20)]), //          another direction: its own
      rw(BLKIF_OP.read, 6, 56, [seg(15)]), //           after a write: its own
    );
    const rsps = await t.take(6);
    assert.deepEqual(
      rsps.map((r) => [r.id, r.status]).sort((a, b) => Number(a[0]) - Number(b[0])),
      [1n, 2n, 3n, 4n, 5n, 6n].map((id) => [id, 0]),
    );
    assert.deepEqual(calls, [
      { write: false, pos: 0, iovs: 4 },
      { write: false, pos: 40 * 512, iovs: 1 },
      { write: true, pos: 48 * 512, iovs: 1 },
      { write: false, pos: 56 * 512, iovs: 1 },
    ]);
    assert.equal(t.bb.stats.ioCalls, 4);
    assert.deepEqual(t.granted.get(12), t.store.data.subarray(16 * 512, 24 * 512));
    assert.deepEqual(t.granted.get(13)!.subarray(0, 2048), t.store.data.subarray(24 * 512, 28 * 512));
    assert.deepEqual(t.store.data.subarray(48 * 512, 56 * 512), new Uint8Array(4096).fill(0xcd));
    assert.equal(t.mapped.size, 0);
  });

  it("fails every request of a merged call when the call fails", async () => {
    const t = setup();
    t.store.readv = () => Promise.reject(new Error("EIO"));
    t.send(rw(BLKIF_OP.read, 1, 0, [seg(10)]), rw(BLKIF_OP.read, 2, 8, [seg(11)]));
    const rsps = await t.take(2);
    assert.deepEqual(
      rsps.map((r) => r.status),
      [BLKIF_RSP.error, BLKIF_RSP.error],
    );
    assert.equal(t.mapped.size, 0);
  });

  it("keeps persistent grants mapped across requests and unmaps them on stop", async () => {
    const t = setup({ persistent: true });
    t.send(rw(BLKIF_OP.read, 1, 0, [seg(10)]));
    await t.take(1);
    t.send(rw(BLKIF_OP.read, 2, 8, [seg(10)]));
    await t.take(1);
    assert.equal(t.mapped.size, 1);
    assert.equal(t.bb.stats.persistentGrants, 1);
    await t.bb.stop();
    assert.equal(t.mapped.size, 0);
  });

  it("flushes with no segments, discards to zeros", async () => {
    const t = setup();
    t.send(rw(BLKIF_OP.flushDiskcache, 1, 0, []), {
      operation: 5,
      flag: 0,
      handle: 0,
      id: 2n,
      sectorNumber: 2n,
      nrSectors: 3n,
    });
    assert.deepEqual(
      (await t.take(2)).map((r) => r.status),
      [0, 0],
    );
    assert.deepEqual(t.store.data.subarray(1024, 2560), new Uint8Array(1536));
  });
});

for (const inline of [false, true])
  describe(`BlkifBack: a hostile frontend (io=${inline ? "inline" : "threads"})`, () => {
    const refused: [string, BlkifRequest, number][] = [
      ["no segments on a read", rw(BLKIF_OP.read, 1, 0, []), BLKIF_RSP.error],
      [
        "12 segments",
        rw(
          BLKIF_OP.read,
          1,
          0,
          Array.from({ length: 11 }, () => seg(10)),
          12,
        ),
        BLKIF_RSP.error,
      ],
      ["255 segments", rw(BLKIF_OP.write, 1, 0, [seg(10)], 255), BLKIF_RSP.error],
      ["last_sect 8", rw(BLKIF_OP.read, 1, 0, [seg(10, 0, 8)]), BLKIF_RSP.error],
      ["first_sect > last_sect", rw(BLKIF_OP.read, 1, 0, [seg(10, 5, 4)]), BLKIF_RSP.error],
      ["a segment past the end", rw(BLKIF_OP.read, 1, SECTORS - 4, [seg(10)]), BLKIF_RSP.error],
      ["a sector number that wraps", rw(BLKIF_OP.read, 1, 0, [seg(10)]), BLKIF_RSP.error],
      ["a grant ref it does not own", rw(BLKIF_OP.read, 1, 0, [seg(10), seg(99)]), BLKIF_RSP.error],
      ["operation 4 (reserved)", { operation: 4, id: 1n }, BLKIF_RSP.eopnotsupp],
      ["operation 200", { operation: 200, id: 1n }, BLKIF_RSP.eopnotsupp],
      [
        "a discard past the end",
        { operation: 5, flag: 0, handle: 0, id: 1n, sectorNumber: 60n, nrSectors: 5n },
        BLKIF_RSP.error,
      ],
      [
        "an indirect request with indirect_op FLUSH",
        {
          operation: 6,
          indirectOp: 3,
          nrSegments: 1,
          handle: 0,
          id: 1n,
          sectorNumber: 0n,
          indirectGrefs: [10, 0, 0, 0, 0, 0, 0, 0],
        },
        BLKIF_RSP.error,
      ],
      [
        "an indirect request of 257 segments",
        {
          operation: 6,
          indirectOp: 0,
          nrSegments: 257,
          handle: 0,
          id: 1n,
          sectorNumber: 0n,
          indirectGrefs: [10, 11, 0, 0, 0, 0, 0, 0],
        },
        BLKIF_RSP.error,
      ],
      [
        "an indirect page it does not own",
        {
          operation: 6,
          indirectOp: 0,
          nrSegments: 2,
          handle: 0,
          id: 1n,
          sectorNumber: 0n,
          indirectGrefs: [77, 0, 0, 0, 0, 0, 0, 0],
        },
        BLKIF_RSP.error,
      ],
    ];
    for (const [what, req, status] of refused) {
      it(`answers ${status === BLKIF_RSP.error ? "BLKIF_RSP_ERROR" : "BLKIF_RSP_EOPNOTSUPP"} to ${what}, touching nothing`, async () => {
        const t = setup({ inline });
        const before = t.store.data.slice();
        const r =
          what === "a sector number that wraps"
            ? { ...(req as ReturnType<typeof rw>), sectorNumber: (1n << 64n) - 4n }
            : req;
        t.send(r);
        const [rsp] = await t.take(1);
        assert.equal(rsp!.status, status);
        assert.equal(rsp!.id, 1n);
        assert.deepEqual(t.store.data, before);
        assert.equal(t.mapped.size, 0, "every grant mapped for it is unmapped");
        // The ring still works afterwards.
        t.send(rw(BLKIF_OP.read, 2, 0, [seg(10)]));
        assert.equal((await t.take(1))[0]!.status, 0);
      });
    }

    it("checks segments inside an indirect page (last_sect 9 in the 3rd)", async () => {
      const t = setup({ inline });
      encodeIndirectSegments(t.granted.get(10)!, [seg(11), seg(12), seg(13, 0, 9)]);
      t.send({
        operation: 6,
        indirectOp: 1,
        nrSegments: 3,
        handle: 0,
        id: 1n,
        sectorNumber: 0n,
        indirectGrefs: [10, 0, 0, 0, 0, 0, 0, 0],
      });
      assert.equal((await t.take(1))[0]!.status, BLKIF_RSP.error);
    });

    it("refuses writes, flushes and discards on a read-only disk, serves reads", async () => {
      const t = setup({ readonly: true, inline });
      t.send(
        rw(BLKIF_OP.write, 1, 0, [seg(10)]),
        rw(BLKIF_OP.flushDiskcache, 2, 0, []),
        { operation: 5, flag: 0, handle: 0, id: 3n, sectorNumber: 0n, nrSectors: 1n },
        rw(BLKIF_OP.read, 4, 0, [seg(10)]),
      );
      assert.deepEqual(
        (await t.take(4)).map((r) => [r.id, r.status]),
        [
          [1n, -1],
          [2n, -1],
          [3n, -1],
          [4n, 0],
        ],
      );
    });

    // io=inline serves a request before onEvent returns: nothing is in flight to rewrite.
    if (!inline)
      it("serves a request as first read even if the frontend rewrites the slot afterwards", async () => {
        const t = setup({ inline });
        let open!: () => void;
        t.store.gate = new Promise((r) => {
          open = r;
        });
        t.granted.get(10)!.fill(0x5a);
        t.send(rw(BLKIF_OP.write, 1, 8, [seg(10)]));
        // The backend has taken it; the frontend now turns it into a write past the end, of ref 11.
        const slot = new Uint8Array(BLKIF_ENTRY_SIZE);
        t.front.shared.write(0, encodeRequest(slot, rw(BLKIF_OP.write, 1, SECTORS + 100, [seg(11)])));
        open();
        assert.equal((await t.take(1))[0]!.status, 0);
        assert.deepEqual(t.store.data.subarray(8 * 512, 16 * 512), new Uint8Array(4096).fill(0x5a));
      });

    it("refuses a persistent grant used twice at once", async () => {
      const t = setup({ persistent: true, inline });
      t.send(rw(BLKIF_OP.read, 1, 0, [seg(10), seg(10)]));
      assert.equal((await t.take(1))[0]!.status, BLKIF_RSP.error);
    });

    it("refuses a persistent grant that another request of the same pass holds, and takes it in the next", async () => {
      const t = setup({ persistent: true, inline });
      t.send(rw(BLKIF_OP.read, 1, 0, [seg(10)]), rw(BLKIF_OP.read, 2, 8, [seg(10)]));
      assert.deepEqual(
        (await t.take(2)).map((r) => [r.id, r.status]).sort((a, b) => Number(a[0]) - Number(b[0])),
        [
          [1n, BLKIF_RSP.okay],
          [2n, BLKIF_RSP.error],
        ],
      );
      t.send(rw(BLKIF_OP.read, 3, 8, [seg(10)]));
      assert.deepEqual(
        (await t.take(1)).map((r) => [r.id, r.status]),
        [[3n, BLKIF_RSP.okay]],
      );
      assert.deepEqual(t.granted.get(10), t.store.data.subarray(8 * 512, 16 * 512));
    });

    it("stops serving a ring whose req_prod runs more than a ring ahead (overflow)", async () => {
      const t = setup({ inline });
      t.front.shared.reqProd = 33;
      t.bb.onEvent();
      assert.equal(t.bb.halted, true);
      assert.match(
        t.logs.join("\n"),
        /Frontend provided bogus ring requests \(33 - 0 = 33\)\. Halting ring processing/,
      );
      t.bb.onEvent();
      await new Promise(setImmediate);
      assert.equal(t.front.unconsumedResponses(), 0);
    });
  });

describe("BlkifBack: io=inline", () => {
  it("serves a pass in the caller's thread: one call per run contiguous on disk, its responses pushed before the next call", async () => {
    const t = setup({ inline: true });
    const seen: { pos: number; iovs: number; pushed: number }[] = [];
    const readvSync = t.store.readvSync.bind(t.store);
    t.store.readvSync = (bufs, pos) => {
      // What the frontend can see when this read starts: the responses pushed so far.
      seen.push({ pos, iovs: bufs.length, pushed: t.front.shared.rspProd });
      readvSync(bufs, pos);
    };
    t.store.readv = () => Promise.reject(new Error("io=inline must not use the pool"));
    t.send(
      rw(BLKIF_OP.read, 1, 0, [seg(10)]),
      rw(BLKIF_OP.read, 2, 8, [seg(11)]), //   follows 1 on disk: the same call
      rw(BLKIF_OP.read, 3, 16, [seg(12)]), //  and 2
      rw(BLKIF_OP.read, 4, 40, [seg(13)]), //  a gap: a call of its own
    );
    // Answered before onEvent returned: no await in between.
    assert.equal(t.front.unconsumedResponses(), 4);
    assert.deepEqual(seen, [
      { pos: 0, iovs: 3, pushed: 0 },
      { pos: 40 * 512, iovs: 1, pushed: 3 },
    ]);
    assert.deepEqual(
      (await t.take(4)).map((r) => [r.id, r.status]),
      [
        [1n, 0],
        [2n, 0],
        [3n, 0],
        [4n, 0],
      ],
    );
    assert.equal(t.bb.stats.ioCalls, 2);
    assert.deepEqual(t.granted.get(11), t.store.data.subarray(8 * 512, 16 * 512));
    assert.deepEqual(t.granted.get(13), t.store.data.subarray(40 * 512, 48 * 512));
    assert.equal(t.bb.inflight, 0);
    assert.equal(t.mapped.size, 0);
  });

  it("issues the pass's writes before a flush that follows them on the ring", async () => {
    const t = setup({ inline: true });
    const order: string[] = [];
    const writevSync = t.store.writevSync.bind(t.store);
    t.store.writevSync = (bufs, pos) => {
      order.push(`write ${pos / 512}`);
      writevSync(bufs, pos);
    };
    t.store.flush = async () => {
      order.push("flush");
    };
    t.send(
      rw(BLKIF_OP.write, 1, 0, [seg(10)]),
      rw(BLKIF_OP.write, 2, 8, [seg(11)]),
      rw(BLKIF_OP.flushDiskcache, 3, 0, []),
      rw(BLKIF_OP.write, 4, 16, [seg(12)]),
    );
    assert.deepEqual(
      (await t.take(4)).map((r) => r.status),
      [0, 0, 0, 0],
    );
    assert.deepEqual(order, ["write 0", "flush", "write 16"]);
  });

  it("writes through the granted pages, and answers BLKIF_RSP_ERROR when the call throws", async () => {
    const t = setup({ inline: true });
    t.granted.get(10)!.fill(0x77);
    t.send(rw(BLKIF_OP.write, 1, 8, [seg(10)]));
    assert.equal((await t.take(1))[0]!.status, 0);
    assert.deepEqual(t.store.data.subarray(8 * 512, 16 * 512), new Uint8Array(4096).fill(0x77));
    t.store.writevSync = () => {
      throw new Error("EIO");
    };
    t.send(rw(BLKIF_OP.write, 2, 8, [seg(11)]), rw(BLKIF_OP.read, 3, 0, [seg(12)]));
    assert.deepEqual(
      (await t.take(2)).map((r) => [r.id, r.status]),
      [
        [2n, BLKIF_RSP.error],
        [3n, 0],
      ],
    );
    assert.match(t.logs.join("\n"), /request 2 \(op 1\) failed: EIO/);
    assert.equal(t.mapped.size, 0);
  });

  it("uses the store's promise calls when it has no sync ones", async () => {
    const t = setup({ inline: true });
    // Shadows the class's method: a store with readv only, as BlockStore allows.
    Object.defineProperty(t.store, "readvSync", { value: undefined });
    t.send(rw(BLKIF_OP.read, 1, 0, [seg(10)]));
    assert.equal(t.front.unconsumedResponses(), 0, "answered later, from the promise");
    assert.equal((await t.take(1))[0]!.status, 0);
    assert.deepEqual(t.granted.get(10), t.store.data.subarray(0, 4096));
  });
});
