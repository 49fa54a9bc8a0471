/**
 * Mutators: each takes a packet's bytes (header and payload) and returns new bytes, which
 * need not be a valid packet any more (a `len` that lies, a truncated header, a splice of two
 * packets). `mutate()` applies one to three of them, chosen by the seeded generator, and says
 * which, so the run can count what it tried and a failure can say how its bytes were made.
 */
import {
  concatBytes,
  HEADER_SIZE,
  latin1,
  XENSTORE_ABS_PATH_MAX,
  XENSTORE_PAYLOAD_MAX,
} from "../xenstore/wire.ts";
import type { Prng } from "./prng.ts";

export interface MutationContext {
  readonly rng: Prng;
  /** Valid packets to splice from and to interleave. */
  readonly corpus: readonly Uint8Array[];
  /** Transaction ids open on the connection the bytes go to. */
  readonly ownTx: readonly number[];
  /** Transaction ids open on other connections. */
  readonly otherTx: readonly number[];
  /** The daemon's `path-max` (C -M; 2048 by default). */
  readonly pathMax: number;
}

export interface Mutation {
  readonly bytes: Uint8Array;
  /** Names of the mutators applied, in order. */
  readonly ops: readonly string[];
}

type Mutator = (b: Uint8Array, cx: MutationContext) => Uint8Array;

const u32 = (b: Uint8Array, off: number): number =>
  b.byteLength >= off + 4 ? new DataView(b.buffer, b.byteOffset).getUint32(off, true) : 0;

/** A copy of `b` with the little-endian uint32 at `off` set to `v` (if `b` holds it). */
export function withU32(b: Uint8Array, off: number, v: number): Uint8Array {
  const out = b.slice();
  if (out.byteLength >= off + 4) new DataView(out.buffer).setUint32(off, v >>> 0, true);
  return out;
}

/** The payload with the header's `len` set to match it. */
function withPayload(b: Uint8Array, payload: Uint8Array): Uint8Array {
  const head = b.byteLength >= HEADER_SIZE ? b.slice(0, HEADER_SIZE) : new Uint8Array(HEADER_SIZE);
  return withU32(concatBytes([head, payload]), 12, payload.byteLength);
}

const payloadOf = (b: Uint8Array): Uint8Array => b.subarray(Math.min(HEADER_SIZE, b.byteLength));

/** Bytes worth trying: boundaries, NUL, path characters, a character paths forbid. */
const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x2f, 0x40, 0x2e, 0x20, 0x30, 0x39, 0x61, 0x54, 0x46];
const INTERESTING_U32 = [
  0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x7ff0, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe,
  0xffffffff,
];

/** The message types: every defined one, the removed 20, the first undefined ones, garbage. */
function randomType(rng: Prng): number {
  const r = rng.int(10);
  if (r < 7) return rng.int(28);
  if (r < 9) return rng.pick(INTERESTING_U32);
  return rng.u32();
}

const pathCache = new Map<string, string>();

/**
 * A path of exactly `n` characters starting at `prefix` (empty or ending in "/"): 15-letter
 * segments joined by single slashes, never ending in "/" (memoized).
 */
function pathOfLength(prefix: string, n: number): string {
  const key = `${prefix}|${n}`;
  let s = pathCache.get(key);
  if (s === undefined) {
    const body = "abcdefghijklmno/".repeat(Math.ceil(n / 16) + 1).slice(0, Math.max(1, n - prefix.length));
    s = prefix + (body.endsWith("/") ? `${body.slice(0, -1)}z` : body);
    pathCache.set(key, s);
  }
  return s;
}

const MUTATORS: ReadonlyArray<readonly [string, number, Mutator]> = [
  [
    "bit-flip",
    6,
    (b, { rng }) => {
      const out = b.slice();
      if (out.byteLength === 0) return out;
      for (let k = rng.range(1, 4); k > 0; k--) {
        const i = rng.int(out.byteLength);
        out[i]! ^= 1 << rng.int(8);
      }
      return out;
    },
  ],
  [
    "byte-set",
    5,
    (b, { rng }) => {
      const out = b.slice();
      if (out.byteLength === 0) return out;
      for (let k = rng.range(1, 3); k > 0; k--) {
        out[rng.int(out.byteLength)] = rng.chance(0.5) ? rng.pick(INTERESTING) : rng.u32() & 0xff;
      }
      return out;
    },
  ],
  ["hdr-type", 5, (b, { rng }) => withU32(b, 0, randomType(rng))],
  ["hdr-req-id", 2, (b, { rng }) => withU32(b, 4, rng.chance(0.5) ? rng.pick(INTERESTING_U32) : rng.u32())],
  [
    "hdr-tx-id",
    5,
    (b, cx) => {
      const { rng } = cx;
      const r = rng.int(4);
      const id =
        r === 0 && cx.ownTx.length > 0
          ? rng.pick(cx.ownTx)
          : r === 1 && cx.otherTx.length > 0
            ? rng.pick(cx.otherTx)
            : r === 2
              ? rng.pick(INTERESTING_U32)
              : rng.int(16);
      return withU32(b, 8, id);
    },
  ],
  [
    "hdr-len",
    5,
    (b, { rng }) => {
      const len = u32(b, 12);
      const choices = [
        len + rng.range(1, 8), // beyond the payload: swallows the next packet's bytes
        Math.max(0, len - rng.range(1, 8)), // short: the rest is read as the next header
        0,
        XENSTORE_PAYLOAD_MAX,
        XENSTORE_PAYLOAD_MAX + 1, // over the limit: the daemon drops the connection
        XENSTORE_PAYLOAD_MAX + rng.range(2, 100_000),
        0xffffffff,
      ];
      return withU32(b, 12, rng.pick(choices));
    },
  ],
  [
    "truncate",
    3,
    (b, { rng }) => {
      const p = payloadOf(b);
      const cut = p.subarray(0, rng.int(p.byteLength + 1));
      // Half the time the header still announces the old length (a packet cut short).
      return rng.chance(0.5) ? withPayload(b, cut) : b.slice(0, HEADER_SIZE + cut.byteLength);
    },
  ],
  [
    "extend",
    3,
    (b, { rng }) => {
      const extra = rng.chance(0.3) ? new Uint8Array(rng.range(1, 64)) : rng.bytes(rng.range(1, 64));
      return withPayload(b, concatBytes([payloadOf(b), extra]));
    },
  ],
  [
    "nul-insert",
    4,
    (b, { rng }) => {
      const p = payloadOf(b);
      const at = rng.int(p.byteLength + 1);
      return withPayload(
        b,
        concatBytes([p.subarray(0, at), new Uint8Array(rng.range(1, 2)), p.subarray(at)]),
      );
    },
  ],
  [
    "nul-remove",
    4,
    (b, { rng }) => {
      const p = payloadOf(b);
      const nuls: number[] = [];
      for (let i = 0; i < p.byteLength; i++) if (p[i] === 0) nuls.push(i);
      if (nuls.length === 0) return b.slice();
      const at = rng.pick(nuls);
      return withPayload(b, concatBytes([p.subarray(0, at), p.subarray(at + 1)]));
    },
  ],
  [
    "splice",
    3,
    (b, { rng, corpus }) => {
      const o = rng.pick(corpus);
      if (rng.chance(0.5)) {
        // This header with the other payload (len fixed or not).
        const p = payloadOf(o);
        return rng.chance(0.7) ? withPayload(b, p) : concatBytes([b.subarray(0, HEADER_SIZE), p]);
      }
      // A prefix of this packet followed by a suffix of the other.
      return concatBytes([b.subarray(0, rng.int(b.byteLength + 1)), o.subarray(rng.int(o.byteLength + 1))]);
    },
  ],
  ["random-bytes", 1, (_b, { rng }) => rng.bytes(rng.int(48))],
  [
    "random-payload",
    2,
    (b, { rng }) => {
      const n = rng.chance(0.9) ? rng.int(64) : rng.int(XENSTORE_PAYLOAD_MAX + 1);
      return withPayload(b, rng.bytes(n));
    },
  ],
  [
    "limit-path",
    3,
    (b, cx) => {
      const { rng } = cx;
      const p = payloadOf(b);
      const nul = p.indexOf(0);
      const rest = nul < 0 ? new Uint8Array(0) : p.subarray(nul);
      const d = rng.range(-1, 1);
      const which = rng.int(4);
      let path: string;
      if (which === 0) path = pathOfLength("/local/domain/5/", 16 + cx.pathMax + d);
      else if (which === 1) path = pathOfLength("/fuzz/", cx.pathMax + d);
      else if (which === 2)
        path = pathOfLength("", cx.pathMax + d); // relative
      else path = pathOfLength("/local/domain/1/", XENSTORE_ABS_PATH_MAX + d);
      return withPayload(b, concatBytes([latin1(path), rest.byteLength > 0 ? rest : new Uint8Array(1)]));
    },
  ],
  ["duplicate", 1, (b) => concatBytes([b, b])],
];

const TOTAL_WEIGHT = MUTATORS.reduce((s, m) => s + m[1], 0);

/** The names of every mutator, for reports. */
export const MUTATOR_NAMES: readonly string[] = MUTATORS.map((m) => m[0]);

function pickMutator(rng: Prng): readonly [string, number, Mutator] {
  let w = rng.int(TOTAL_WEIGHT);
  for (const m of MUTATORS) {
    if (w < m[1]) return m;
    w -= m[1];
  }
  return MUTATORS[0]!;
}

/** One to three mutations of `seed` (a valid packet). */
export function mutate(seed: Uint8Array, cx: MutationContext): Mutation {
  let b = seed;
  const ops: string[] = [];
  for (let k = cx.rng.chance(0.6) ? 1 : cx.rng.range(2, 3); k > 0; k--) {
    const [name, , fn] = pickMutator(cx.rng);
    b = fn(b, cx);
    ops.push(name);
  }
  return { bytes: b, ops };
}

/** Lower-case hex of bytes, for failure reports and `--replay`. */
export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function fromHex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(clean)) throw new RangeError(`Cannot read hex: '${s.slice(0, 40)}'`);
  return new Uint8Array(Buffer.from(clean, "hex"));
}
