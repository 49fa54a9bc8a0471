import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  ByteRing,
  type ByteRingResult,
  CONSOLE_INTERFACE,
  ConsoleInterface,
  XENSTORE_INTERFACE,
  XenstoreInterface,
  XS_RING_ERROR,
  XS_SERVER_FEATURE,
} from "../../src/ring/byte-ring.ts";
import { hasCommand, requirePeer, tempDir } from "../helpers/peers.ts";

function page(fill = 0): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(4096)).fill(fill);
}

const bytes = (n: number, seed = 1): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (seed + i * 7) & 0xff);
const ok = (n: number): ByteRingResult => ({ ok: true, bytes: n });

describe("ByteRing", () => {
  it("reads back what was written, with free-running indexes starting anywhere", () => {
    const xs = new XenstoreInterface(page());
    xs.req.cons = 0x12345678;
    xs.req.prod = 0x12345678;
    const msg = bytes(100);
    assert.deepEqual(xs.req.write(msg), ok(100));
    assert.equal(xs.req.prod, 0x12345678 + 100);
    const out = new Uint8Array(100);
    assert.deepEqual(xs.req.read(out), ok(100));
    assert.deepEqual(out, msg);
    assert.equal(xs.req.cons, xs.req.prod);
  });

  it("writes only as much as fits and reads only what is there", () => {
    const xs = new XenstoreInterface(page());
    assert.deepEqual(xs.rsp.write(bytes(1000)), ok(1000));
    assert.deepEqual(xs.rsp.write(bytes(100, 9)), ok(24));
    assert.deepEqual(xs.rsp.space(), ok(0));
    assert.deepEqual(xs.rsp.write(bytes(1)), ok(0));
    const out = new Uint8Array(2000);
    assert.deepEqual(xs.rsp.read(out), ok(1024));
    assert.deepEqual(out.subarray(0, 1000), bytes(1000));
    assert.deepEqual(out.subarray(1000, 1024), bytes(24, 9));
    assert.deepEqual(xs.rsp.read(out), ok(0));
  });

  it("wraps at the end of the array: byte x lives at x & (size - 1)", () => {
    const mem = page();
    const xs = new XenstoreInterface(mem);
    xs.req.cons = 1000;
    xs.req.prod = 1000;
    const msg = bytes(100);
    xs.req.write(msg);
    assert.deepEqual(mem.subarray(1000, 1024), msg.subarray(0, 24));
    assert.deepEqual(mem.subarray(0, 76), msg.subarray(24));
    const out = new Uint8Array(100);
    xs.req.read(out);
    assert.deepEqual(out, msg);
  });

  it("wraps the indexes past 2^32", () => {
    const xs = new XenstoreInterface(page());
    xs.rsp.cons = 0xffffffc0;
    xs.rsp.prod = 0xffffffc0;
    assert.deepEqual(xs.rsp.write(bytes(200)), ok(200));
    assert.equal(xs.rsp.prod, 0x88);
    assert.deepEqual(xs.rsp.available(), ok(200));
    const out = new Uint8Array(200);
    assert.deepEqual(xs.rsp.read(out), ok(200));
    assert.deepEqual(out, bytes(200));
    assert.equal(xs.rsp.cons, 0x88);
  });

  it("peeks without consuming", () => {
    const xs = new XenstoreInterface(page());
    xs.req.write(bytes(16));
    const head = new Uint8Array(4);
    assert.deepEqual(xs.req.peek(head), ok(4));
    assert.deepEqual(xs.req.available(), ok(16));
    assert.equal(xs.req.cons, 0);
  });

  it("treats prod − cons = size as full, not corrupt", () => {
    const xs = new XenstoreInterface(page());
    xs.req.cons = 7;
    xs.req.prod = 7 + 1024;
    assert.deepEqual(xs.req.available(), ok(1024));
    assert.deepEqual(xs.req.write(bytes(1)), ok(0));
  });

  for (const [name, cons, prod] of [
    ["prod − cons > size", 0, 1025],
    ["cons ahead of prod", 10, 5],
    ["prod far ahead across the wrap", 0xfffffff0, 0x00001000],
  ] as const) {
    it(`reports corrupt indexes (${name}) and moves nothing`, () => {
      const mem = page(0x5a);
      const xs = new XenstoreInterface(mem);
      xs.req.cons = cons;
      xs.req.prod = prod;
      const before = mem.slice();
      const bad = { ok: false, cons, prod };
      assert.deepEqual(xs.req.available(), bad);
      assert.deepEqual(xs.req.space(), bad);
      assert.deepEqual(xs.req.write(bytes(10)), bad);
      const out = new Uint8Array(10);
      assert.deepEqual(xs.req.read(out), bad);
      assert.deepEqual(xs.req.peek(out), bad);
      assert.deepEqual(mem, before);
      assert.ok(out.every((b) => b === 0));
    });
  }

  it("lets the caller flag corruption in the XenStore error field (error = 2)", () => {
    const mem = page();
    const xs = new XenstoreInterface(mem);
    xs.req.prod = 5000;
    const r = xs.req.read(new Uint8Array(16));
    if (!r.ok) xs.error = XS_RING_ERROR.badIndex;
    assert.equal(new DataView(mem.buffer).getUint32(2072, true), 2);
  });

  it("never touches the other direction", () => {
    const mem = page(0x11);
    const xs = new XenstoreInterface(mem);
    xs.req.cons = 0;
    xs.req.prod = 0;
    xs.req.write(bytes(1024));
    assert.ok(mem.subarray(1024, 2048).every((b) => b === 0x11));
  });

  it("rejects a layout whose size is not a power of two", () => {
    assert.throws(() => new ByteRing(page(), { data: 0, size: 1000, cons: 2048, prod: 2052 }), RangeError);
  });
});

describe("XenstoreInterface", () => {
  it("places the indexes and control words where xs_wire.h puts them", () => {
    const mem = page();
    const xs = new XenstoreInterface(mem);
    xs.req.cons = 1;
    xs.req.prod = 2;
    xs.rsp.cons = 3;
    xs.rsp.prod = 4;
    xs.addServerFeatures(XS_SERVER_FEATURE.reconnection | XS_SERVER_FEATURE.error);
    xs.connection = 1;
    xs.error = 3;
    xs.evtchnPort = 7;
    const v = new DataView(mem.buffer);
    assert.deepEqual(
      [2048, 2052, 2056, 2060, 2064, 2068, 2072, 2076].map((o) => v.getUint32(o, true)),
      [1, 2, 3, 4, 3, 1, 3, 7],
    );
  });

  it("only ever sets server feature bits", () => {
    const xs = new XenstoreInterface(page());
    xs.addServerFeatures(XS_SERVER_FEATURE.error);
    xs.addServerFeatures(XS_SERVER_FEATURE.reconnection);
    assert.equal(xs.serverFeatures, 3);
  });
});

describe("ConsoleInterface", () => {
  it("has a 1024-byte in ring and a 2048-byte out ring at console.h's offsets", () => {
    const mem = page();
    const con = new ConsoleInterface(mem);
    con.out.cons = 2040;
    con.out.prod = 2040;
    assert.deepEqual(con.out.write(bytes(3000)), { ok: true, bytes: 2048 });
    assert.deepEqual(mem.subarray(1024 + 2040, 1024 + 2048), bytes(8));
    assert.deepEqual(mem.subarray(1024, 1024 + 2040), bytes(3000).subarray(8, 2048));
    con.in.write(bytes(5));
    assert.deepEqual(mem.subarray(0, 5), bytes(5));
    const v = new DataView(mem.buffer);
    assert.deepEqual(
      [3072, 3076, 3080, 3084].map((o) => v.getUint32(o, true)),
      [0, 5, 2040, 2040 + 2048],
    );
    con.connection = 1;
    assert.equal(mem[3088], 1);
  });
});

describe("layout constants against Xen's headers (gcc, offsetof)", () => {
  it("match xs_wire.h and console.h of the installed libxen-dev", (t) => {
    const headers = ["/usr/include/xen/io/xs_wire.h", "/usr/include/xen/io/console.h"];
    const present = hasCommand("gcc") && headers.every((h) => existsSync(h));
    if (!requirePeer(t, "gcc and Xen's io/xs_wire.h, io/console.h (Debian libxen-dev)", present)) return;
    const dir = tempDir("xenlab-byte-ring-");
    try {
      const src = join(dir, "probe.c");
      writeFileSync(
        src,
        `#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <xen/io/xs_wire.h>
#include <xen/io/console.h>
#define O(s, f) printf(#f " %zu\\n", offsetof(struct s, f))
int main(void) {
  O(xenstore_domain_interface, req); O(xenstore_domain_interface, rsp);
  O(xenstore_domain_interface, req_cons); O(xenstore_domain_interface, req_prod);
  O(xenstore_domain_interface, rsp_cons); O(xenstore_domain_interface, rsp_prod);
  O(xenstore_domain_interface, server_features); O(xenstore_domain_interface, connection);
  O(xenstore_domain_interface, error);
  printf("xs_size %zu\\nxs_ring %d\\n", sizeof(struct xenstore_domain_interface), XENSTORE_RING_SIZE);
  O(xencons_interface, in); O(xencons_interface, out);
  O(xencons_interface, in_cons); O(xencons_interface, in_prod);
  O(xencons_interface, out_cons); O(xencons_interface, out_prod);
  printf("in_size %zu\\nout_size %zu\\ncons_size %zu\\n", sizeof(((struct xencons_interface *)0)->in),
         sizeof(((struct xencons_interface *)0)->out), sizeof(struct xencons_interface));
  return 0;
}
`,
      );
      const bin = join(dir, "probe");
      execFileSync("gcc", ["-std=gnu11", "-o", bin, src]);
      const c = Object.fromEntries(
        execFileSync(bin, { encoding: "utf8" })
          .trim()
          .split("\n")
          .map((l) => l.split(" ") as [string, string])
          .map(([k, v]) => [k, Number(v)]),
      );
      const X = XENSTORE_INTERFACE;
      const C = CONSOLE_INTERFACE;
      assert.deepEqual(c, {
        req: X.req.data,
        rsp: X.rsp.data,
        req_cons: X.req.cons,
        req_prod: X.req.prod,
        rsp_cons: X.rsp.cons,
        rsp_prod: X.rsp.prod,
        server_features: X.serverFeatures,
        connection: X.connection,
        error: X.error,
        xs_size: X.structSize417,
        xs_ring: X.ringSize,
        in: C.in.data,
        out: C.out.data,
        in_cons: C.in.cons,
        in_prod: C.in.prod,
        out_cons: C.out.cons,
        out_prod: C.out.prod,
        in_size: C.in.size,
        out_size: C.out.size,
        cons_size: C.structSize417,
      });
      assert.equal(X.req.size, X.ringSize);
      assert.equal(X.rsp.size, X.ringSize);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
