/**
 * Worker entry of `xenlab bench evtchn`: one end of a notify ping-pong, either a xenlab domain
 * (an EventChannelUpcall on a real port) or a bare baseline (two counters in one Int32Array,
 * Atomics.wait/notify or waitAsync, as measured in docs/platform.md). The pinger times `rounds` round trips
 * after `warmup` and posts the seconds; a wait longer than `timeoutMs` fails the run.
 */
import { parentPort, workerData } from "node:worker_threads";
import { EventChannelUpcall, type GuestEventsBoot } from "../kernel/evtchn.ts";

export type PeerSide =
  | { kind: "xenlab"; boot: GuestEventsBoot; port: number }
  | { kind: "atomics"; words: SharedArrayBuffer };

export type PeerConfig = PeerSide & {
  role: "ping" | "pong";
  wait: "block" | "async";
  warmup: number;
  rounds: number;
  timeoutMs: number;
  /** The async loop's halt-polling window, µs, and the host's word POLLERS it obeys. */
  haltPollUs: number;
  pollers: SharedArrayBuffer;
};

export type PeerReply = { ready: true } | { ok: true; seconds: number } | { ok: false; error: string };

interface WaitAsyncResult {
  async: boolean;
  value: Promise<string> | string;
}
type WaitAsync = (a: Int32Array, index: number, value: number, timeout?: number) => WaitAsyncResult;
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Word indexes of the bare baseline: the pinger's counter and the ponger's. */
const PING = 0;
const PONG = 1;

function lost(at: number): Error {
  return new Error(`Lost wake-up at round trip ${at}`);
}

/**
 * Both ends work from the handler, as an event-driven driver does: the ponger answers each event
 * and the pinger sends the next ping from its handler. The thread waits in block() or in the async
 * loop (a watchdog per run, not a timer per round trip, which would cost more than the rest).
 */
async function xenlab(c: PeerConfig & { kind: "xenlab" }, total: number, started: () => void): Promise<void> {
  const ev = new EventChannelUpcall(
    c.boot,
    c.wait === "async" ? { haltPollUs: c.haltPollUs, pollers: new Int32Array(c.pollers), doze: true } : {},
  );
  ev.upcall(); // the event the bind left pending on one end
  let got = 0;
  let finish: () => void = () => {};
  ev.bind(c.port, () => {
    got++;
    if (got === c.warmup && c.role === "ping") started();
    if (c.role === "pong" || got < total) ev.send(c.port);
    if (got === total) finish();
  });
  await ready();
  if (c.role === "ping") {
    if (c.warmup === 0) started();
    ev.send(c.port);
  }
  if (c.wait === "block") {
    while (got < total) if (ev.block(c.timeoutMs) === 0 && got < total) throw lost(got + 1);
  } else {
    let last = -1;
    let watchdog: ReturnType<typeof setInterval> | undefined;
    const loop = ev.start();
    await new Promise<void>((res, rej) => {
      finish = res;
      loop.catch(rej);
      watchdog = setInterval(() => {
        if (got === last) rej(lost(got + 1));
        last = got;
      }, c.timeoutMs);
      if (got >= total) res();
    }).finally(() => clearInterval(watchdog));
  }
  await ev.stop();
}

async function atomics(
  c: PeerConfig & { kind: "atomics" },
  total: number,
  started: () => void,
): Promise<void> {
  const w = new Int32Array(c.words);
  const mine = c.role === "ping" ? PING : PONG;
  const theirs = c.role === "ping" ? PONG : PING;
  const waitFor = async (n: number): Promise<void> => {
    for (;;) {
      const v = Atomics.load(w, theirs);
      if (v >= n) return;
      if (c.wait === "block") {
        if (Atomics.wait(w, theirs, v, c.timeoutMs) === "timed-out") throw lost(n);
      } else {
        const r = waitAsync(w, theirs, v, c.timeoutMs);
        if ((r.async ? await r.value : r.value) === "timed-out") throw lost(n);
      }
    }
  };
  // As EventChannelUpcall.start() must, keep the event loop alive while waitAsync is pending: a
  // pending waitAsync alone does not, and the worker would exit (docs/platform.md).
  const keepAlive = setInterval(() => {}, 0x7fffffff);
  await ready();
  try {
    for (let i = 1; i <= total; i++) {
      if (c.role === "ping") {
        if (i === c.warmup + 1) started();
        Atomics.store(w, mine, i);
        Atomics.notify(w, mine);
        await waitFor(i);
      } else {
        await waitFor(i);
        Atomics.store(w, mine, i);
        Atomics.notify(w, mine);
      }
    }
  } finally {
    clearInterval(keepAlive);
  }
}

/** Report ready, then wait for the go message. */
function ready(): Promise<void> {
  const go = new Promise<void>((res) => parentPort!.once("message", () => res()));
  parentPort!.postMessage({ ready: true } satisfies PeerReply);
  return go;
}

const cfg = workerData as PeerConfig;
const total = cfg.warmup + cfg.rounds;
let t0 = 0;
const started = (): void => {
  t0 = performance.now();
};
const body = cfg.kind === "xenlab" ? xenlab(cfg, total, started) : atomics(cfg, total, started);
body.then(
  () => parentPort!.postMessage({ ok: true, seconds: (performance.now() - t0) / 1000 } satisfies PeerReply),
  (err: unknown) => parentPort!.postMessage({ ok: false, error: String(err) } satisfies PeerReply),
);
