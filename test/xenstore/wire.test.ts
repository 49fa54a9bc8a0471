import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { PayloadTooLargeError } from "../../src/xenstore/errors.ts";
import {
  atoi,
  decodeHeader,
  encodePacket,
  HEADER_SIZE,
  PacketReader,
  splitStrings,
  type XsPacket,
  XsType,
} from "../../src/xenstore/wire.ts";

const enc = (s: string) => new TextEncoder().encode(s);

describe("encodePacket() / decodeHeader()", () => {
  it("lays out type, req_id, tx_id and len as little-endian uint32", () => {
    const b = encodePacket({ type: XsType.READ, reqId: 0x01020304, txId: 7, payload: enc("/test\0") });
    assert.deepEqual([...b.subarray(0, 16)], [2, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0, 6, 0, 0, 0]);
    assert.equal(new TextDecoder().decode(b.subarray(16)), "/test\0");
    assert.deepEqual(decodeHeader(b), { type: 2, reqId: 0x01020304, txId: 7, len: 6 });
  });

  it("rejects a short header with a RangeError", () => {
    assert.throws(() => decodeHeader(new Uint8Array(3)), /need 16 bytes, got 3/);
  });
});

describe("splitStrings()", () => {
  it("tells terminated from unterminated payloads", () => {
    assert.deepEqual(splitStrings(enc("a\0b\0")), { parts: ["a", "b"], terminated: true });
    assert.deepEqual(splitStrings(enc("a\0b")), { parts: ["a", "b"], terminated: false });
  });
});

describe("atoi()", () => {
  it("reads blanks, a sign and decimal digits, and stops at anything else", () => {
    assert.equal(atoi("42"), 42);
    assert.equal(atoi(" \t+7x"), 7);
    assert.equal(atoi("-5"), -5);
    assert.equal(atoi(" 12abc"), 12);
    assert.equal(atoi("abc"), 0);
    assert.equal(atoi(""), 0);
    assert.equal(atoi("0x10"), 0);
  });

  it("keeps the low 32 bits of a long, as glibc's (int) strtol() does: 4294967297 is 1", () => {
    assert.equal(atoi("4294967297"), 1);
    assert.equal(atoi("4294967296"), 0);
    assert.equal(atoi("2147483648"), -2147483648);
    assert.equal(atoi("-4294967297"), -1);
    assert.equal(atoi("000000000000000000004294967297"), 1);
  });

  it("clamps an overflowing long to LONG_MAX or LONG_MIN before the cast", () => {
    assert.equal(atoi("9223372036854775807"), -1);
    assert.equal(atoi("99999999999999999999"), -1);
    assert.equal(atoi("-9223372036854775808"), 0);
    assert.equal(atoi("-99999999999999999999"), 0);
  });
});

function feed(reader: PacketReader, bytes: Uint8Array, chunk: number): XsPacket[] {
  const out: XsPacket[] = [];
  for (let i = 0; i < bytes.byteLength; i += chunk) out.push(...reader.push(bytes.subarray(i, i + chunk)));
  return out;
}

describe("PacketReader", () => {
  const packets: XsPacket[] = [
    { type: XsType.WRITE, reqId: 1, txId: 0, payload: enc("/a\0value") },
    { type: XsType.RESET_WATCHES, reqId: 2, txId: 0, payload: new Uint8Array(0) },
    { type: XsType.READ, reqId: 3, txId: 9, payload: enc("/a\0") },
  ];
  const stream = Uint8Array.from(packets.flatMap((p) => [...encodePacket(p)]));

  it("reads packets fed whole", () => {
    assert.deepEqual(new PacketReader().push(stream), packets);
  });

  it("reads packets fed one byte at a time", () => {
    assert.deepEqual(feed(new PacketReader(), stream, 1), packets);
  });

  it("reads any split of any packet sequence", () => {
    const packet = fc.record({
      type: fc.integer({ min: 0, max: 0xffff }),
      reqId: fc.integer({ min: 0, max: 0xffffffff }),
      txId: fc.integer({ min: 0, max: 0xffffffff }),
      payload: fc.uint8Array({ maxLength: 4096 }),
    });
    fc.assert(
      fc.property(fc.array(packet, { maxLength: 6 }), fc.integer({ min: 1, max: 5000 }), (ps, chunk) => {
        const bytes = Uint8Array.from(ps.flatMap((p) => [...encodePacket(p)]));
        assert.deepEqual(
          feed(new PacketReader(), bytes, chunk),
          ps.map((p) => ({ ...p })),
        );
      }),
      { numRuns: 200 },
    );
  });

  it("accepts a payload of exactly 4096 bytes", () => {
    const p = { type: XsType.WRITE, reqId: 0, txId: 0, payload: new Uint8Array(4096) };
    assert.equal(new PacketReader().push(encodePacket(p))[0]!.payload.byteLength, 4096);
  });

  it("rejects payload over 4096 bytes as soon as the header is in", () => {
    const h = encodePacket({ type: XsType.WRITE, reqId: 0, txId: 0, payload: new Uint8Array(4097) });
    const r = new PacketReader();
    feed(r, h.subarray(0, HEADER_SIZE - 1), 1);
    const early = r.error;
    assert.equal(early, null, "not before the header is in");
    feed(r, h.subarray(HEADER_SIZE - 1, HEADER_SIZE), 1);
    const err = r.error;
    assert.ok(err instanceof PayloadTooLargeError);
    assert.equal(err.length, 4097);
    assert.deepEqual(r.push(h), [], "and reads nothing after it");
  });

  it("reports a partial packet while one is being read", () => {
    const r = new PacketReader();
    r.push(stream.subarray(0, 5));
    assert.equal(r.partial, true);
    r.push(stream.subarray(5));
    assert.equal(r.partial, false);
  });
});
