/**
 * A small pcapng reader for tests, written from the format's draft (little-endian sections
 * only): the blocks of a file with their bodies and options, so tests check what xenlab's
 * writer (src/lib/pcapng.ts) produced without trusting its own code.
 */
import assert from "node:assert/strict";

export interface RawOption {
  readonly code: number;
  readonly value: Uint8Array;
}

export interface RawBlock {
  readonly type: number;
  readonly offset: number;
  readonly length: number;
  readonly body: DataView;
  readonly bytes: Uint8Array;
}

export interface ReadPacket {
  readonly interfaceId: number;
  readonly timestampUs: bigint;
  readonly capturedLength: number;
  readonly originalLength: number;
  readonly data: Uint8Array;
  readonly options: RawOption[];
}

export interface ReadInterface {
  readonly linkType: number;
  readonly snapLen: number;
  readonly options: RawOption[];
}

export interface ReadCapture {
  readonly section: { major: number; minor: number; sectionLength: bigint; options: RawOption[] };
  readonly interfaces: ReadInterface[];
  readonly packets: ReadPacket[];
}

/** Every block, checking that each total length is a multiple of 4 and repeated at its end. */
export function blocks(file: Uint8Array): RawBlock[] {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out: RawBlock[] = [];
  let pos = 0;
  while (pos < file.byteLength) {
    const type = dv.getUint32(pos, true);
    const length = dv.getUint32(pos + 4, true);
    assert.equal(length % 4, 0, `block at ${pos}: length ${length} is not a multiple of 4`);
    assert.ok(pos + length <= file.byteLength, `block at ${pos}: ${length} bytes, past the end`);
    assert.equal(dv.getUint32(pos + length - 4, true), length, `block at ${pos}: trailing length`);
    out.push({
      type,
      offset: pos,
      length,
      body: new DataView(file.buffer, file.byteOffset + pos + 8, length - 12),
      bytes: file.subarray(pos, pos + length),
    });
    pos += length;
  }
  return out;
}

/** Options from `from` to the end of `body`, stopping at opt_endofopt; padding checked zero. */
export function options(body: DataView, from: number): RawOption[] {
  const out: RawOption[] = [];
  let pos = from;
  while (pos < body.byteLength) {
    const code = body.getUint16(pos, true);
    const len = body.getUint16(pos + 2, true);
    if (code === 0) {
      assert.equal(len, 0, "opt_endofopt has length 0");
      assert.equal(pos + 4, body.byteLength, "opt_endofopt ends the block");
      return out;
    }
    const value = new Uint8Array(body.buffer, body.byteOffset + pos + 4, len);
    const padded = (len + 3) & ~3;
    for (let i = len; i < padded; i++) assert.equal(body.getUint8(pos + 4 + i), 0, "option padding is zero");
    out.push({ code, value: value.slice() });
    pos += 4 + padded;
  }
  assert.equal(out.length, 0, "a list of options ends with opt_endofopt");
  return out;
}

export const optText = (opts: RawOption[], code: number): string | undefined => {
  const o = opts.find((x) => x.code === code);
  return o === undefined ? undefined : new TextDecoder().decode(o.value);
};

/** Every section of a file, in order (a file may hold several, one after the other). */
export function readSections(file: Uint8Array): ReadCapture[] {
  const bs = blocks(file);
  assert.ok(bs[0] !== undefined && bs[0].type === 0x0a0d0d0a, "starts with a Section Header Block");
  const out: ReadCapture[] = [];
  let cur: ReadCapture | null = null;
  for (const b of bs) {
    if (b.type === 0x0a0d0d0a) {
      assert.equal(b.body.getUint32(0, true), 0x1a2b3c4d, "byte-order magic, little-endian");
      cur = {
        section: {
          major: b.body.getUint16(4, true),
          minor: b.body.getUint16(6, true),
          sectionLength: b.body.getBigInt64(8, true),
          options: options(b.body, 16),
        },
        interfaces: [],
        packets: [],
      };
      out.push(cur);
    } else if (b.type === 1) {
      cur!.interfaces.push({
        linkType: b.body.getUint16(0, true),
        snapLen: b.body.getUint32(4, true),
        options: options(b.body, 8),
      });
    } else if (b.type === 6) {
      const captured = b.body.getUint32(12, true);
      const interfaceId = b.body.getUint32(0, true);
      assert.ok(interfaceId < cur!.interfaces.length, "a packet names an interface described before it");
      for (let i = captured; i < ((captured + 3) & ~3); i++)
        assert.equal(b.body.getUint8(20 + i), 0, "packet data padding is zero");
      cur!.packets.push({
        interfaceId,
        timestampUs: (BigInt(b.body.getUint32(4, true)) << 32n) | BigInt(b.body.getUint32(8, true)),
        capturedLength: captured,
        originalLength: b.body.getUint32(16, true),
        data: new Uint8Array(b.body.buffer, b.body.byteOffset + 20, captured).slice(),
        options: options(b.body, 20 + ((captured + 3) & ~3)),
      });
    } else assert.fail(`unexpected block type 0x${b.type.toString(16)}`);
  }
  return out;
}

/** The one section of a file. */
export function readCapture(file: Uint8Array): ReadCapture {
  const sections = readSections(file);
  assert.equal(sections.length, 1, "one section");
  return sections[0]!;
}
