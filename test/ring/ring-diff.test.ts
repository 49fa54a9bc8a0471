/**
 * Differential test: the TypeScript ring against Xen's own io/ring.h macros.
 *
 * test/ring/c/ring_diff.c is built with gcc against /usr/include/xen/io/ring.h and blkif.h
 * (Debian libxen-dev). The same script of operations runs through the C program and through
 * `Model` below; after every step both print the operation's result (notify / work decisions,
 * copied entries), the private indexes with every query macro, and the whole ring memory in hex.
 * The lines must be identical, byte for byte.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  BLKIF_ENTRY_SIZE,
  BLKIF_REQUEST,
  BLKIF_RESPONSE,
  BLKIF_SEGMENT,
} from "../../src/drivers/blk/blkif.ts";
import { BackRing, FrontRing, initSharedRing } from "../../src/ring/ring.ts";
import { XEN_PAGE_SIZE } from "../../src/xen/xen.ts";
import { type CReference, cReference } from "../helpers/c-reference.ts";

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), "c/ring_diff.c");
const HEADERS = ["/usr/include/xen/io/ring.h", "/usr/include/xen/io/blkif.h"];
const REFERENCE = { source: SOURCE, headers: HEADERS };

type Kind = "blkif" | "t64";
const ENTRY_SIZE: Record<Kind, number> = { blkif: BLKIF_ENTRY_SIZE, t64: 64 };
const T64_RESPONSE_SIZE = 24;

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
const dataView = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
const b01 = (x: boolean): string => (x ? "1" : "0");

/** The TypeScript side of the script interpreter; mirrors main() in ring_diff.c. */
class Model {
  kind: Kind = "blkif";
  mem: Uint8Array = new Uint8Array(0);
  front!: FrontRing;
  back!: BackRing;

  constructor() {
    this.reset("blkif", 1);
  }

  get entrySize(): number {
    return ENTRY_SIZE[this.kind];
  }

  reset(kind: Kind, pages: number): void {
    this.kind = kind;
    this.mem = new Uint8Array(new SharedArrayBuffer(pages * XEN_PAGE_SIZE));
    for (let i = 0; i < this.mem.length; i++) this.mem[i] = (i * 13 + 0x5a) & 0xff;
    this.front = FrontRing.attach(this.mem, this.entrySize, 0);
    this.back = BackRing.attach(this.mem, this.entrySize, 0);
  }

  fillRequest(slot: Uint8Array, id: number): void {
    if (this.kind === "t64") {
      for (let i = 0; i < 64; i++) slot[i] = (id + i * 7) & 0xff;
      return;
    }
    const v = dataView(slot);
    const nr = id % 12;
    v.setUint8(BLKIF_REQUEST.operation, id % 7);
    v.setUint8(BLKIF_REQUEST.nrSegments, nr);
    v.setUint16(BLKIF_REQUEST.handle, Math.imul(id, 7) & 0xffff, true);
    v.setBigUint64(BLKIF_REQUEST.id, BigInt.asUintN(64, BigInt(id) * 0x9e3779b97f4a7c15n), true);
    v.setBigUint64(BLKIF_REQUEST.sectorNumber, BigInt(id) << 9n, true);
    for (let s = 0; s < nr && s < BLKIF_REQUEST.maxSegments; s++) {
      const o = BLKIF_REQUEST.seg + s * BLKIF_SEGMENT.size;
      v.setUint32(o + BLKIF_SEGMENT.gref, (Math.imul(id, 1000) + s) >>> 0, true);
      v.setUint8(o + BLKIF_SEGMENT.firstSect, s & 7);
      v.setUint8(o + BLKIF_SEGMENT.lastSect, 7 - (s & 7));
    }
  }

  fillResponse(slot: Uint8Array, id: number, status: number): void {
    if (this.kind === "t64") {
      for (let i = 0; i < T64_RESPONSE_SIZE; i++) slot[i] = (id ^ status ^ (i * 3)) & 0xff;
      return;
    }
    const v = dataView(slot);
    v.setBigUint64(BLKIF_RESPONSE.id, BigInt(id), true);
    v.setUint8(BLKIF_RESPONSE.operation, id & 0xff);
    v.setInt16(BLKIF_RESPONSE.status, status, true);
  }

  showRequest(b: Uint8Array): string {
    if (this.kind === "t64") return `bytes=${hex(b.subarray(0, 64))}`;
    const v = dataView(b);
    const segs: string[] = [];
    for (let s = 0; s < BLKIF_REQUEST.maxSegments; s++) {
      const o = BLKIF_REQUEST.seg + s * BLKIF_SEGMENT.size;
      segs.push(
        `${v.getUint32(o + BLKIF_SEGMENT.gref, true)}:${v.getUint8(o + BLKIF_SEGMENT.firstSect)}:${v.getUint8(o + BLKIF_SEGMENT.lastSect)}`,
      );
    }
    return (
      `op=${v.getUint8(BLKIF_REQUEST.operation)} nr=${v.getUint8(BLKIF_REQUEST.nrSegments)} ` +
      `h=${v.getUint16(BLKIF_REQUEST.handle, true)} id=${v.getBigUint64(BLKIF_REQUEST.id, true)} ` +
      `sec=${v.getBigUint64(BLKIF_REQUEST.sectorNumber, true)} seg=${segs.join(",")}`
    );
  }

  showResponse(b: Uint8Array): string {
    if (this.kind === "t64") return `bytes=${hex(b.subarray(0, T64_RESPONSE_SIZE))}`;
    const v = dataView(b);
    return `id=${v.getBigUint64(BLKIF_RESPONSE.id, true)} op=${v.getUint8(BLKIF_RESPONSE.operation)} st=${v.getInt16(BLKIF_RESPONSE.status, true)}`;
  }

  state(): string {
    const { front: f, back: b } = this;
    return (
      `fp=${f.reqProdPvt} fc=${f.rspCons} bp=${b.rspProdPvt} bc=${b.reqCons} size=${f.size} ` +
      `free=${f.freeRequests()} full=${b01(f.full())} urs=${f.unconsumedResponses()} ` +
      `urq=${b.unconsumedRequests()} cov=${b01(b.requestConsOverflow(b.reqCons))} ` +
      `pov=${b01(b.requestProdOverflow(b.shared.reqProd))} rov=${b01(f.responseProdOverflow(f.shared.rspProd))}`
    );
  }

  step(line: string): string {
    const [op, a, b] = line.trim().split(/\s+/);
    const num = (s: string | undefined): number => {
      if (s === undefined) throw new Error(`Missing number in "${line}"`);
      return Number(s) >>> 0;
    };
    const { front, back } = this;
    let result = "ok";
    switch (op) {
      case "reset":
        this.reset(a === "t64" ? "t64" : "blkif", b === undefined ? 1 : num(b));
        break;
      case "init":
        this.front = FrontRing.init(this.mem, this.entrySize);
        break;
      case "shared_init":
        initSharedRing(this.mem);
        break;
      case "front_attach":
        this.front = FrontRing.attach(this.mem, this.entrySize, num(a));
        break;
      case "back_attach":
        this.back = BackRing.attach(this.mem, this.entrySize, num(a));
        break;
      case "set": {
        const v = num(b);
        const s = front.shared;
        if (a === "req_prod") s.reqProd = v;
        else if (a === "req_event") s.reqEvent = v;
        else if (a === "rsp_prod") s.rspProd = v;
        else if (a === "rsp_event") s.rspEvent = v;
        else throw new Error(`Unknown shared field "${a}"`);
        break;
      }
      case "pvt": {
        const v = num(b);
        if (a === "req_prod_pvt") front.reqProdPvt = v;
        else if (a === "rsp_cons") front.rspCons = v;
        else if (a === "rsp_prod_pvt") back.rspProdPvt = v;
        else if (a === "req_cons") back.reqCons = v;
        else throw new Error(`Unknown private field "${a}"`);
        break;
      }
      case "req":
        this.fillRequest(front.getRequest(front.reqProdPvt), num(a));
        front.reqProdPvt += 1;
        break;
      case "rsp":
        this.fillResponse(back.getResponse(back.rspProdPvt), num(a), num(b));
        back.rspProdPvt += 1;
        break;
      case "push_req":
        front.pushRequests();
        break;
      case "push_rsp":
        back.pushResponses();
        break;
      case "push_req_notify":
        result = `notify=${b01(front.pushRequestsAndCheckNotify())}`;
        break;
      case "push_rsp_notify":
        result = `notify=${b01(back.pushResponsesAndCheckNotify())}`;
        break;
      case "take_req": {
        const copy = back.copyRequest(back.reqCons);
        back.reqCons += 1;
        result = this.showRequest(copy);
        break;
      }
      case "take_rsp": {
        const size = this.kind === "t64" ? T64_RESPONSE_SIZE : BLKIF_RESPONSE.size;
        const copy = front.copyResponse(front.rspCons, new Uint8Array(size));
        front.rspCons += 1;
        result = this.showResponse(copy);
        break;
      }
      case "get_req":
        result = this.showRequest(back.getRequest(num(a)));
        break;
      case "get_rsp":
        result = this.showResponse(front.getResponse(num(a)));
        break;
      case "final_req":
        result = `work=${b01(back.finalCheckForRequests())}`;
        break;
      case "final_rsp":
        result = `work=${b01(front.finalCheckForResponses())}`;
        break;
      default:
        throw new Error(`Unknown operation "${op}"`);
    }
    return `${result} | ${this.state()} | ${hex(this.mem)}`;
  }
}

function runTs(script: readonly string[]): string[] {
  const m = new Model();
  return script.map((line) => m.step(line));
}

/** Runs both sides and fails at the first step whose line differs, naming the first bad byte. */
function assertSame(bin: CReference, script: readonly string[]): void {
  const c = bin.run(script);
  const ts = runTs(script);
  assert.equal(c.length, script.length, "C reference printed one line per step");
  for (let i = 0; i < script.length; i++) {
    const [cRes, cState, cMem] = c[i]!.split(" | ");
    const [tRes, tState, tMem] = ts[i]!.split(" | ");
    const where = `step ${i} "${script[i]}"`;
    assert.equal(tRes, cRes, `${where}: result`);
    assert.equal(tState, cState, `${where}: indexes and queries`);
    if (tMem !== cMem) {
      let k = 0;
      while (k < cMem!.length && tMem![k] === cMem![k]) k++;
      const byte = k >> 1;
      assert.fail(
        `${where}: memory differs from byte ${byte}: C ${cMem!.slice(byte * 2, byte * 2 + 32)}, ` +
          `TS ${tMem!.slice(byte * 2, byte * 2 + 32)}`,
      );
    }
  }
}

/** A ring the frontend set up and both ends resumed at `start` (as after save/restore). */
function resumedAt(kind: Kind, pages: number, start: number): string[] {
  const s = start >>> 0;
  const next = (s + 1) >>> 0;
  return [
    `reset ${kind} ${pages}`,
    "init",
    `set req_prod ${s}`,
    `set rsp_prod ${s}`,
    `set req_event ${next}`,
    `set rsp_event ${next}`,
    `front_attach ${s}`,
    `back_attach ${s}`,
  ];
}

/** One request and its response, with the notification decisions a real pair would make. */
function roundTrip(id: number): string[] {
  return [
    `req ${id}`,
    "push_req_notify",
    "take_req",
    "final_req",
    `rsp ${id} 0`,
    "push_rsp_notify",
    "take_rsp",
    "final_rsp",
  ];
}

describe("io/ring.h differential test (C macros vs src/ring/ring.ts, byte for byte)", () => {
  it("matches on a fresh one-page blkif ring: init, request, response, final checks", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    assertSame(bin, ["reset blkif 1", "init", ...roundTrip(1), ...roundTrip(2), "get_req 0", "get_rsp 1"]);
  });

  it("matches SHARED_RING_INIT on a dirty page: header reset, entries untouched", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    assertSame(bin, ["reset blkif 1", "shared_init", "reset t64 2", "init", "req 7", "push_req"]);
  });

  it("matches ring sizes rounded down to a power of two for 1 to 4 pages", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    for (const pages of [1, 2, 3, 4]) {
      assertSame(bin, [`reset blkif ${pages}`, "init", ...roundTrip(pages)]);
      assertSame(bin, [`reset t64 ${pages}`, "init", ...roundTrip(pages)]);
    }
  });

  it("matches batching: notify once per batch, none while the consumer is busy", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const script = ["reset blkif 1", "init", "final_req"];
    for (let i = 0; i < 4; i++) script.push(`req ${i}`);
    script.push("push_req_notify", "take_req", "req 10", "req 11", "push_req_notify");
    script.push("take_req", "take_req", "take_req", "take_req", "take_req", "final_req");
    for (let i = 0; i < 6; i++) script.push(`rsp ${i} ${i}`);
    script.push("push_rsp_notify", "final_rsp");
    for (let i = 0; i < 6; i++) script.push("take_rsp");
    script.push("final_rsp", "final_req", "req 20", "push_req_notify");
    assertSame(bin, script);
  });

  it("matches through the wrap of the free-running indexes past 2^32", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    for (const start of [0xfffffff0, 0xffffffff, 0xffffffe1]) {
      const script = resumedAt("blkif", 1, start);
      for (let i = 0; i < 40; i++) script.push(...roundTrip(i));
      // A full ring of 32 in one batch across the wrap, then drained.
      script.push("final_req");
      for (let i = 0; i < 32; i++) script.push(`req ${100 + i}`);
      script.push("push_req_notify", "final_req");
      for (let i = 0; i < 32; i++) script.push("take_req", `rsp ${100 + i} 1`);
      script.push("push_rsp_notify");
      for (let i = 0; i < 32; i++) script.push("take_rsp");
      script.push("final_rsp");
      assertSame(bin, script);
    }
  });

  it("matches the overflow checks against a hostile producer", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    for (const start of [0, 0xfffffff8]) {
      const s = start >>> 0;
      const script = resumedAt("blkif", 1, s);
      // The frontend claims 33, then 2^31, then "minus one" requests.
      for (const claim of [32, 33, 0x80000000, 0xffffffff]) {
        script.push(`set req_prod ${(s + claim) >>> 0}`, "final_req", "take_req");
      }
      // The backend took requests without answering: it must stop at size outstanding.
      script.push(`set req_prod ${(s + 40) >>> 0}`, `pvt req_cons ${(s + 32) >>> 0}`, "final_req");
      // The backend claims more responses than requests outstanding.
      script.push(
        `set rsp_prod ${(s + 33) >>> 0}`,
        "final_rsp",
        `set rsp_prod ${(s - 1) >>> 0}`,
        "final_rsp",
      );
      assertSame(bin, script);
    }
  });

  it("matches random operation sequences (fast-check), fresh and resumed near 2^32", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const u32 = fc.nat({ max: 0xffffffff });
    const near = fc.integer({ min: -40, max: 40 });
    const op = fc.oneof(
      { weight: 6, arbitrary: u32.map((id) => () => `req ${id}`) },
      {
        weight: 5,
        arbitrary: fc.tuple(u32, u32).map(
          ([id, st]) =>
            () =>
              `rsp ${id} ${st}`,
        ),
      },
      { weight: 2, arbitrary: fc.constant(() => "push_req") },
      { weight: 4, arbitrary: fc.constant(() => "push_req_notify") },
      { weight: 2, arbitrary: fc.constant(() => "push_rsp") },
      { weight: 4, arbitrary: fc.constant(() => "push_rsp_notify") },
      { weight: 5, arbitrary: fc.constant(() => "take_req") },
      { weight: 5, arbitrary: fc.constant(() => "take_rsp") },
      { weight: 3, arbitrary: fc.constant(() => "final_req") },
      { weight: 3, arbitrary: fc.constant(() => "final_rsp") },
      { weight: 1, arbitrary: near.map((d) => (s: number) => `get_req ${(s + d) >>> 0}`) },
      { weight: 1, arbitrary: near.map((d) => (s: number) => `get_rsp ${(s + d) >>> 0}`) },
      {
        weight: 1,
        arbitrary: fc.tuple(fc.constantFrom("req_prod", "req_event", "rsp_prod", "rsp_event"), near).map(
          ([f, d]) =>
            (s: number) =>
              `set ${f} ${(s + d) >>> 0}`,
        ),
      },
      {
        weight: 1,
        arbitrary: fc
          .tuple(fc.constantFrom("req_prod_pvt", "rsp_cons", "rsp_prod_pvt", "req_cons"), near)
          .map(
            ([f, d]) =>
              (s: number) =>
                `pvt ${f} ${(s + d) >>> 0}`,
          ),
      },
    );
    const ring = fc.oneof(
      fc.record({ kind: fc.constant<Kind>("blkif"), pages: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ kind: fc.constant<Kind>("t64"), pages: fc.integer({ min: 1, max: 2 }) }),
    );
    const start = fc.oneof(fc.constant(0), fc.integer({ min: 0xffffffc0, max: 0xffffffff }), u32);
    fc.assert(
      fc.property(ring, start, fc.array(op, { minLength: 1, maxLength: 80 }), ({ kind, pages }, s, ops) => {
        const script = s === 0 ? [`reset ${kind} ${pages}`, "init"] : resumedAt(kind, pages, s);
        assertSame(bin, [...script, ...ops.map((f) => f(s))]);
      }),
      { numRuns: 150 },
    );
  });
});
