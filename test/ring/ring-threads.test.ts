/**
 * Real concurrency: a frontend on this thread and a backend in a worker pass requests and
 * responses through one shared page with notification suppression. Checks that no entry is seen
 * torn or out of order (release/acquire publication) and that no wake-up is lost (every sleep is an
 * Atomics.wait with a timeout that fails the run). Counts only; no timings.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import { FrontRing } from "../../src/ring/ring.ts";
import { XEN_PAGE_SIZE } from "../../src/xen/xen.ts";
import { EV, type PeerData, payloadByte } from "./fixtures/ring-peer.ts";

const TIMEOUT_MS = 10_000;

interface Outcome {
  front: { kicks: number; sleeps: number };
  back: { kicks: number; sleeps: number };
}

async function run(
  entrySize: number,
  start: number,
  total: number,
  batch: (n: number) => number,
): Promise<Outcome> {
  const ring = new SharedArrayBuffer(XEN_PAGE_SIZE);
  const events = new SharedArrayBuffer(8);
  const ev = new Int32Array(events);
  const mem = new Uint8Array(ring);
  FrontRing.init(mem, entrySize);
  const front = FrontRing.attach(mem, entrySize, start);
  front.shared.reqProd = start;
  front.shared.rspProd = start;
  front.shared.reqEvent = start + 1;
  front.shared.rspEvent = start + 1;
  const data: PeerData = { ring, events, entrySize, start, total, timeoutMs: TIMEOUT_MS };
  // Workers do not inherit tsx's hooks on Node 20: register them in the worker, then load the peer.
  const peer = new URL("./fixtures/ring-peer.ts", import.meta.url).href;
  const boot = `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))})
    .then(({ register }) => { register(); return import(${JSON.stringify(peer)}); });`;
  const worker = new Worker(boot, { eval: true, workerData: data });
  const messages: unknown[] = [];
  const waiters: ((m: unknown) => void)[] = [];
  worker.on("message", (m: unknown) => {
    const w = waiters.shift();
    if (w) w(m);
    else messages.push(m);
  });
  const next = (): Promise<unknown> =>
    new Promise((res, rej) => {
      if (messages.length > 0) res(messages.shift());
      else waiters.push(res);
      worker.once("error", rej);
    });
  // Start only once the backend runs, so that a slow start is not taken for a lost wake-up.
  assert.deepEqual(await next(), { ready: true });
  const result = next() as Promise<{ ok: boolean; error?: string; kicks: number; sleeps: number }>;

  let sent = 0;
  let received = 0;
  let kicks = 0;
  let sleeps = 0;
  const rsp = new Uint8Array(8);
  const rv = new DataView(rsp.buffer);
  while (received < total) {
    // Produce one batch as far as the ring allows, then push once.
    const want = Math.min(batch(sent), total - sent, front.freeRequests());
    for (let k = 0; k < want; k++) {
      const slot = front.getRequest(front.reqProdPvt);
      new DataView(slot.buffer, slot.byteOffset, 4).setUint32(0, sent, true);
      for (let i = 4; i < entrySize; i++) slot[i] = payloadByte(sent, i);
      front.reqProdPvt += 1;
      sent++;
    }
    if (want > 0 && front.pushRequestsAndCheckNotify()) {
      Atomics.store(ev, EV.toBack, 1);
      Atomics.notify(ev, EV.toBack);
      kicks++;
    }
    const rp = front.shared.rspProd;
    assert.ok(!front.responseProdOverflow(rp), `backend overflowed the ring: rsp_prod ${rp}`);
    for (let rc = front.rspCons; rc !== rp; rc = (rc + 1) >>> 0) {
      front.copyResponse(rc, rsp);
      assert.equal(rv.getUint32(0, true), received, "responses arrive in order");
      assert.equal(rv.getUint32(4, true), ~received >>> 0, "response not torn");
      received++;
      front.rspCons = (rc + 1) >>> 0;
    }
    if (received === total || (sent < total && !front.full())) continue;
    if (!front.finalCheckForResponses()) {
      sleeps++;
      const r = Atomics.wait(ev, EV.toFront, 0, TIMEOUT_MS);
      assert.notEqual(r, "timed-out", `frontend lost a wake-up at rsp_cons ${front.rspCons}`);
      Atomics.store(ev, EV.toFront, 0);
    }
  }
  const back = await result;
  await worker.terminate();
  assert.ok(back.ok, back.error);
  return { front: { kicks, sleeps }, back: { kicks: back.kicks, sleeps: back.sleeps } };
}

describe("rings between two threads", () => {
  it("deliver 5000 requests one at a time, in order and untorn, without losing a wake-up", async () => {
    const o = await run(64, 0, 5000, () => 1);
    assert.ok(o.front.kicks >= 1);
  });

  it("deliver 20000 112-byte requests in random batches across the 2^32 wrap", async () => {
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 16;
    };
    const o = await run(112, 0xffffe000, 20000, () => 1 + (rnd() % 32));
    assert.ok(o.front.kicks >= 1 && o.back.kicks >= 1);
  });
});
