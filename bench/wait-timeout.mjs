/**
 * How fast a sleeping thread is woken, by how it sleeps (docs/platform.md §1): a ping-pong between
 * two workers, 20,000 timed round trips after 1,000, five fresh pairs per variant, beside N
 * CPU-bound threads (the first argument, default 1, as `xenlab bench … --busy 1`):
 *
 *   block          an untimed blocking Atomics.wait (the bench evtchn baseline)
 *   block T=ms     the same with a timeout of T ms (never reached: the peer answers in µs)
 *   waitAsync      Atomics.waitAsync, the event loop turning (the async upcall loop)
 *   turn+block     a setImmediate (one turn of the event loop), then an untimed blocking wait
 *
 * Not a benchmark of xenlab: the facts behind its choice of waits, run as
 * `node bench/wait-timeout.mjs [busy]`.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

const ROUNDS = 20000;
const WARMUP = 1000;

if (isMainThread) {
  const busy = Number(process.argv[2] ?? 1);
  const spinners = Array.from({ length: busy }, () => new Worker("for (;;) {}", { eval: true }));
  const variants = [
    ["block", {}],
    ...[0.05, 0.2, 1, 2, 3, 5, 10, 1000].map((t) => [`block T=${t}`, { timeout: t }]),
    ["waitAsync", {}],
    ["turn+block", {}],
  ];
  console.log(`round trips a second (thousands), five pairs each, ${busy} busy thread(s)`);
  for (const [name, extra] of variants) {
    const rates = [];
    for (let r = 0; r < 5; r++) {
      const sab = new SharedArrayBuffer(8);
      const mode = name.split(" ")[0];
      const pair = [0, 1].map(
        (role) => new Worker(new URL(import.meta.url), { workerData: { sab, role, mode, ...extra } }),
      );
      const ms = await new Promise((res) => pair[0].once("message", res));
      await Promise.all(pair.map((w) => w.terminate()));
      rates.push((ROUNDS / ms).toFixed(1));
    }
    console.log(`  ${name.padEnd(16)} ${rates.join("  ")}`);
  }
  await Promise.all(spinners.map((w) => w.terminate()));
} else {
  const { sab, role, mode, timeout } = workerData;
  const w = new Int32Array(sab);
  const me = role;
  const peer = 1 - role;
  let n = 0;
  let t0 = 0;
  setInterval(() => {}, 1e9); // a pending waitAsync alone does not keep a worker alive
  /** My turn (w[me] set): answer; false when the pinger has timed its rounds. */
  const turn = () => {
    Atomics.store(w, me, 0);
    n++;
    if (role === 0 && n === WARMUP) t0 = performance.now();
    if (role === 0 && n === WARMUP + ROUNDS) {
      parentPort.postMessage(performance.now() - t0);
      return false;
    }
    Atomics.store(w, peer, 1);
    Atomics.notify(w, peer);
    return true;
  };
  const loops = {
    block() {
      for (;;) {
        if (Atomics.load(w, me) === 0) Atomics.wait(w, me, 0, timeout ?? Number.POSITIVE_INFINITY);
        if (Atomics.load(w, me) !== 0 && !turn()) return;
      }
    },
    async waitAsync() {
      for (;;) {
        if (Atomics.load(w, me) === 0) {
          const r = Atomics.waitAsync(w, me, 0);
          if (r.async) await r.value;
        }
        if (!turn()) return;
      }
    },
    async "turn+block"() {
      for (;;) {
        await new Promise((res) => setImmediate(res));
        if (Atomics.load(w, me) === 0) Atomics.wait(w, me, 0);
        if (!turn()) return;
      }
    },
  };
  if (role === 0) Atomics.store(w, 0, 1);
  loops[mode]();
}
