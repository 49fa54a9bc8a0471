/**
 * Batches of fuzz input: a few mutated corpus packets interleaved with valid ones (whose
 * transaction ids are the connection's own live ones), as one byte stream. Every target sends
 * batches; the batch's bytes are what a failure prints.
 */
import { concatBytes, latin1, type XsPacket, XsType } from "../xenstore/wire.ts";
import type { FuzzStats } from "./check.ts";
import type { StreamModel } from "./frame.ts";
import { type MutationContext, mutate, withU32 } from "./mutate.ts";
import type { Prng } from "./prng.ts";

export interface Batch {
  /** The whole stream, in send order. */
  readonly bytes: Uint8Array;
  /** How many items (packets before framing) went into it. */
  readonly items: number;
}

export interface BatchOptions extends MutationContext {
  readonly stats: FuzzStats;
  /** Most items in one batch. */
  readonly maxItems: number;
  /** Next req_id to use (advanced by the batch). */
  reqId: number;
}

export function makeBatch(o: BatchOptions): Batch {
  const { rng } = o;
  const n = rng.range(1, o.maxItems);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const base = rng.pick(o.corpus);
    const txInBase = new DataView(base.buffer, base.byteOffset).getUint32(8, true);
    const tx = txInBase !== 0 && o.ownTx.length > 0 ? rng.pick(o.ownTx) : 0;
    const seed = withU32(withU32(base, 4, o.reqId++), 8, tx); // req_id, tx_id
    let bytes: Uint8Array;
    if (rng.chance(0.25)) {
      bytes = seed; // a valid request between the bad ones
    } else {
      const m = mutate(seed, o);
      bytes = m.bytes;
      for (const op of m.ops) o.stats.mutators.set(op, (o.stats.mutators.get(op) ?? 0) + 1);
    }
    parts.push(bytes);
  }
  return { bytes: concatBytes(parts), items: n };
}

/** Splits `bytes` into 1–4 chunks at random places (how a socket or ring may deliver them). */
export function chunks(bytes: Uint8Array, rng: Prng): Uint8Array[] {
  const cuts = [0, bytes.byteLength];
  for (let k = rng.int(4); k > 0; k--) cuts.push(rng.int(bytes.byteLength + 1));
  cuts.sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) out.push(bytes.subarray(cuts[i]!, cuts[i + 1]!));
  return out;
}

/** The request a target sends after a batch to learn that everything before it was handled. */
export function sentinel(reqId: number): Uint8Array {
  // GET_DOMAIN_PATH answers every connection, privileged or not, whatever the store holds.
  const payload = latin1("0\0");
  const out = new Uint8Array(16 + payload.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, XsType.GET_DOMAIN_PATH, true);
  dv.setUint32(4, reqId >>> 0, true);
  dv.setUint32(12, payload.byteLength, true);
  out.set(payload, 16);
  return out;
}

/** A batch made whole: what to send, and what the daemon must answer. */
export interface Stream {
  readonly bytes: Uint8Array;
  /** The requests the daemon must answer, in order. */
  readonly requests: XsPacket[];
  /** A header announced more than 4096 bytes: the daemon ends the connection there. */
  readonly closes: boolean;
}

/**
 * `bytes` and what completes them on a connection whose framing `model` follows: zero bytes
 * to finish a packet left half-sent (`StreamModel.filler()`), then a sentinel request, so
 * the target knows exactly how many replies must come back. Nothing follows a header that
 * ends the connection.
 */
export function completeStream(model: StreamModel, bytes: Uint8Array): Stream {
  const framed = model.push(bytes);
  const requests = [...framed.packets];
  if (framed.tooLarge !== null) return { bytes, requests, closes: true };
  const fill = model.filler();
  const filled = model.push(fill);
  requests.push(...filled.packets);
  if (filled.tooLarge !== null) return { bytes: concatBytes([bytes, fill]), requests, closes: true };
  const last = sentinel(0xfffffff0);
  requests.push(...model.push(last).packets);
  return { bytes: concatBytes([bytes, fill, last]), requests, closes: false };
}
