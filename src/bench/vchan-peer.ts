/**
 * Worker entry of `xenlab bench vchan`'s baseline: one end of a bare byte stream through a
 * SharedArrayBuffer single-producer single-consumer ring (the byte version of `bench ring`'s
 * sab-spsc queue). The writer copies `chunk`-sized pieces in as space allows, stores the producer
 * index and calls Atomics.notify; the reader copies out up to `chunk` bytes at a time, stores the
 * consumer index and calls Atomics.notify; either Atomics.wait's only when it finds the ring full
 * (writer) or empty (reader). The indices are free-running u32 byte counts, as vchan's.
 *
 * The reader times from its first byte to its last and posts the seconds.
 */
import { parentPort, workerData } from "node:worker_threads";

export interface VchanPeerConfig {
  readonly kind: "sab-spsc";
  readonly role: "writer" | "reader";
  /** Header (indices) then `size` bytes of ring. */
  readonly sab: SharedArrayBuffer;
  readonly size: number;
  readonly bytes: number;
  readonly chunk: number;
}

export type VchanPeerReply = { ready: true } | { ok: true; seconds: number } | { ok: false; error: string };

/** Int32 indices of the header: consumer at 0, producer at 16 (own cache lines); ring from byte 128. */
const CONS = 0;
const PROD = 16;
/** vchan.ts allocates the ring with the same header size. */
const SPSC_HEADER = 128;

function writer(c: VchanPeerConfig, idx: Int32Array, ring: Uint8Array): void {
  const data = new Uint8Array(c.chunk);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
  const mask = c.size - 1;
  let sent = 0;
  while (sent < c.bytes) {
    const want = Math.min(c.chunk, c.bytes - sent);
    let done = 0;
    while (done < want) {
      const prod = Atomics.load(idx, PROD) >>> 0;
      const cons = Atomics.load(idx, CONS);
      const space = c.size - ((prod - cons) >>> 0);
      if (space === 0) {
        Atomics.wait(idx, CONS, cons);
        continue;
      }
      const n = Math.min(space, want - done);
      const at = prod & mask;
      const first = Math.min(n, c.size - at);
      ring.set(data.subarray(done, done + first), at);
      if (n > first) ring.set(data.subarray(done + first, done + n), 0);
      Atomics.store(idx, PROD, (prod + n) | 0);
      Atomics.notify(idx, PROD);
      done += n;
    }
    sent += want;
  }
}

function reader(c: VchanPeerConfig, idx: Int32Array, ring: Uint8Array): number {
  const buf = new Uint8Array(c.chunk);
  const mask = c.size - 1;
  let got = 0;
  let t0 = 0;
  while (got < c.bytes) {
    const cons = Atomics.load(idx, CONS) >>> 0;
    const prod = Atomics.load(idx, PROD);
    const ready = (prod - cons) >>> 0;
    if (ready === 0) {
      Atomics.wait(idx, PROD, prod);
      continue;
    }
    if (got === 0) t0 = performance.now();
    const n = Math.min(ready, c.chunk);
    const at = cons & mask;
    const first = Math.min(n, c.size - at);
    buf.set(ring.subarray(at, at + first), 0);
    if (n > first) buf.set(ring.subarray(0, n - first), first);
    Atomics.store(idx, CONS, (cons + n) | 0);
    Atomics.notify(idx, CONS);
    got += n;
  }
  return (performance.now() - t0) / 1000;
}

const c = workerData as VchanPeerConfig;
const port = parentPort!;
port.postMessage({ ready: true } satisfies VchanPeerReply);
port.once("message", () => {
  try {
    const idx = new Int32Array(c.sab, 0, SPSC_HEADER / 4);
    const ring = new Uint8Array(c.sab, SPSC_HEADER, c.size);
    if (c.role === "writer") {
      writer(c, idx, ring);
      port.postMessage({ ok: true, seconds: 0 } satisfies VchanPeerReply);
    } else {
      port.postMessage({ ok: true, seconds: reader(c, idx, ring) } satisfies VchanPeerReply);
    }
  } catch (e) {
    port.postMessage({ ok: false, error: String(e) } satisfies VchanPeerReply);
  }
});
