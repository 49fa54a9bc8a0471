/**
 * Worker entry of `xenlab bench ring`: one end of a request/response exchange, either a xenlab
 * domain (a frontend or backend on a one-page io/ring.h ring, kicking its peer through an event
 * channel) or a bare baseline (two SharedArrayBuffer single-producer single-consumer queues).
 *
 * Both kinds run the same synchronous batches: the frontend writes `batch` requests, publishes them
 * once, and waits until all their responses are in; the backend takes every request it finds,
 * writes a response of the same size for each, and publishes them once. Each entry is handled the
 * same way on both: the frontend fills the slot (a payload template, then the sequence number), the
 * backend copies it out, checks the sequence number and the last payload byte, copies it into the
 * response slot and sets the status, and the frontend copies the response out and checks it.
 *
 * The frontend times `rounds` batches after `warmup` and posts the seconds; a wait longer than
 * `timeoutMs` fails the run.
 */
import { parentPort, workerData } from "node:worker_threads";
import { EventChannelUpcall, type GuestEventsBoot } from "../kernel/evtchn.ts";
import { BackRing, FrontRing } from "../ring/ring.ts";
import { pageBytes } from "../xen/xen.ts";
import { threadCpuNs } from "./procstat.ts";

export type RingPeerSide =
  | { kind: "xenlab"; boot: GuestEventsBoot; port: number; page: SharedArrayBuffer }
  | { kind: "sab-spsc"; req: SharedArrayBuffer; rsp: SharedArrayBuffer };

export type RingPeerConfig = RingPeerSide & {
  role: "front" | "back";
  /** Bytes per request and per response. */
  entrySize: number;
  /** Slots of the ring, and of each baseline queue. */
  slots: number;
  batch: number;
  warmup: number;
  rounds: number;
  timeoutMs: number;
};

/**
 * What a peer counts over the whole exchange (warm-up included): kicks sent (xenlab: event-channel
 * sends the …_AND_CHECK_NOTIFY macros asked for; baseline: Atomics.notify calls, one per publish)
 * and sleeps (waits that went to Atomics.wait; for xenlab, block() calls made with no upcall due).
 */
export interface Counts {
  kicks: number;
  sleeps: number;
  /** The peer thread's own CPU time from its start to its end, warm-up included (ns). */
  cpuNs: number;
}

export type RingPeerReply =
  | { ready: true }
  | ({ ok: true; seconds: number } & Counts)
  | { ok: false; error: string };

/*
 * The baseline queue: a SharedArrayBuffer with the consumer's head at byte 0 and the producer's tail
 * at byte 64 (own cache lines), then `slots` entries from byte 128. Both are free-running int32
 * counters; a slot is `index & (slots - 1)`. The producer writes entries, then stores the tail and
 * calls Atomics.notify; a consumer that finds head === tail Atomics.wait's on the tail. ring.ts
 * allocates the queues with the same header size.
 */
const Q_HEAD = 0;
const Q_TAIL = 16;
const Q_ENTRIES = 128;

/** Entry layout: sequence number u32 @0, status u32 @4 (set in the response), payload from @8. */
const SEQ = 0;
const STATUS = 4;
const STATUS_OK = 1;

function template(size: number): Uint8Array {
  const t = new Uint8Array(size);
  for (let i = 8; i < size; i++) t[i] = (i * 7 + 1) & 0xff;
  return t;
}

/**
 * The per-entry work, identical for both kinds. Each method takes the slot's bytes and a DataView
 * over the same memory at the slot's byte offset.
 */
class Entries {
  readonly size: number;
  readonly #tmpl: Uint8Array;
  readonly #last: number;
  readonly #copy: Uint8Array;
  readonly #copyView: DataView;

  constructor(size: number) {
    this.size = size;
    this.#tmpl = template(size);
    this.#last = this.#tmpl[size - 1]!;
    this.#copy = new Uint8Array(size);
    this.#copyView = new DataView(this.#copy.buffer);
  }

  /** Frontend: fill a request slot. */
  request(slot: Uint8Array, view: DataView, off: number, seq: number): void {
    slot.set(this.#tmpl);
    view.setUint32(off + SEQ, seq, true);
  }

  /** Backend: copy the request out, check it, write the response into `rsp`. */
  respond(req: Uint8Array, rsp: Uint8Array, rspView: DataView, rspOff: number, seq: number): void {
    const c = this.#copy;
    c.set(req);
    const got = this.#copyView.getUint32(SEQ, true);
    if (got !== seq >>> 0 || c[this.size - 1] !== this.#last) {
      throw new Error(`Bad request: expected sequence number ${seq >>> 0}, got ${got}`);
    }
    rsp.set(c);
    rspView.setUint32(rspOff + STATUS, STATUS_OK, true);
  }

  /** Frontend: copy the response out and check it. */
  consume(rsp: Uint8Array, seq: number): void {
    const c = this.#copy;
    c.set(rsp);
    const got = this.#copyView.getUint32(SEQ, true);
    if (got !== seq >>> 0 || this.#copyView.getUint32(STATUS, true) !== STATUS_OK) {
      throw new Error(`Bad response: expected sequence number ${seq >>> 0}, got ${got}`);
    }
  }
}

function lost(what: string, at: number): Error {
  return new Error(`Lost wake-up waiting for ${what} ${at}`);
}

/**
 * A xenlab domain. Both ends work from their event handler, as Xen drivers do: the backend's
 * handler serves the ring until RING_FINAL_CHECK_FOR_REQUESTS finds nothing (pushing the responses
 * once per pass), the frontend's consumes responses until RING_FINAL_CHECK_FOR_RESPONSES finds
 * nothing. Both wait in EventChannelUpcall.block() (SCHEDOP_block). A kick is sent only when the
 * …_AND_CHECK_NOTIFY macros say the peer asked for one.
 */
async function xenlab(c: RingPeerConfig & { kind: "xenlab" }, started: () => void, n: Counts): Promise<void> {
  const ev = new EventChannelUpcall(c.boot);
  const page = pageBytes(c.page);
  const e = new Entries(c.entrySize);
  const total = (c.warmup + c.rounds) * c.batch;
  if (c.role === "front") {
    const front = FrontRing.init(page, c.entrySize); // SHARED_RING_INIT: the frontend's job
    const sr = front.shared;
    if (sr.size !== c.slots) throw new Error(`Ring has ${sr.size} slots, expected ${c.slots}`);
    let completed = 0;
    ev.bind(c.port, () => {
      for (;;) {
        const rp = sr.rspProd;
        if (front.responseProdOverflow(rp)) throw new Error(`Backend overflowed the ring: rsp_prod ${rp}`);
        let rc = front.rspCons;
        for (; rc !== rp; rc = (rc + 1) >>> 0) e.consume(sr.entry(rc), completed++);
        front.rspCons = rc;
        if (!front.finalCheckForResponses()) return;
      }
    });
    await ready();
    let sent = 0;
    for (let b = 0; b < c.warmup + c.rounds; b++) {
      if (b === c.warmup) started();
      for (let i = 0; i < c.batch; i++) {
        const idx = front.reqProdPvt;
        e.request(sr.entry(idx), sr.view, sr.offsetOf(idx), sent++);
        front.reqProdPvt = idx + 1;
      }
      if (front.pushRequestsAndCheckNotify()) {
        ev.send(c.port);
        n.kicks++;
      }
      while (completed !== sent) {
        if (!ev.upcallPending) n.sleeps++;
        if (ev.block(c.timeoutMs) === 0) throw lost("response", completed);
      }
    }
  } else {
    await ready(); // the frontend has initialised the ring before it reported ready
    const back = BackRing.attach(page, c.entrySize);
    const sr = back.shared;
    let served = 0;
    ev.bind(c.port, () => {
      for (;;) {
        const rp = sr.reqProd;
        if (back.requestProdOverflow(rp)) throw new Error(`Frontend overflowed the ring: req_prod ${rp}`);
        let rc = back.reqCons;
        for (; rc !== rp; rc = (rc + 1) >>> 0) {
          if (back.requestConsOverflow(rc)) throw new Error(`Request ${rc} would reuse an owed slot`);
          const rsp = back.rspProdPvt;
          e.respond(sr.entry(rc), sr.entry(rsp), sr.view, sr.offsetOf(rsp), served++);
          back.rspProdPvt = rsp + 1;
        }
        back.reqCons = rc;
        if (back.pushResponsesAndCheckNotify()) {
          ev.send(c.port);
          n.kicks++;
        }
        if (!back.finalCheckForRequests()) return;
      }
    });
    ev.upcall(); // the event bind_interdomain left pending: look at the ring once
    while (served !== total) {
      if (!ev.upcallPending) n.sleeps++;
      if (ev.block(c.timeoutMs) === 0) throw lost("request", served);
    }
  }
}

/** One baseline queue as its producer or consumer sees it. */
class Queue {
  readonly idx: Int32Array;
  readonly view: DataView;
  readonly mask: number;
  readonly slots: readonly Uint8Array[];
  readonly entrySize: number;

  constructor(sab: SharedArrayBuffer, slots: number, entrySize: number) {
    if (sab.byteLength !== Q_ENTRIES + slots * entrySize) {
      throw new RangeError(`Cannot use queue: ${sab.byteLength} bytes do not hold ${slots} × ${entrySize}`);
    }
    this.idx = new Int32Array(sab, 0, Q_ENTRIES / 4);
    this.view = new DataView(sab);
    this.mask = slots - 1;
    this.entrySize = entrySize;
    this.slots = Array.from(
      { length: slots },
      (_, i) => new Uint8Array(sab, Q_ENTRIES + i * entrySize, entrySize),
    );
  }

  slot(i: number): Uint8Array {
    return this.slots[i & this.mask]!;
  }

  offsetOf(i: number): number {
    return Q_ENTRIES + (i & this.mask) * this.entrySize;
  }

  /** Producer: room for `n` more entries after `tail`? */
  hasRoom(tail: number, n: number): boolean {
    return ((tail - Atomics.load(this.idx, Q_HEAD)) | 0) + n <= this.slots.length;
  }

  /** Producer: publish entries up to `tail` and wake a sleeping consumer. */
  publish(tail: number, n: Counts): void {
    Atomics.store(this.idx, Q_TAIL, tail);
    Atomics.notify(this.idx, Q_TAIL);
    n.kicks++;
  }

  /** Consumer: the producer's tail, sleeping while it equals `head` (the queue is empty). */
  waitTail(head: number, timeoutMs: number, what: string, n: Counts): number {
    for (;;) {
      const t = Atomics.load(this.idx, Q_TAIL);
      if (t !== head) return t;
      const r = Atomics.wait(this.idx, Q_TAIL, head, timeoutMs);
      if (r === "timed-out") throw lost(what, head);
      if (r === "ok") n.sleeps++;
    }
  }

  /** Consumer: free the entries before `head`. */
  release(head: number): void {
    Atomics.store(this.idx, Q_HEAD, head);
  }
}

async function sabSpsc(
  c: RingPeerConfig & { kind: "sab-spsc" },
  started: () => void,
  n: Counts,
): Promise<void> {
  const req = new Queue(c.req, c.slots, c.entrySize);
  const rsp = new Queue(c.rsp, c.slots, c.entrySize);
  const e = new Entries(c.entrySize);
  const total = (c.warmup + c.rounds) * c.batch;
  await ready();
  if (c.role === "front") {
    let tail = 0;
    let head = 0;
    for (let b = 0; b < c.warmup + c.rounds; b++) {
      if (b === c.warmup) started();
      if (!req.hasRoom(tail, c.batch)) throw new Error(`Request queue full at ${tail}`);
      for (let i = 0; i < c.batch; i++) {
        e.request(req.slot(tail), req.view, req.offsetOf(tail), tail);
        tail = (tail + 1) | 0;
      }
      req.publish(tail, n);
      while (head !== tail) {
        const t = rsp.waitTail(head, c.timeoutMs, "response", n);
        for (; head !== t; head = (head + 1) | 0) e.consume(rsp.slot(head), head);
        rsp.release(head);
      }
    }
  } else {
    let head = 0;
    let tail = 0;
    while (head !== total) {
      const t = req.waitTail(head, c.timeoutMs, "request", n);
      if (!rsp.hasRoom(tail, (t - head) | 0)) throw new Error(`Response queue full at ${tail}`);
      for (; head !== t; head = (head + 1) | 0) {
        e.respond(req.slot(head), rsp.slot(tail), rsp.view, rsp.offsetOf(tail), head);
        tail = (tail + 1) | 0;
      }
      req.release(head);
      rsp.publish(tail, n);
    }
  }
}

/** Report ready, then wait for the go message. */
function ready(): Promise<void> {
  const go = new Promise<void>((res) => parentPort!.once("message", () => res()));
  parentPort!.postMessage({ ready: true } satisfies RingPeerReply);
  return go;
}

const cfg = workerData as RingPeerConfig;
let t0 = 0;
const started = (): void => {
  t0 = performance.now();
};
const counts: Counts = { kicks: 0, sleeps: 0, cpuNs: 0 };
const cpu0 = threadCpuNs();
const body = cfg.kind === "xenlab" ? xenlab(cfg, started, counts) : sabSpsc(cfg, started, counts);
body.then(
  () => {
    counts.cpuNs = threadCpuNs() - cpu0;
    parentPort!.postMessage({
      ok: true,
      seconds: (performance.now() - t0) / 1000,
      ...counts,
    } satisfies RingPeerReply);
  },
  (err: unknown) => parentPort!.postMessage({ ok: false, error: String(err) } satisfies RingPeerReply),
);
