/**
 * Differential test: the console page through xenlab's code against Xen's io/console.h with the
 * ring code of Linux's hvc_xen (guest) and xenconsoled (backend), compiled with gcc
 * (test/console/c/console_diff.c, against /usr/include/xen/io/console.h of Debian's libxen-dev).
 *
 * The same script runs through the C program and through `Model` below, which uses what xenlab
 * runs: `ConsoleFront` (the guest's writes and reads) and the backend's `ConsoleInterface` byte
 * rings. After every step both print the result, the four indexes and the ring memory in hex;
 * the lines must be identical.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { ConsoleFront } from "../../src/kernel/hvc.ts";
import { CONSOLE_INTERFACE, ConsoleInterface } from "../../src/ring/byte-ring.ts";
import { type CReference, cReference } from "../helpers/c-reference.ts";

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), "c/console_diff.c");
const HEADER = "/usr/include/xen/io/console.h";
const REFERENCE = { source: SOURCE, headers: [HEADER] };

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
const gen = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (seed + 7 * i) & 0xff);

/** The TypeScript side; mirrors main() in console_diff.c. */
class Model {
  readonly page = new Uint8Array(new SharedArrayBuffer(4096));
  readonly intf = new ConsoleInterface(this.page);

  /** A fresh guest end on the page: no queued output, so each step shows one ring pass. */
  front(): ConsoleFront {
    return new ConsoleFront({ page: this.page, notify: () => {} });
  }

  step(line: string): string {
    const [op, a, b] = line.trim().split(/\s+/);
    const n = Number(a);
    const seed = Number(b);
    let result: string;
    switch (op) {
      case "layout": {
        const C = CONSOLE_INTERFACE;
        return (
          `in ${C.in.data} in_size ${C.in.size} out ${C.out.data} out_size ${C.out.size} ` +
          `in_cons ${C.in.cons} in_prod ${C.in.prod} out_cons ${C.out.cons} out_prod ${C.out.prod} ` +
          `size ${C.structSize417}`
        );
      }
      case "reset":
        this.page.fill(n);
        this.intf.in.cons = 0;
        this.intf.in.prod = 0;
        this.intf.out.cons = 0;
        this.intf.out.prod = 0;
        result = "ok";
        break;
      case "set": {
        const v = Number(b);
        const ring = a!.startsWith("in_") ? this.intf.in : this.intf.out;
        if (a!.endsWith("_cons")) ring.cons = v;
        else ring.prod = v;
        result = "ok";
        break;
      }
      case "gwrite": {
        const f = this.front();
        const before = this.intf.out.prod;
        f.write(gen(n, seed));
        result = f.corrupt ? "corrupt" : `sent=${(this.intf.out.prod - before) >>> 0}`;
        break;
      }
      case "gread": {
        const f = this.front();
        const got: Uint8Array[] = [];
        f.setInput((bytes) => got.push(bytes));
        result = f.corrupt ? "corrupt" : `got=${got.map(hex).join("")}`;
        break;
      }
      case "bread": {
        const buf = new Uint8Array(CONSOLE_INTERFACE.out.size);
        const r = this.intf.out.read(buf);
        result = r.ok ? `got=${hex(buf.subarray(0, r.bytes))}` : "corrupt";
        break;
      }
      case "bwrite": {
        const r = this.intf.in.write(gen(n, seed));
        result = `sent=${r.ok ? r.bytes : 0}`;
        break;
      }
      default:
        throw new Error(`Unknown operation "${op}"`);
    }
    const i = this.intf;
    return `${result} | ${i.in.cons} ${i.in.prod} ${i.out.cons} ${i.out.prod} | ${hex(
      this.page.subarray(0, CONSOLE_INTERFACE.in.cons),
    )}`;
  }
}

function assertSame(bin: CReference, script: readonly string[]): void {
  const c = bin.run(script);
  const m = new Model();
  assert.equal(c.length, script.length, "C reference printed one line per step");
  for (let i = 0; i < script.length; i++) {
    const ts = m.step(script[i]!);
    if (ts === c[i]) continue;
    const [cRes, cIdx] = c[i]!.split(" | ");
    const [tRes, tIdx] = ts.split(" | ");
    const where = `step ${i} "${script[i]}"`;
    assert.equal(tRes, cRes, `${where}: result`);
    assert.equal(tIdx, cIdx, `${where}: indexes`);
    assert.fail(`${where}: ring memory differs`);
  }
}

describe("console ring differential test (io/console.h with hvc_xen and xenconsoled's loops, byte for byte)", () => {
  it("has console.h's layout: in[1024] at 0, out[2048] at 1024, then in_cons, in_prod, out_cons, out_prod", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    assertSame(bin, ["layout"]);
  });

  it("matches output and input round trips, a full out ring and a full in ring", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    assertSame(bin, [
      "reset 90",
      "gwrite 100 1",
      "bread",
      "gwrite 3000 2",
      "gwrite 10 3",
      "bread",
      "gwrite 10 4",
      "bwrite 5 9",
      "gread",
      "bwrite 2000 10",
      "bwrite 1 11",
      "gread",
      "gread",
    ]);
  });

  it("matches through the wrap of the free-running indexes past 2^32", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    assertSame(bin, [
      "reset 0",
      "set out_cons 4294967000",
      "set out_prod 4294967000",
      "set in_cons 4294967200",
      "set in_prod 4294967200",
      "gwrite 1500 5",
      "bread",
      "gwrite 1500 6",
      "bread",
      "bwrite 900 7",
      "gread",
      "bwrite 900 8",
      "gread",
    ]);
  });

  it("matches both ends' treatment of corrupt indexes (nothing moves)", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    assertSame(bin, [
      "reset 17",
      "set out_prod 2049",
      "gwrite 4 1",
      "bread",
      "set in_cons 10",
      "set in_prod 5",
      "bwrite 4 2",
      "gread",
    ]);
  });

  it("matches random operation sequences (fast-check)", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const op = fc.oneof(
      fc.tuple(fc.nat({ max: 2500 }), fc.nat({ max: 255 })).map(([n, s]) => `gwrite ${n} ${s}`),
      fc.tuple(fc.nat({ max: 1200 }), fc.nat({ max: 255 })).map(([n, s]) => `bwrite ${n} ${s}`),
      fc.constant("gread"),
      fc.constant("bread"),
    );
    const start = fc.oneof(fc.constant(0), fc.integer({ min: 0xffffff00, max: 0xffffffff }));
    fc.assert(
      fc.property(start, start, fc.array(op, { maxLength: 40 }), (o, i, ops) => {
        assertSame(bin, [
          "reset 165",
          `set out_cons ${o}`,
          `set out_prod ${o}`,
          `set in_cons ${i}`,
          `set in_prod ${i}`,
          ...ops,
        ]);
      }),
      { numRuns: 60 },
    );
  });
});
