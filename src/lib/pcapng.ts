/**
 * The pcapng capture format (IETF draft-ietf-opsawg-pcapng, the format Wireshark and tshark
 * write by default): pure encoders of the three blocks a capture needs, bytes out.
 *
 * A file is a Section Header Block, then one Interface Description Block per interface (each
 * naming its link type; an IDB may come at any point of the section, before the first packet
 * that refers to it), then Enhanced Packet Blocks, each naming its interface by the order its
 * IDB came in (0, 1, …). Every block is
 *
 *   u32 type | u32 total length | body | options | u32 total length (again)
 *
 * padded to 4 bytes. An option is `u16 code | u16 length | value`, padded to 4 bytes, and a
 * list of options ends with code 0 (opt_endofopt). Blocks are written in the writer's byte
 * order, which the SHB's byte-order magic 0x1A2B3C4D tells the reader; these encoders write
 * little-endian. No npm package writes pcapng for Node (only libpcap bindings and pcap
 * readers), so this is the small part of the format xenlab needs.
 *
 * Example: an EPB of a 60-byte frame on interface 0, inbound, with no comment is
 * 28 bytes of header + 60 of data + 12 of options (epb_flags: 4 + 4, end: 4) + 4 = 104 bytes.
 */

export const BlockType = {
  SECTION_HEADER: 0x0a0d0d0a,
  INTERFACE_DESCRIPTION: 0x00000001,
  ENHANCED_PACKET: 0x00000006,
} as const;

export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Link types (tcpdump.org's LINKTYPE_ values) xenlab writes. */
export const LinkType = {
  ETHERNET: 1,
  /** LINKTYPE_USER0 (DLT 147): private use; xenlab's XenStore capture (src/host/xs-capture.ts). */
  USER0: 147,
} as const;

/** Option codes. */
export const Opt = {
  END: 0,
  COMMENT: 1,
  SHB_HARDWARE: 2,
  SHB_OS: 3,
  SHB_USERAPPL: 4,
  IF_NAME: 2,
  IF_DESCRIPTION: 3,
  IF_TSRESOL: 9,
  EPB_FLAGS: 2,
} as const;

/** epb_flags bits 0–1: the packet's direction on its interface. */
export const Direction = { unknown: 0, inbound: 1, outbound: 2 } as const;
export type DirectionCode = (typeof Direction)[keyof typeof Direction];

export interface SectionHeader {
  /** shb_userappl: the application that wrote the capture. */
  readonly application?: string;
  readonly os?: string;
  readonly hardware?: string;
  readonly comment?: string;
}

export interface InterfaceDescription {
  readonly linkType: number;
  /** Largest number of bytes kept of a packet (0: no limit). Default 262144, as tcpdump. */
  readonly snapLen?: number;
  /** if_name: what Wireshark shows as the interface (frame.interface_name). */
  readonly name?: string;
  readonly description?: string;
  readonly comment?: string;
}

export interface EnhancedPacket {
  /** The interface's number: the order its IDB came in the section. */
  readonly interfaceId: number;
  /** Microseconds since 1970 (the default if_tsresol, 10^-6); a whole number below 2^53. */
  readonly timestampUs: number;
  readonly data: Uint8Array;
  /** Length of the packet on the wire (default: data's; more when it was cut to the snap length). */
  readonly originalLength?: number;
  readonly direction?: DirectionCode;
  readonly comment?: string;
}

/** Default snap length, as tcpdump's and dumpcap's. */
export const DEFAULT_SNAPLEN = 262144;

const ENCODER = new TextEncoder();
const pad4 = (n: number): number => (n + 3) & ~3;

interface Option {
  readonly code: number;
  readonly value: Uint8Array;
}

const text = (code: number, s: string | undefined): Option[] =>
  s === undefined ? [] : [{ code, value: ENCODER.encode(s) }];

function optionsLength(opts: readonly Option[]): number {
  if (opts.length === 0) return 0;
  let n = 4; // opt_endofopt
  for (const o of opts) n += 4 + pad4(o.value.byteLength);
  return n;
}

function writeOptions(dv: DataView, bytes: Uint8Array, pos: number, opts: readonly Option[]): number {
  if (opts.length === 0) return pos;
  for (const o of opts) {
    if (o.value.byteLength > 0xffff)
      throw new RangeError(`Option ${o.code} is ${o.value.byteLength} bytes: at most 65535`);
    dv.setUint16(pos, o.code, true);
    dv.setUint16(pos + 2, o.value.byteLength, true);
    bytes.set(o.value, pos + 4);
    pos += 4 + pad4(o.value.byteLength);
  }
  dv.setUint32(pos, 0, true); // opt_endofopt: code 0, length 0
  return pos + 4;
}

/** A block of `type` whose fixed body is `bodyLen` bytes (filled by `fill`), then `opts`. */
function block(
  type: number,
  bodyLen: number,
  opts: readonly Option[],
  fill: (dv: DataView, bytes: Uint8Array) => void,
): Uint8Array {
  const total = 12 + pad4(bodyLen) + optionsLength(opts);
  const bytes = new Uint8Array(total); // zeroed: padding is 0
  const dv = new DataView(bytes.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(4, total, true);
  fill(dv, bytes);
  writeOptions(dv, bytes, 8 + pad4(bodyLen), opts);
  dv.setUint32(total - 4, total, true);
  return bytes;
}

/** A Section Header Block, version 1.0, section length unknown (-1). */
export function sectionHeaderBlock(h: SectionHeader = {}): Uint8Array {
  const opts = [
    ...text(Opt.COMMENT, h.comment),
    ...text(Opt.SHB_HARDWARE, h.hardware),
    ...text(Opt.SHB_OS, h.os),
    ...text(Opt.SHB_USERAPPL, h.application),
  ];
  return block(BlockType.SECTION_HEADER, 16, opts, (dv) => {
    dv.setUint32(8, BYTE_ORDER_MAGIC, true);
    dv.setUint16(12, 1, true);
    dv.setUint16(14, 0, true);
    dv.setBigInt64(16, -1n, true);
  });
}

/** An Interface Description Block; timestamps of its packets are in microseconds (if_tsresol 6). */
export function interfaceDescriptionBlock(i: InterfaceDescription): Uint8Array {
  if (!Number.isInteger(i.linkType) || i.linkType < 0 || i.linkType > 0xffff)
    throw new RangeError(`Link type must be a 16-bit number, not ${i.linkType}`);
  const opts = [
    ...text(Opt.COMMENT, i.comment),
    ...text(Opt.IF_NAME, i.name),
    ...text(Opt.IF_DESCRIPTION, i.description),
    { code: Opt.IF_TSRESOL, value: Uint8Array.of(6) },
  ];
  return block(BlockType.INTERFACE_DESCRIPTION, 8, opts, (dv) => {
    dv.setUint16(8, i.linkType, true);
    dv.setUint16(10, 0, true);
    dv.setUint32(12, i.snapLen ?? DEFAULT_SNAPLEN, true);
  });
}

/** The length of an EPB of `dataLen` bytes, with a direction flag or not, and a comment of `commentLen` bytes. */
export function enhancedPacketLength(dataLen: number, flags: boolean, commentLen: number): number {
  const opts = (flags ? 8 : 0) + (commentLen > 0 ? 4 + pad4(commentLen) : 0);
  return 32 + pad4(dataLen) + (opts > 0 ? opts + 4 : 0);
}

/** Writes `n` zero bytes at `pos` (padding, in a buffer that is reused). */
function zero(bytes: Uint8Array, pos: number, n: number): void {
  for (let i = 0; i < n; i++) bytes[pos + i] = 0;
}

const TWO_32 = 2 ** 32;

/**
 * Writes an Enhanced Packet Block at `off` of `bytes` (`dv` over the same buffer) except its
 * data, which the caller writes at `off + 28`, `capturedLen` bytes long; padding is zeroed here.
 * `bytes` must have room for `enhancedPacketLength()`. Returns the block's length. The writer's
 * fast path: no allocation per packet.
 */
export function writeEnhancedPacket(
  bytes: Uint8Array,
  dv: DataView,
  off: number,
  interfaceId: number,
  timestampUs: number,
  capturedLen: number,
  originalLen: number,
  direction: DirectionCode,
  comment: Uint8Array | null,
): number {
  const commentLen = comment === null ? 0 : comment.byteLength;
  if (commentLen > 0xffff)
    throw new RangeError(`Option ${Opt.COMMENT} is ${commentLen} bytes: at most 65535`);
  const flags = direction !== Direction.unknown;
  const total = enhancedPacketLength(capturedLen, flags, commentLen);
  const hi = Math.floor(timestampUs / TWO_32);
  dv.setUint32(off, BlockType.ENHANCED_PACKET, true);
  dv.setUint32(off + 4, total, true);
  dv.setUint32(off + 8, interfaceId, true);
  dv.setUint32(off + 12, hi, true);
  dv.setUint32(off + 16, timestampUs - hi * TWO_32, true);
  dv.setUint32(off + 20, capturedLen, true);
  dv.setUint32(off + 24, originalLen, true);
  let pos = off + 28 + capturedLen;
  const padded = off + 28 + pad4(capturedLen);
  zero(bytes, pos, padded - pos);
  pos = padded;
  if (commentLen > 0) {
    dv.setUint16(pos, Opt.COMMENT, true);
    dv.setUint16(pos + 2, commentLen, true);
    bytes.set(comment!, pos + 4);
    zero(bytes, pos + 4 + commentLen, pad4(commentLen) - commentLen);
    pos += 4 + pad4(commentLen);
  }
  if (flags) {
    dv.setUint16(pos, Opt.EPB_FLAGS, true);
    dv.setUint16(pos + 2, 4, true);
    dv.setUint32(pos + 4, direction, true);
    pos += 8;
  }
  if (flags || commentLen > 0) {
    dv.setUint32(pos, 0, true); // opt_endofopt
    pos += 4;
  }
  dv.setUint32(pos, total, true);
  return total;
}

/** An Enhanced Packet Block. */
export function enhancedPacketBlock(p: EnhancedPacket): Uint8Array {
  const comment = p.comment === undefined ? null : ENCODER.encode(p.comment);
  const direction = p.direction ?? Direction.unknown;
  const len = p.data.byteLength;
  const bytes = new Uint8Array(
    enhancedPacketLength(len, direction !== Direction.unknown, comment?.byteLength ?? 0),
  );
  writeEnhancedPacket(
    bytes,
    new DataView(bytes.buffer),
    0,
    p.interfaceId,
    p.timestampUs,
    len,
    p.originalLength ?? len,
    direction,
    comment,
  );
  bytes.set(p.data, 28);
  return bytes;
}
