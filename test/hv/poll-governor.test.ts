/**
 * The host's poll governor (src/host/poll-governor.ts): the rule on fed samples, as exact
 * numbers; then on this machine, with a CPU-bound thread on every core, where it must take
 * polling away.
 */
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import { PollGovernor, type PollTarget, RunnableThreads, WINDOW } from "../../src/host/poll-governor.ts";

function target(polling = 0): PollTarget & { pollingThreads: number } {
  return { pollingThreads: polling, pollLimit: 2 };
}

/** A governor of 2 cores fed `samples` of runnable threads, one per step. */
function fed(t: PollTarget, samples: number[]): PollGovernor {
  const g = new PollGovernor({ target: t, cores: 2, sample: () => samples.shift() });
  return g;
}

describe("PollGovernor", () => {
  it("lets one thread per core poll while fewer threads than cores have work", () => {
    // A guest polls while dom0 serves it: 2 runnable + the sampler, 1 of them polling.
    const t = target(1);
    const g = fed(t, [3, 3, 2]);
    for (let i = 0; i < 3; i++) g.step();
    assert.equal(t.pollLimit, 2);
    assert.equal(g.contendedSamples, 0);
  });

  it("takes polling away when every core is wanted by a thread with work", () => {
    // The same beside a busy neighbour: 3 runnable + the sampler, 1 polling → 2 working.
    const t = target(1);
    const g = fed(t, [4]);
    g.step();
    assert.equal(t.pollLimit, 0);
    assert.equal(g.contendedSamples, 1);
  });

  it(`gives polling back only after ${WINDOW} samples without contention`, () => {
    const t = target(0);
    const g = fed(t, [3, ...Array<number>(WINDOW).fill(1)]);
    g.step();
    assert.equal(t.pollLimit, 0);
    for (let i = 1; i < WINDOW; i++) {
      g.step();
      assert.equal(t.pollLimit, 0, `after ${i} quiet samples`);
    }
    g.step();
    assert.equal(t.pollLimit, 2);
  });

  it("leaves the limit alone when the load cannot be read, and restores it on stop()", () => {
    const t = target(0);
    t.pollLimit = 1;
    const g = fed(t, []);
    g.step();
    assert.equal(t.pollLimit, 1);
    assert.equal(g.samples, 0);
    g.stop();
    assert.equal(t.pollLimit, 2);
  });

  it("reads the runnable threads from /proc/loadavg as its fourth field's count", (ctx) => {
    const proc = new RunnableThreads();
    try {
      const n = proc.read();
      if (n === undefined) {
        ctx.skip("/proc/loadavg is not readable here (not Linux)");
        return;
      }
      // This thread is running while it reads: at least 1.
      assert.ok(Number.isInteger(n) && n >= 1, `read ${n}`);
    } finally {
      proc.close();
    }
  });

  it("on this machine: stops polling while a CPU-bound thread runs on every core", async (ctx) => {
    const proc = new RunnableThreads();
    if (proc.read() === undefined) {
      ctx.skip("/proc/loadavg is not readable here (not Linux)");
      return;
    }
    const cores = availableParallelism();
    const spinners = Array.from(
      { length: cores },
      () =>
        new Worker(
          "require('node:worker_threads').parentPort.postMessage(0); for (let x = 0; ; x = (x + 1) | 0);",
          { eval: true },
        ),
    );
    try {
      await Promise.all(spinners.map((w) => new Promise((r) => w.once("message", r))));
      const t = target(0);
      const g = new PollGovernor({ target: t, cores });
      for (let i = 0; i < WINDOW; i++) {
        g.step();
        await new Promise((r) => setTimeout(r, 2));
      }
      assert.equal(t.pollLimit, 0, `runnable threads seen: ${proc.read()}`);
      g.stop();
    } finally {
      proc.close();
      await Promise.all(spinners.map((w) => w.terminate()));
    }
  });
});
