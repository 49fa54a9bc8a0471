/**
 * The XenStore wire format (Xen `io/xs_wire.h`): a 16-byte header of four little-endian
 * uint32 (`type`, `req_id`, `tx_id`, `len`) followed by `len` payload bytes. Pure: bytes in,
 * typed values out.
 */
import { PayloadTooLargeError } from "./errors.ts";

export const XsType = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  /** 20 was XS_RESTRICT, removed: invalid. */
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
  GET_FEATURE: 23,
  SET_FEATURE: 24,
  GET_QUOTA: 25,
  SET_QUOTA: 26,
  INVALID: 0xffff,
} as const;

export type XsTypeCode = (typeof XsType)[keyof typeof XsType];

const TYPE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(XsType).map(([k, v]) => [v, k]));

/** `XS_READ` → "READ"; unknown codes → "TYPE<n>". */
export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `TYPE${type}`;
}

export const HEADER_SIZE = 16;
export const XENSTORE_PAYLOAD_MAX = 4096;
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

export interface XsPacket {
  type: number;
  reqId: number;
  txId: number;
  payload: Uint8Array;
}

export interface XsHeader {
  type: number;
  reqId: number;
  txId: number;
  len: number;
}

export function decodeHeader(buf: Uint8Array, offset = 0): XsHeader {
  if (buf.byteLength - offset < HEADER_SIZE) {
    throw new RangeError(`Cannot decode header: need ${HEADER_SIZE} bytes, got ${buf.byteLength - offset}`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, HEADER_SIZE);
  return {
    type: dv.getUint32(0, true),
    reqId: dv.getUint32(4, true),
    txId: dv.getUint32(8, true),
    len: dv.getUint32(12, true),
  };
}

/** Writes a header at `offset` of `buf`. */
export function writeHeader(
  buf: Uint8Array,
  offset: number,
  type: number,
  reqId: number,
  txId: number,
  len: number,
): void {
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, HEADER_SIZE);
  dv.setUint32(0, type >>> 0, true);
  dv.setUint32(4, reqId >>> 0, true);
  dv.setUint32(8, txId >>> 0, true);
  dv.setUint32(12, len >>> 0, true);
}

export function encodePacket(p: XsPacket): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + p.payload.byteLength);
  writeHeader(out, 0, p.type, p.reqId, p.txId, p.payload.byteLength);
  out.set(p.payload, HEADER_SIZE);
  return out;
}

// ---------------------------------------------------------------------------------------
// Payloads: NUL-terminated strings, and the bytes after them
//
// The daemon reads a payload as C xenstored does, one char per byte (latin1), so any byte
// survives and nothing throws; a client speaks UTF-8 strings.

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** UTF-8 bytes of a string. */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

export function fromUtf8(b: Uint8Array): string {
  return decoder.decode(b);
}

/** Bytes of a string, one byte per char (latin1): what the daemon sends back is exact. */
export function latin1(s: string): Uint8Array {
  return Buffer.from(s, "latin1");
}

/** Bytes `start` to `end` of `b` as a string, one char per byte: exact for any byte. */
export function fromLatin1(b: Uint8Array, start = 0, end = b.byteLength): string {
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString("latin1");
}

/**
 * `["a","b"]` → `a\0b\0` (UTF-8, each string NUL-terminated), then `tail` as it is, with no
 * NUL: the raw value of a WRITE.
 */
export function joinStrings(parts: readonly string[], tail?: Uint8Array): Uint8Array {
  const encoded = parts.map(utf8);
  let len = tail?.byteLength ?? 0;
  for (const p of encoded) len += p.byteLength + 1;
  const out = new Uint8Array(len);
  let pos = 0;
  for (const p of encoded) {
    out.set(p, pos);
    pos += p.byteLength + 1; // the NUL is already there
  }
  if (tail !== undefined) out.set(tail, pos);
  return out;
}

/**
 * Splits a payload into its NUL-terminated strings (UTF-8). Bytes after the last NUL (an
 * unterminated tail) are returned as the final element, so callers can tell
 * `"a\0"` (["a"]) from `"a"` (["a"] with `terminated: false`).
 */
export function splitStrings(payload: Uint8Array): { parts: string[]; terminated: boolean } {
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.byteLength; i++) {
    if (payload[i] === 0) {
      parts.push(fromUtf8(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  const terminated = start === payload.byteLength;
  if (!terminated) parts.push(fromUtf8(payload.subarray(start)));
  return { parts, terminated };
}

/** The first string of a payload, with or without its NUL (`"OK\0"`, `"/local/domain/3\0"`). */
export function firstString(b: Uint8Array): string {
  const end = b.indexOf(0);
  return fromUtf8(end === -1 ? b : b.subarray(0, end));
}

/**
 * The arguments of a request as C xenstored reads them (`get_strings`): its NUL-terminated
 * strings, latin1; bytes after the last NUL are ignored.
 */
export function getStrings(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.byteLength; i++) {
    if (payload[i] === 0) {
      out.push(fromLatin1(payload, start, i));
      start = i + 1;
    }
  }
  return out;
}

/** The one argument of a request: exactly one NUL, at the end (C `onearg`); else null. */
export function onearg(payload: Uint8Array): string | null {
  const n = payload.byteLength;
  if (n === 0) return null;
  const nul = payload.indexOf(0);
  if (nul !== n - 1) return null;
  return fromLatin1(payload, 0, n - 1);
}

/**
 * glibc's `atoi` on x86_64, which C xenstored and the C tools use for the numbers in their
 * arguments: `(int) strtol(s, NULL, 10)`. Optional blanks and a sign, then decimal digits;
 * anything else ends the number, and no digits give 0. `strtol` clamps a value beyond `long`
 * (64 bits) to LONG_MIN or LONG_MAX, then the cast to `int` keeps the low 32 bits:
 * "4294967297" is 1, "2147483648" is -2147483648, "99999999999999999999" is -1 (LONG_MAX)
 * and "-99999999999999999999" is 0 (LONG_MIN).
 */
export function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d+)/.exec(s);
  if (m === null) return 0;
  const digits = m[2]!;
  // Fifteen digits are exact in a double, and `| 0` keeps the low 32 bits as the cast does.
  if (digits.length <= 15) return (m[1] === "-" ? -Number(digits) : Number(digits)) | 0;
  let v = BigInt(digits);
  if (m[1] === "-") v = -v;
  const LONG_MAX = (1n << 63n) - 1n;
  if (v > LONG_MAX) v = LONG_MAX;
  else if (v < -LONG_MAX - 1n) v = -LONG_MAX - 1n;
  return Number(BigInt.asIntN(32, v));
}

/** The bytes of `parts`, one after the other, in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.byteLength;
  const out = new Uint8Array(len);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.byteLength;
  }
  return out;
}

/**
 * Streaming frame reader: `push(chunk)` returns every packet completed by that chunk. A
 * header announcing more than `XENSTORE_PAYLOAD_MAX` bytes stops it: that `push` returns the
 * packets completed before the header and sets `error`, which the caller checks after each
 * push. C xenstored reads one request at a time, so it handles those packets, then drops the
 * connection when it reads the header; the reader reads nothing more.
 *
 *   state HEADER: collect 16 bytes → decode len → state BODY (or emit if len = 0)
 *   state BODY:   collect len bytes → emit → state HEADER
 *   state ERROR:  a header announced too much: `error` is set, input is ignored
 */
export class PacketReader {
  readonly #max: number;
  readonly #header = new Uint8Array(HEADER_SIZE);
  #headerFill = 0;
  #current: XsHeader | null = null;
  #body: Uint8Array | null = null;
  #bodyFill = 0;
  #error: PayloadTooLargeError | null = null;

  constructor(maxPayload = XENSTORE_PAYLOAD_MAX) {
    this.#max = maxPayload;
  }

  /** Set once a header announced more than the limit; the stream is then unusable. */
  get error(): PayloadTooLargeError | null {
    return this.#error;
  }

  /** True while part of a packet has been read. */
  get partial(): boolean {
    return this.#headerFill > 0 || this.#current !== null;
  }

  push(chunk: Uint8Array): XsPacket[] {
    const out: XsPacket[] = [];
    if (this.#error !== null) return out;
    let pos = 0;
    const n = chunk.byteLength;
    while (pos < n) {
      if (this.#current === null) {
        // Fast path: a whole header is available in the chunk and nothing is buffered.
        if (this.#headerFill === 0 && n - pos >= HEADER_SIZE) {
          const h = decodeHeader(chunk, pos);
          pos += HEADER_SIZE;
          if (h.len > this.#max) return this.#fail(h.len, out);
          if (n - pos >= h.len) {
            // Copy: the chunk's buffer may be reused by the transport.
            out.push({ type: h.type, reqId: h.reqId, txId: h.txId, payload: chunk.slice(pos, pos + h.len) });
            pos += h.len;
            continue;
          }
          this.#start(h);
          continue;
        }
        const take = Math.min(HEADER_SIZE - this.#headerFill, n - pos);
        this.#header.set(chunk.subarray(pos, pos + take), this.#headerFill);
        this.#headerFill += take;
        pos += take;
        if (this.#headerFill < HEADER_SIZE) break;
        this.#headerFill = 0;
        const h = decodeHeader(this.#header);
        if (h.len > this.#max) return this.#fail(h.len, out);
        this.#start(h);
        if (h.len === 0) out.push(this.#finish());
        continue;
      }
      const body = this.#body!;
      const take = Math.min(body.byteLength - this.#bodyFill, n - pos);
      body.set(chunk.subarray(pos, pos + take), this.#bodyFill);
      this.#bodyFill += take;
      pos += take;
      if (this.#bodyFill === body.byteLength) out.push(this.#finish());
    }
    return out;
  }

  #fail(len: number, out: XsPacket[]): XsPacket[] {
    this.#error = new PayloadTooLargeError(len, this.#max);
    return out;
  }

  #start(h: XsHeader): void {
    this.#current = h;
    this.#body = new Uint8Array(h.len);
    this.#bodyFill = 0;
  }

  #finish(): XsPacket {
    const h = this.#current!;
    const p = { type: h.type, reqId: h.reqId, txId: h.txId, payload: this.#body! };
    this.#current = null;
    this.#body = null;
    this.#bodyFill = 0;
    return p;
  }
}
