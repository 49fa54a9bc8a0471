/**
 * Xen's XenStore migration stream (docs/designs/xenstore-migration.md), the format C
 * xenstored's live update writes to `state_dump` (tools/xenstore/include/xenstore_state.h):
 * a pure codec, bytes in, typed records out. src/xenstore/migration.ts turns a daemon's state
 * into records and back; docs/xenstore-migration.md has the picture.
 *
 * Layout. A 16-byte preamble: the ident `xenstore` (8 bytes, no NUL), the version (u32,
 * always big-endian: 1, or 2 which adds WATCH_DATA_EXTENDED and DOMAIN_DATA's `features`),
 * and the flags (u32, big-endian here: bit 0 is the byte order of everything after, 0 little,
 * 1 big; C writes it in its own order, which reads the same for the two values it uses).
 * Then records, `u32 type | u32 len | body`, in that byte order; `len` counts the body with
 * the zero padding that makes each record end on an 8-byte boundary. The last record is END.
 *
 *   1 GLOBAL        i32 socket-fd | i32 evtchn-fd                         (fds the new binary inherits)
 *   2 CONNECTION    u32 conn-id | u16 type (0 ring, 1 socket) | u16 fields (bit 0: unique-id)
 *                   | ring: u16 domid, u16 tdomid, u32 evtchn  or  socket: i32 fd, u32 pad
 *                   | u16 in-len | u16 out-resp-len | u32 out-len | in bytes | out bytes
 *                   | pad to 8 | u64 unique-id (fields bit 0)
 *   3 WATCH         u32 conn-id | u16 path-len | u16 token-len | path\0 | token\0
 *   4 TRANSACTION   u32 conn-id | u32 tx-id
 *   5 NODE          u32 conn-id | u32 tx-id | u16 path-len | u16 value-len | u16 access
 *                   | u16 perm-n | perm-n × (u8 'n'/'r'/'w'/'b', u8 flags, u16 domid) | path\0 | value
 *   6 GLOBAL_QUOTA  u16 n-dom | u16 n-glob | (n-dom + n-glob) × u32 value | the names, each \0-ended
 *   7 DOMAIN        u16 domid | u16 n | u32 features | n × u32 value | the names, each \0-ended
 *   8 WATCH_EXT     as WATCH, then u16 depth (0xffff: unlimited) | u16 pad, the strings at 12
 *
 * Worked example, the start of a dump from C xenstored 4.17 (little-endian, version 1; a test
 * in test/xenstore/migration-format.test.ts):
 *
 *   78656e73746f7265 00000001 00000000   "xenstore", version 1, flags 0 (little-endian)
 *   01000000 08000000 03000000 06000000  GLOBAL, len 8: socket fd 3, evtchn fd 6
 *   02000000 18000000 01000000 0000 0000 CONNECTION, len 24: conn 1, ring, fields 0,
 *   0000 f47f 02000000 0000 0000 00000000   domid 0, tdomid DOMID_INVALID, port 2, no data
 *
 * Records other than these are kept as `unknown` (their type and body), so a reader can skip
 * what a newer writer added and a round trip keeps it. Fields the version does not define
 * and padding are written as 0 and not checked on reading, as the design says.
 */
import { StateStreamError } from "./errors.ts";
import { fromLatin1, latin1 } from "./wire.ts";

export const STATE_IDENT = "xenstore";
export const PREAMBLE_SIZE = 16;
export const RECORD_HEADER_SIZE = 8;
/** The highest version this codec reads and writes. */
export const STATE_VERSION_MAX = 2;

export const StateRecordType = {
  END: 0,
  GLOBAL: 1,
  CONNECTION: 2,
  WATCH: 3,
  TRANSACTION: 4,
  NODE: 5,
  GLOBAL_QUOTA: 6,
  DOMAIN: 7,
  WATCH_EXTENDED: 8,
} as const;

const TYPE_NAMES = (
  "END GLOBAL_DATA CONNECTION_DATA WATCH_DATA TRANSACTION_DATA NODE_DATA GLOBAL_QUOTA_DATA DOMAIN_DATA " +
  "WATCH_DATA_EXTENDED"
).split(" ");

export const ConnType = { RING: 0, SOCKET: 1 } as const;

/** NODE_DATA `access` of a node in a transaction. */
export const NodeAccess = { DELETED: 0, READ: 1, WRITTEN: 2 } as const;

/** A permission's flag: stale (its domain is gone), ignored when checking access. */
export const PERM_IGNORE = 0x01;
/** WATCH_DATA_EXTENDED depth meaning "no limit". */
export const DEPTH_UNLIMITED = 0xffff;

/** One permission entry as the stream holds it. */
export interface StatePerm {
  /** READ (1) | WRITE (2) bits, as perms.ts's `Perm`. */
  readonly access: number;
  readonly domid: number;
  /** XS_STATE_NODE_PERM_IGNORE. */
  readonly ignore: boolean;
}

export interface QuotaValue {
  readonly name: string;
  /** 0 means no limit. */
  readonly value: number;
}

export type ConnSpec =
  | { readonly kind: "ring"; readonly domid: number; readonly tdomid: number; readonly evtchn: number }
  | { readonly kind: "socket"; readonly fd: number };

export type StateRecord =
  | { readonly type: "global"; readonly socketFd: number; readonly evtchnFd: number }
  | {
      readonly type: "connection";
      readonly connId: number;
      readonly spec: ConnSpec;
      /** Bytes read from the connection and not yet processed. */
      readonly inData: Uint8Array;
      /** How many of `outData`'s first bytes are a partly sent reply. */
      readonly outRespLen: number;
      /** Bytes not yet written to the connection. */
      readonly outData: Uint8Array;
      readonly uniqueId: bigint | null;
    }
  | {
      readonly type: "watch";
      readonly connId: number;
      readonly path: string;
      readonly token: string;
      /** Null: a WATCH_DATA record; a number: WATCH_DATA_EXTENDED with that depth. */
      readonly depth: number | null;
    }
  | { readonly type: "transaction"; readonly connId: number; readonly txId: number }
  | {
      readonly type: "node";
      /** Non-zero: a node as seen by that connection's transaction `txId`. */
      readonly connId: number;
      readonly txId: number;
      /** NodeAccess, meaningful in a transaction only. */
      readonly access: number;
      readonly path: string;
      readonly value: Uint8Array;
      /** The first entry is the owner. */
      readonly perms: readonly StatePerm[];
    }
  | {
      readonly type: "global-quota";
      readonly domain: readonly QuotaValue[];
      readonly global: readonly QuotaValue[];
    }
  | {
      readonly type: "domain";
      readonly domid: number;
      readonly features: number;
      readonly quotas: readonly QuotaValue[];
    }
  | { readonly type: "unknown"; readonly code: number; readonly body: Uint8Array };

export interface StateStream {
  /** 1 or 2. */
  readonly version: number;
  readonly bigEndian: boolean;
  /** Without the END record, which the encoder adds and the decoder requires. */
  readonly records: readonly StateRecord[];
}

export function recordTypeName(code: number): string {
  return TYPE_NAMES[code] ?? `type ${code}`;
}

const PERM_LETTERS = "nrwb";

function pad8(n: number): number {
  return (n + 7) & ~7;
}

// ------------------------------------------------------------------------------ encoding

/** A growing byte buffer with fields in one byte order. */
class Writer {
  #buf = new Uint8Array(1024);
  #view = new DataView(this.#buf.buffer);
  #len = 0;
  readonly #le: boolean;

  constructor(littleEndian: boolean) {
    this.#le = littleEndian;
  }

  get length(): number {
    return this.#len;
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.byteLength) return;
    let size = this.#buf.byteLength * 2;
    while (size < this.#len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.#buf.subarray(0, this.#len));
    this.#buf = b;
    this.#view = new DataView(b.buffer);
  }

  #put(n: number, set: (at: number) => void): void {
    this.#room(n);
    set(this.#len);
    this.#len += n;
  }

  u8(v: number): void {
    this.#put(1, (at) => this.#view.setUint8(at, v));
  }

  u16(v: number): void {
    this.#put(2, (at) => this.#view.setUint16(at, v, this.#le));
  }

  u32(v: number): void {
    this.#put(4, (at) => this.#view.setUint32(at, v >>> 0, this.#le));
  }

  u32be(v: number): void {
    this.#put(4, (at) => this.#view.setUint32(at, v >>> 0, false));
  }

  i32(v: number): void {
    this.#put(4, (at) => this.#view.setInt32(at, v, this.#le));
  }

  u64(v: bigint): void {
    this.#put(8, (at) => this.#view.setBigUint64(at, v, this.#le));
  }

  bytes(b: Uint8Array): void {
    this.#room(b.byteLength);
    this.#buf.set(b, this.#len);
    this.#len += b.byteLength;
  }

  /** Zeros up to the next multiple of 8 from `from`. */
  padFrom(from: number): void {
    const n = pad8(this.#len - from) - (this.#len - from);
    this.#room(n);
    this.#buf.fill(0, this.#len, this.#len + n);
    this.#len += n;
  }

  /** Writes `len` at `at` (a u32 placeholder written before). */
  patchU32(at: number, v: number): void {
    this.#view.setUint32(at, v, this.#le);
  }

  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

function checkU16(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff)
    throw new RangeError(`Cannot encode ${what}: ${n} does not fit in 16 bits`);
  return n;
}

function checkU32(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new RangeError(`Cannot encode ${what}: ${n} does not fit in 32 bits`);
  return n;
}

/** A string with its NUL, checked to fit a u16 length and to hold no NUL itself. */
function cstring(what: string, s: string): Uint8Array {
  if (s.includes("\0")) throw new RangeError(`Cannot encode ${what} "${s}": it holds a NUL byte`);
  const b = latin1(`${s}\0`);
  checkU16(`${what} length`, b.byteLength);
  return b;
}

function quotaNames(quotas: readonly QuotaValue[]): Uint8Array {
  return latin1(quotas.map((q) => `${q.name}\0`).join(""));
}

function encodeBody(w: Writer, r: StateRecord): number {
  switch (r.type) {
    case "global":
      w.i32(r.socketFd);
      w.i32(r.evtchnFd);
      return StateRecordType.GLOBAL;
    case "connection": {
      w.u32(checkU32("conn-id", r.connId));
      w.u16(r.spec.kind === "ring" ? ConnType.RING : ConnType.SOCKET);
      w.u16(r.uniqueId === null ? 0 : 1);
      if (r.spec.kind === "ring") {
        w.u16(checkU16("domid", r.spec.domid));
        w.u16(checkU16("tdomid", r.spec.tdomid));
        w.u32(checkU32("evtchn", r.spec.evtchn));
      } else {
        w.i32(r.spec.fd);
        w.u32(0);
      }
      w.u16(checkU16("in-data-len", r.inData.byteLength));
      w.u16(checkU16("out-resp-len", r.outRespLen));
      w.u32(checkU32("out-data-len", r.outData.byteLength));
      w.bytes(r.inData);
      w.bytes(r.outData);
      if (r.uniqueId !== null) {
        // The unique id sits after the data's padding, 8-aligned in the body.
        const bodyStart = w.length - 24 - r.inData.byteLength - r.outData.byteLength;
        w.padFrom(bodyStart);
        w.u64(r.uniqueId);
      }
      return StateRecordType.CONNECTION;
    }
    case "watch": {
      const path = cstring("watch path", r.path);
      const token = cstring("watch token", r.token);
      w.u32(checkU32("conn-id", r.connId));
      w.u16(path.byteLength);
      w.u16(token.byteLength);
      if (r.depth !== null) {
        w.u16(checkU16("depth", r.depth));
        w.u16(0);
      }
      w.bytes(path);
      w.bytes(token);
      return r.depth === null ? StateRecordType.WATCH : StateRecordType.WATCH_EXTENDED;
    }
    case "transaction":
      w.u32(checkU32("conn-id", r.connId));
      w.u32(checkU32("tx-id", r.txId));
      return StateRecordType.TRANSACTION;
    case "node": {
      const path = cstring("node path", r.path);
      w.u32(checkU32("conn-id", r.connId));
      w.u32(checkU32("tx-id", r.txId));
      w.u16(path.byteLength);
      w.u16(checkU16("value length", r.value.byteLength));
      w.u16(checkU16("access", r.access));
      w.u16(checkU16("perm count", r.perms.length));
      for (const p of r.perms) {
        w.u8(PERM_LETTERS.charCodeAt(p.access & 3));
        w.u8(p.ignore ? PERM_IGNORE : 0);
        w.u16(checkU16("perm domid", p.domid));
      }
      w.bytes(path);
      w.bytes(r.value);
      return StateRecordType.NODE;
    }
    case "global-quota":
      w.u16(checkU16("quota count", r.domain.length));
      w.u16(checkU16("quota count", r.global.length));
      for (const q of [...r.domain, ...r.global]) w.u32(checkU32(`quota ${q.name}`, q.value));
      w.bytes(quotaNames([...r.domain, ...r.global]));
      return StateRecordType.GLOBAL_QUOTA;
    case "domain":
      w.u16(checkU16("domid", r.domid));
      w.u16(checkU16("quota count", r.quotas.length));
      w.u32(checkU32("features", r.features));
      for (const q of r.quotas) w.u32(checkU32(`quota ${q.name}`, q.value));
      w.bytes(quotaNames(r.quotas));
      return StateRecordType.DOMAIN;
    case "unknown":
      w.bytes(r.body);
      return r.code;
  }
}

/** The stream: preamble, the records, END. */
export function encodeStateStream(s: StateStream): Uint8Array {
  if (s.version < 1 || s.version > STATE_VERSION_MAX || !Number.isInteger(s.version))
    throw new RangeError(`Cannot encode version ${s.version}: use 1 to ${STATE_VERSION_MAX}`);
  const w = new Writer(!s.bigEndian);
  w.bytes(latin1(STATE_IDENT));
  w.u32be(s.version);
  w.u32be(s.bigEndian ? 1 : 0);
  for (const r of s.records) {
    if (r.type === "unknown" && (r.code === StateRecordType.END || r.body.byteLength % 8 !== 0))
      throw new RangeError(
        `Cannot encode an unknown record of type ${r.code} and ${r.body.byteLength} bytes`,
      );
    const at = w.length;
    w.u32(0);
    w.u32(0);
    const code = encodeBody(w, r);
    w.padFrom(at + RECORD_HEADER_SIZE);
    w.patchU32(at, code);
    w.patchU32(at + 4, w.length - at - RECORD_HEADER_SIZE);
  }
  w.u32(StateRecordType.END);
  w.u32(0);
  return w.finish();
}

// ------------------------------------------------------------------------------ decoding

/** Reads one record's body; every read is bounds-checked against it. */
class Body {
  readonly #v: DataView;
  readonly #b: Uint8Array;
  readonly #le: boolean;
  readonly #where: string;
  pos = 0;

  constructor(b: Uint8Array, le: boolean, where: string) {
    this.#b = b;
    this.#v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.#le = le;
    this.#where = where;
  }

  error(msg: string): StateStreamError {
    return new StateStreamError(`${this.#where}: ${msg}`);
  }

  need(n: number, what: string): void {
    if (this.pos + n > this.#b.byteLength)
      throw new StateStreamError(
        `${this.#where}: ${what} needs ${this.pos + n} bytes, the record has ${this.#b.byteLength}`,
      );
  }

  /** Reads `n` bytes of field at the cursor with `get`, and moves past them. */
  #take<T>(n: number, get: (at: number) => T): T {
    this.need(n, "a field");
    const v = get(this.pos);
    this.pos += n;
    return v;
  }

  u8(): number {
    return this.#take(1, (at) => this.#v.getUint8(at));
  }

  u16(): number {
    return this.#take(2, (at) => this.#v.getUint16(at, this.#le));
  }

  u32(): number {
    return this.#take(4, (at) => this.#v.getUint32(at, this.#le));
  }

  i32(): number {
    return this.#take(4, (at) => this.#v.getInt32(at, this.#le));
  }

  u64(): bigint {
    return this.#take(8, (at) => this.#v.getBigUint64(at, this.#le));
  }

  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const b = this.#b.slice(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /** `n` bytes ending in a NUL (C's `*-len` includes it), as a string without it. */
  cstring(n: number, what: string): string {
    if (n === 0) throw new StateStreamError(`${this.#where}: ${what} has length 0 (the NUL is counted)`);
    this.need(n, what);
    const end = this.pos + n - 1;
    if (this.#b[end] !== 0) throw new StateStreamError(`${this.#where}: ${what} does not end in a NUL`);
    const s = fromLatin1(this.#b, this.pos, end);
    this.pos += n;
    return s;
  }

  /** `count` NUL-ended names. */
  names(count: number): string[] {
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const end = this.#b.indexOf(0, this.pos);
      if (end < 0)
        throw new StateStreamError(`${this.#where}: quota name ${i + 1} of ${count} is not NUL-ended`);
      out.push(fromLatin1(this.#b, this.pos, end));
      this.pos = end + 1;
    }
    return out;
  }
}

function quotas(values: readonly number[], names: readonly string[]): QuotaValue[] {
  return values.map((value, i) => ({ name: names[i]!, value }));
}

function decodeBody(code: number, b: Body, version: number): StateRecord {
  switch (code) {
    case StateRecordType.GLOBAL:
      return { type: "global", socketFd: b.i32(), evtchnFd: b.i32() };
    case StateRecordType.CONNECTION: {
      const connId = b.u32();
      const kind = b.u16();
      const fields = b.u16();
      let spec: ConnSpec;
      if (kind === ConnType.RING) {
        spec = { kind: "ring", domid: b.u16(), tdomid: b.u16(), evtchn: b.u32() };
      } else if (kind === ConnType.SOCKET) {
        spec = { kind: "socket", fd: b.i32() };
        b.u32();
      } else {
        throw b.error(`connection ${connId} has type ${kind}, want 0 (ring) or 1 (socket)`);
      }
      const inLen = b.u16();
      const outRespLen = b.u16();
      const outLen = b.u32();
      const inData = b.bytes(inLen, "in-data");
      const outData = b.bytes(outLen, "out-data");
      let uniqueId: bigint | null = null;
      if (fields & 1) {
        b.pos = pad8(b.pos);
        uniqueId = b.u64();
      }
      return { type: "connection", connId, spec, inData, outRespLen, outData, uniqueId };
    }
    case StateRecordType.WATCH:
    case StateRecordType.WATCH_EXTENDED: {
      const connId = b.u32();
      const pathLen = b.u16();
      const tokenLen = b.u16();
      let depth: number | null = null;
      if (code === StateRecordType.WATCH_EXTENDED) {
        depth = b.u16();
        b.u16();
      }
      return {
        type: "watch",
        connId,
        path: b.cstring(pathLen, "path"),
        token: b.cstring(tokenLen, "token"),
        depth,
      };
    }
    case StateRecordType.TRANSACTION:
      return { type: "transaction", connId: b.u32(), txId: b.u32() };
    case StateRecordType.NODE: {
      const connId = b.u32();
      const txId = b.u32();
      const pathLen = b.u16();
      const valueLen = b.u16();
      const access = b.u16();
      const permN = b.u16();
      const perms: StatePerm[] = [];
      for (let i = 0; i < permN; i++) {
        const letter = PERM_LETTERS.indexOf(String.fromCharCode(b.u8()));
        const flags = b.u8();
        // C reads any other letter as "none".
        perms.push({ access: Math.max(letter, 0), ignore: (flags & PERM_IGNORE) !== 0, domid: b.u16() });
      }
      const path = b.cstring(pathLen, "path");
      return { type: "node", connId, txId, access, path, value: b.bytes(valueLen, "value"), perms };
    }
    case StateRecordType.GLOBAL_QUOTA: {
      const nDom = b.u16();
      const nGlob = b.u16();
      const values: number[] = [];
      for (let i = 0; i < nDom + nGlob; i++) values.push(b.u32());
      const all = quotas(values, b.names(nDom + nGlob));
      return { type: "global-quota", domain: all.slice(0, nDom), global: all.slice(nDom) };
    }
    case StateRecordType.DOMAIN: {
      const domid = b.u16();
      const n = b.u16();
      const features = b.u32();
      const values: number[] = [];
      for (let i = 0; i < n; i++) values.push(b.u32());
      // Version 1 does not define `features`: written as 0, ignored on reading.
      return {
        type: "domain",
        domid,
        features: version >= 2 ? features : 0,
        quotas: quotas(values, b.names(n)),
      };
    }
    default:
      throw new Error("unreachable");
  }
}

/**
 * Reads a whole stream. Throws StateStreamError naming the record and the byte offset when
 * the preamble is not Xen's, the version is not 1 or 2, a record runs past the end, a length
 * is not a multiple of 8, a field runs past its record, there is no END, or bytes follow it.
 */
export function decodeStateStream(bytes: Uint8Array): StateStream {
  // The ident first, so that a short file of something else is named for what it is not.
  const ident = fromLatin1(bytes, 0, Math.min(8, bytes.byteLength));
  if (!STATE_IDENT.startsWith(ident))
    throw new StateStreamError(
      `Not a XenStore migration stream: it starts with ${JSON.stringify(ident)}, not "${STATE_IDENT}"`,
    );
  if (bytes.byteLength < PREAMBLE_SIZE)
    throw new StateStreamError(
      `Cannot read the preamble: need ${PREAMBLE_SIZE} bytes, got ${bytes.byteLength}`,
    );
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = v.getUint32(8, false);
  if (version < 1 || version > STATE_VERSION_MAX)
    throw new StateStreamError(
      `Cannot read version ${version}: this reader knows versions 1 to ${STATE_VERSION_MAX}`,
    );
  const flags = v.getUint32(12, false);
  if ((flags & ~1) !== 0)
    throw new StateStreamError(
      `Cannot read flags 0x${flags.toString(16)}: only bit 0 (big-endian) is defined`,
    );
  const bigEndian = (flags & 1) === 1;
  const le = !bigEndian;
  const records: StateRecord[] = [];
  let pos = PREAMBLE_SIZE;
  for (let n = 1; ; n++) {
    if (pos + RECORD_HEADER_SIZE > bytes.byteLength)
      throw new StateStreamError(
        `Truncated stream: record ${n} at byte ${pos} is cut short, and no END record was found`,
      );
    const code = v.getUint32(pos, le);
    const len = v.getUint32(pos + 4, le);
    const where = `Record ${n} (${recordTypeName(code)}) at byte ${pos}`;
    if (len % 8 !== 0) throw new StateStreamError(`${where}: length ${len} is not a multiple of 8`);
    const start = pos + RECORD_HEADER_SIZE;
    if (start + len > bytes.byteLength)
      throw new StateStreamError(
        `${where}: its ${len} bytes run past the end of the stream (${bytes.byteLength} bytes)`,
      );
    const body = bytes.subarray(start, start + len);
    pos = start + len;
    if (code === StateRecordType.END) break;
    if (code > StateRecordType.WATCH_EXTENDED) {
      records.push({ type: "unknown", code, body: body.slice() });
      continue;
    }
    records.push(decodeBody(code, new Body(body, le, where), version));
  }
  if (pos !== bytes.byteLength)
    throw new StateStreamError(
      `${bytes.byteLength - pos} bytes follow the END record at byte ${pos - RECORD_HEADER_SIZE}`,
    );
  return { version, bigEndian, records };
}
