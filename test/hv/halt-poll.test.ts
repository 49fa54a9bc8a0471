/**
 * Halt polling in a vCPU's async event loop (src/kernel/evtchn.ts): the window's rule, KVM's
 * grow/shrink, as exact numbers; then the loop itself in this thread, with events sent from
 * timers: once the window has grown, events are taken while polling, without a sleep; the host's
 * limit of polling threads makes a vCPU sleep instead, as does a driver's holdPolling; stop() ends a loop that is polling. The
 * assertions are on counts of what happened, not on how long it took.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventChannels } from "../../src/hv/evtchn.ts";
import {
  CONTENDED_GAP_US,
  EventChannelUpcall,
  nextPollWindow,
  type UpcallOptions,
} from "../../src/kernel/evtchn.ts";
import { POLLERS } from "../../src/xen/domain-boot.ts";

describe("nextPollWindow (KVM's halt_poll_ns rule, in µs)", () => {
  it("grows a window that missed a halt shorter than the max: from 10 µs, doubling, capped", () => {
    assert.equal(nextPollWindow(0, 50, 200), 10);
    assert.equal(nextPollWindow(10, 50, 200), 20);
    assert.equal(nextPollWindow(160, 190, 200), 200);
  });

  it("keeps a window that caught the halt, or that is at the max already", () => {
    assert.equal(nextPollWindow(40, 30, 200), 40);
    assert.equal(nextPollWindow(200, 199.5, 200), 200);
  });

  it("halves a window after a halt longer than the max, to 0 under 10 µs", () => {
    assert.equal(nextPollWindow(200, 5000, 200), 100);
    assert.equal(nextPollWindow(10, 5000, 200), 0);
    assert.equal(nextPollWindow(0, 5000, 200), 0);
  });

  it("never polls with a max of 0", () => {
    assert.equal(nextPollWindow(0, 1, 0), 0);
    assert.equal(nextPollWindow(0, 1e6, 0), 0);
  });
});

/** A domain with an IPI port, its vCPU 0 on this thread, started; `next()` sends after 1 ms. */
function looping(opts: UpcallOptions) {
  const ev = new EventChannels();
  const u = new EventChannelUpcall(ev.addDomain(1), opts);
  const port = ev.bindIpi(1);
  let handled = 0;
  let wake: () => void = () => {};
  u.bind(port, () => {
    handled++;
    wake();
  });
  const loop = u.start();
  /** Sends one event 1 ms from now and waits until its handler ran (and ran `inHandler`). */
  const next = (inHandler?: () => void): Promise<void> =>
    new Promise<void>((res) => {
      wake = () => {
        inHandler?.();
        res();
      };
      setTimeout(() => u.send(port), 1);
    });
  return { u, loop, next, handled: () => handled };
}

describe("the async loop with halt polling", () => {
  it("takes events while polling, without sleeping, once the window has grown", async () => {
    // A max of 1 s: every halt here is shorter, so the window only grows. Contention detection
    // off: on a loaded machine it would (rightly) stop some polls.
    const t = looping({ haltPollUs: 1_000_000, contendedGapUs: Number.POSITIVE_INFINITY });
    try {
      for (let i = 0; i < 30; i++) await t.next();
      const h = t.u.halts;
      assert.equal(t.handled(), 30);
      assert.equal(h.polled + h.slept, 30, "one halt per event");
      assert.ok(h.slept >= 1, "the first halt sleeps: the window starts at 0");
      assert.ok(h.polled >= 10, `events taken while polling: ${h.polled} of 30`);
      assert.ok(h.windowUs >= 1000, `window ${h.windowUs} µs`);
    } finally {
      await t.u.stop();
    }
    await t.loop;
  });

  it("ends a poll that lost its core, sleeps, and backs off from polling", async () => {
    const t = looping({ haltPollUs: 1_000_000 });
    try {
      // Until the loop polls (on a loaded machine it may be backing off from a real contention).
      for (let i = 0; i < 10 || !(t.u.pollingAllowed && t.u.halts.windowUs > 0); i++) {
        assert.ok(i < 1000, "the loop never polled");
        await t.next();
      }
      const before = t.u.halts.contended;
      // From the handler: the loop's poll starts right after it, and this callback runs before
      // the poll's first look. It holds the thread for longer than CONTENDED_GAP_US, as the
      // scheduler does when it gives the core to another thread: the first look sees the gap.
      await t.next(() =>
        setImmediate(() => {
          const until = performance.now() + (3 * CONTENDED_GAP_US) / 1000;
          while (performance.now() < until) {}
        }),
      );
      let allowed = true;
      await t.next(() => {
        allowed = t.u.pollingAllowed;
      });
      assert.ok(t.u.halts.contended > before, "the poll saw the gap");
      assert.equal(allowed, false, "and the vCPU backs off from polling");
    } finally {
      await t.u.stop();
    }
    await t.loop;
  });

  it("never polls with haltPollUs 0 (the default)", async () => {
    const t = looping({});
    try {
      for (let i = 0; i < 10; i++) await t.next();
      assert.deepEqual(t.u.halts, {
        polled: 0,
        slept: 10,
        crowded: 0,
        contended: 0,
        dozed: 0,
        quick: 0,
        windowUs: 0,
      });
    } finally {
      await t.u.stop();
    }
  });

  it("sleeps without polling while a driver holds polling off", async () => {
    const t = looping({ haltPollUs: 1_000_000, contendedGapUs: Number.POSITIVE_INFINITY });
    try {
      for (let i = 0; i < 19; i++) await t.next();
      // From the handler, as netback does: the halt that follows it is already held.
      await t.next(() => t.u.holdPolling(60_000));
      const before = t.u.halts;
      assert.ok(before.polled >= 5, `events taken while polling before the hold: ${before.polled}`);
      for (let i = 0; i < 10; i++) await t.next();
      const held = t.u.halts;
      assert.equal(held.polled, before.polled, "no halt polls during the hold");
      assert.equal(held.slept, before.slept + 10);
      assert.equal(held.crowded + held.contended, 0);
      assert.equal(t.u.pollingAllowed, true, "the hold is this vCPU's, not the host's");
    } finally {
      await t.u.stop();
    }
  });

  it("sleeps instead of polling when the host's limit of polling threads is reached", async () => {
    const count = new Int32Array(new SharedArrayBuffer(POLLERS.bytes));
    count[0] = 1; // another thread is polling
    count[1] = 1; // and one may
    const t = looping({ haltPollUs: 1_000_000, pollers: count });
    try {
      for (let i = 0; i < 10; i++) await t.next();
      const h = t.u.halts;
      assert.equal(h.polled, 0);
      assert.equal(h.slept, 10);
      assert.ok(h.crowded >= 5, `halts that found the limit reached: ${h.crowded}`);
      assert.equal(count[0], 1, "the count is back to the other thread's");
    } finally {
      await t.u.stop();
    }
  });

  it("counts itself among the polling threads while it polls, and ends a poll on stop()", async () => {
    const count = new Int32Array(new SharedArrayBuffer(POLLERS.bytes));
    count[1] = 2;
    const t = looping({ haltPollUs: 1_000_000, pollers: count });
    try {
      for (let i = 0; i < 15; i++) await t.next();
      // After an event the loop polls for its window (a few ms by now): catch it at it. A slow
      // turn may outlast a window; another event starts another poll.
      let seen = false;
      for (let tries = 0; tries < 20 && !seen; tries++) {
        await new Promise((res) => setImmediate(res));
        seen = count[0] === 1;
        if (!seen) await t.next();
      }
      assert.ok(seen, "the count showed this loop polling");
      assert.ok(t.u.halts.windowUs > 0);
    } finally {
      await t.u.stop();
    }
    await t.loop;
    assert.equal(count[0], 0, "a stopped loop does not count");
  });
});
