import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { StateStreamError } from "../../src/xenstore/errors.ts";
import {
  decodeStateStream,
  encodeStateStream,
  type StateRecord,
  type StateStream,
} from "../../src/xenstore/migration-format.ts";

/**
 * A live-update dump written by Debian's C xenstored 4.17.7 (captured through ../shared/refxs
 * as test/peers/migration-c.test.ts does): dom0's ring, a socket with a watch, the socket the
 * live-update command came on (its pending "OK"), and the nodes.
 */
const C_DUMP = new Uint8Array(readFileSync(join(import.meta.dirname, "fixtures/cxenstored-4.17.state_dump")));

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const text = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

describe("decodeStateStream() on C xenstored 4.17's dump", () => {
  const s = decodeStateStream(C_DUMP);

  it("reads the preamble: version 1, little-endian", () => {
    assert.equal(s.version, 1);
    assert.equal(s.bigEndian, false);
  });

  it("reads the header's worked example: GLOBAL, then dom0's ring connection", () => {
    assert.deepEqual(s.records[0], { type: "global", socketFd: 3, evtchnFd: 6 });
    assert.deepEqual(s.records[1], {
      type: "connection",
      connId: 1,
      spec: { kind: "ring", domid: 0, tdomid: 0x7ff4, evtchn: 2 },
      inData: new Uint8Array(0),
      outRespLen: 0,
      outData: new Uint8Array(0),
      uniqueId: null,
    });
  });

  it("reads the watch of xenstore-watch's socket and the pending OK of xenstore-control's", () => {
    assert.deepEqual(s.records[3], {
      type: "watch",
      connId: 2,
      path: "/local/domain/1",
      token: "/local/domain/1",
      depth: null,
    });
    const lu = s.records[4];
    assert.ok(lu?.type === "connection" && lu.spec.kind === "socket");
    assert.equal(lu.outData.byteLength, 19);
    assert.equal(hex(lu.outData.subarray(16)), hex(text("OK\0")));
  });

  it("reads the special nodes first, then the tree parents first, with values and permissions", () => {
    const nodes = s.records.filter((r) => r.type === "node");
    assert.deepEqual(
      nodes.slice(0, 4).map((n) => n.path),
      ["@releaseDomain", "@introduceDomain", "/", "/tool"],
    );
    const vif = nodes.find((n) => n.path === "/local/domain/1/device/vif/0");
    assert.deepEqual(vif?.perms, [
      { access: 3, domid: 1, ignore: false },
      { access: 1, domid: 0, ignore: false },
    ]);
    const x = nodes.find((n) => n.path === "/tool/x");
    assert.equal(Buffer.from(x!.value).toString("latin1"), "a b");
  });

  it("encodes what it read back to C's bytes exactly", () => {
    assert.equal(hex(encodeStateStream(s)), hex(C_DUMP));
  });

  it("refuses every truncation of it with a StateStreamError", () => {
    for (let n = 0; n < C_DUMP.byteLength; n++)
      assert.throws(() => decodeStateStream(C_DUMP.subarray(0, n)), StateStreamError, `cut at ${n}`);
  });

  it("throws nothing but StateStreamError on damaged bytes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(C_DUMP.byteLength - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (flips) => {
          const b = C_DUMP.slice();
          for (const [at, v] of flips) b[at] = v;
          try {
            decodeStateStream(b);
          } catch (e) {
            assert.ok(e instanceof StateStreamError, String(e));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("decodeStateStream() refuses", () => {
  const good = encodeStateStream({ version: 2, bigEndian: false, records: [] });
  const patch = (at: number, bytes: number[]) => {
    const b = good.slice();
    b.set(bytes, at);
    return b;
  };

  it("another ident", () => {
    assert.throws(() => decodeStateStream(patch(0, [0x58])), /Not a XenStore migration stream/);
  });
  it("version 0 and versions newer than 2", () => {
    assert.throws(() => decodeStateStream(patch(8, [0, 0, 0, 0])), /Cannot read version 0/);
    assert.throws(() => decodeStateStream(patch(8, [0, 0, 0, 3])), /Cannot read version 3/);
  });
  it("flags other than the byte order", () => {
    assert.throws(() => decodeStateStream(patch(12, [0, 0, 0, 2])), /Cannot read flags 0x2/);
  });
  it("a record length that is not a multiple of 8", () => {
    const b = encodeStateStream({
      version: 1,
      bigEndian: false,
      records: [{ type: "transaction", connId: 1, txId: 2 }],
    });
    b[20] = 7;
    assert.throws(() => decodeStateStream(b), /Record 1 \(TRANSACTION_DATA\) at byte 16: length 7/);
  });
  it("bytes after END", () => {
    const b = new Uint8Array(good.byteLength + 8);
    b.set(good);
    assert.throws(() => decodeStateStream(b), /8 bytes follow the END record/);
  });
  it("a string whose length leaves out its NUL", () => {
    const b = encodeStateStream({
      version: 1,
      bigEndian: true,
      records: [{ type: "watch", connId: 1, path: "/a", token: "t", depth: null }],
    });
    // The path's length, 3 ("/a\0"), made 2.
    b[16 + 8 + 5] = 2;
    assert.throws(() => decodeStateStream(b), /path does not end in a NUL/);
  });
});

describe("encodeStateStream()", () => {
  it("pads each record to 8 bytes and counts the padding in its length", () => {
    const b = encodeStateStream({
      version: 1,
      bigEndian: false,
      records: [{ type: "watch", connId: 1, path: "/a", token: "t", depth: null }],
    });
    // 8 fixed + "/a\0" + "t\0" = 13 → 16.
    assert.equal(hex(b.subarray(16, 24)), "0300000010000000");
    assert.equal(b.byteLength, 16 + 8 + 16 + 8);
  });

  it("writes version and flags big-endian, records in the chosen order", () => {
    const b = encodeStateStream({
      version: 2,
      bigEndian: true,
      records: [{ type: "global", socketFd: -1, evtchnFd: 5 }],
    });
    assert.equal(
      hex(b.subarray(0, 32)),
      // preamble: version 2, flags 1 | GLOBAL, length 8: -1, 5
      `${hex(text("xenstore"))}00000002000000010000000100000008ffffffff00000005`,
    );
  });

  it("puts WATCH_DATA_EXTENDED's strings at offset 12, as the design says", () => {
    const b = encodeStateStream({
      version: 2,
      bigEndian: false,
      records: [{ type: "watch", connId: 1, path: "/a", token: "t", depth: 3 }],
    });
    assert.equal(hex(b.subarray(16, 24)), "0800000018000000"); // 12 + 3 + 2 = 17 → 24
    assert.equal(hex(b.subarray(24 + 8, 24 + 12)), "03000000");
    assert.equal(Buffer.from(b.subarray(24 + 12, 24 + 14)).toString("latin1"), "/a");
  });

  it("refuses what the format cannot hold", () => {
    const node = (path: string, value: Uint8Array): StateStream => ({
      version: 1,
      bigEndian: false,
      records: [
        {
          type: "node",
          connId: 0,
          txId: 0,
          access: 0,
          path,
          value,
          perms: [{ access: 0, domid: 0, ignore: false }],
        },
      ],
    });
    assert.throws(() => encodeStateStream(node("/a\0b", new Uint8Array(0))), /holds a NUL byte/);
    assert.throws(
      () => encodeStateStream(node("/a", new Uint8Array(70000))),
      /value length: 70000 does not fit/,
    );
    assert.throws(
      () => encodeStateStream({ version: 3, bigEndian: false, records: [] }),
      /Cannot encode version 3/,
    );
  });
});

// ------------------------------------------------------------------------------ round trip

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const i32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const str = fc.string({
  unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)),
  maxLength: 40,
});
const bytes = (max: number) => fc.uint8Array({ maxLength: max });
const perm = fc.record({ access: fc.integer({ min: 0, max: 3 }), domid: u16, ignore: fc.boolean() });
const quota = fc.record({ name: str, value: u32 });

const record = (version: number): fc.Arbitrary<StateRecord> =>
  fc.oneof(
    fc.record({ type: fc.constant("global" as const), socketFd: i32, evtchnFd: i32 }),
    fc.record({
      type: fc.constant("connection" as const),
      connId: u32,
      spec: fc.oneof(
        fc.record({ kind: fc.constant("ring" as const), domid: u16, tdomid: u16, evtchn: u32 }),
        fc.record({ kind: fc.constant("socket" as const), fd: i32 }),
      ),
      inData: bytes(40),
      outRespLen: u16,
      outData: bytes(40),
      uniqueId: fc.option(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
    }),
    fc.record({
      type: fc.constant("watch" as const),
      connId: u32,
      path: str,
      token: str,
      depth: fc.option(u16),
    }),
    fc.record({ type: fc.constant("transaction" as const), connId: u32, txId: u32 }),
    fc.record({
      type: fc.constant("node" as const),
      connId: u32,
      txId: u32,
      access: u16,
      path: str,
      value: bytes(60),
      perms: fc.array(perm, { maxLength: 5 }),
    }),
    fc.record({
      type: fc.constant("global-quota" as const),
      domain: fc.array(quota, { maxLength: 4 }),
      global: fc.array(quota, { maxLength: 4 }),
    }),
    fc.record({
      type: fc.constant("domain" as const),
      domid: u16,
      // Version 1 does not define `features`: it reads as 0.
      features: version >= 2 ? u32 : fc.constant(0),
      quotas: fc.array(quota, { maxLength: 4 }),
    }),
    fc.record({
      type: fc.constant("unknown" as const),
      code: fc.integer({ min: 9, max: 0xffffffff }),
      body: fc
        .integer({ min: 0, max: 5 })
        .chain((n) => fc.uint8Array({ minLength: 8 * n, maxLength: 8 * n })),
    }),
  );

const stream: fc.Arbitrary<StateStream> = fc.integer({ min: 1, max: 2 }).chain((version) =>
  fc.record({
    version: fc.constant(version),
    bigEndian: fc.boolean(),
    records: fc.array(record(version), { maxLength: 12 }),
  }),
);

describe("the migration stream codec (property)", () => {
  it("decodes what it encodes, in both byte orders and versions", () => {
    fc.assert(
      fc.property(stream, (s) => {
        // structuredClone: fast-check's records have no prototype.
        assert.deepEqual(decodeStateStream(encodeStateStream(s)), structuredClone(s));
      }),
      { numRuns: 1000 },
    );
  });

  it("encodes what it decodes to the same bytes", () => {
    fc.assert(
      fc.property(stream, (s) => {
        const b = encodeStateStream(s);
        assert.equal(hex(encodeStateStream(decodeStateStream(b))), hex(b));
        assert.equal(b.byteLength % 8, 0);
      }),
      { numRuns: 500 },
    );
  });
});
