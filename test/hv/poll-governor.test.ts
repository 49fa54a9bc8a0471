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

function target(awake = 0): PollTarget & { awakeThreads: number } {
  return { awakeThreads: awake, pollLimit: 2 };
}

/** A governor of 2 cores fed `samples` of runnable threads, one per step. */
function fed(t: PollTarget, samples: number[]): PollGovernor {
  return new PollGovernor({ target: t, cores: 2, sample: () => samples.shift() });
}

describe("PollGovernor", () => {
  it("lets one thread per core poll while the busy domains and the others fit in the cores", () => {
    // A guest streams from dom0, both awake (polling or working): 2 runnable + the sampler.
    const t = target(2);
    const g = fed(t, [3, 3, 3]);
    for (let i = 0; i < 3; i++) g.step();
    assert.equal(t.pollLimit, 2);
    assert.equal(g.contendedSamples, 0);
  });

  it("takes polling away beside a busy neighbour", () => {
    // The same beside one CPU-bound thread: 3 runnable + the sampler, 2 of them ours.
    const t = target(2);
    const g = fed(t, [4]);
    g.step();
    assert.equal(t.pollLimit, 0);
    assert.equal(g.contendedSamples, 1);
  });

  it("takes polling away when other threads want every core, whatever the domains do", () => {
    // 2 others + the sampler, no domain awake: one that wakes to poll would be a third.
    const t = target(0);
    const g = fed(t, [3, 3, 3]);
    for (let i = 0; i < 3; i++) g.step();
    assert.equal(t.pollLimit, 0);
    // 1 other: a domain may poll beside it.
    const h = fed(t, Array<number>(WINDOW).fill(2));
    for (let i = 0; i < WINDOW; i++) h.step();
    assert.equal(t.pollLimit, 2);
  });

  it("does not stop polling for another thread that runs for an instant", () => {
    const t = target(2);
    // One sample of 5 sees a third thread: the median of the others stays 0.
    const g = fed(t, [3, 4, 3, 3, 3]);
    for (let i = 0; i < WINDOW; i++) {
      g.step();
      assert.equal(t.pollLimit, 2, `after sample ${i + 1}`);
    }
  });

  it(`gives polling back only when ${WINDOW} samples have not seen the domains' peak demand`, () => {
    const t = target(2);
    // The neighbour and 2 awake domains (+ the sampler), then the neighbour and 1.
    const g = fed(t, [4, ...Array<number>(WINDOW).fill(3)]);
    g.step(); // 1 other + 2 awake: contended
    assert.equal(t.pollLimit, 0);
    // The neighbour stays, the domains now sleep in turn: 1 awake at a time.
    t.awakeThreads = 1;
    for (let i = 1; i < WINDOW; i++) {
      g.step();
      assert.equal(t.pollLimit, 0, `after ${i} samples with 1 awake`);
    }
    g.step(); // the sample with 2 awake has left the window: 1 + 1 ≤ 2
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
