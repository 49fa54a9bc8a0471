/**
 * Dozing (src/kernel/evtchn.ts): where the host allows no halt polling (as beside a busy
 * neighbour), a guest's vCPU that keeps halting briefly waits for its next event in a blocking
 * wait, not in waitAsync; dom0's never does (its event loop has sockets and files to serve). The
 * host's requests still reach a dozing guest (the hypervisor nudges its wake word). A busy guest's
 * doze mostly skips its event loop's turn (quick), yet the loop turns at least every millisecond
 * and work that needs it is not held up for good. Counts of what happened, not timings.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { EventChannels } from "../../src/hv/evtchn.ts";
import type { HaltStats } from "../../src/kernel/evtchn.ts";
import { EVTCHN_LAYOUT, eventMemory, NUDGE, nudgedSince, W_WAKE } from "../../src/xen/evtchn-abi.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

const MODULE = new URL("./fixtures/halts-module.ts", import.meta.url).href;

describe("dozing when the host allows no halt polling", () => {
  let fx: GuestHost;
  let host: Host;

  before(async () => {
    fx = (await startHost({ governPolling: false, guest: { name: "dozer" } })) as GuestHost;
    host = fx.host;
    host.hv.pollLimit = 0; // what the governor sets while every core is wanted
    for (const d of [0, fx.domU]) await host.hv.insmod(d, MODULE, []);
  });
  after(() => fx?.stop());

  const reads = async (domid: number, n: number): Promise<HaltStats> =>
    (await host.hv.call(domid, "halts", "xs-reads", n)) as HaltStats;

  it("a guest's halts between quick events doze, and none polls", async () => {
    const before = await reads(fx.domU, 0);
    const after = await reads(fx.domU, 300);
    const dozed = after.dozed - before.dozed;
    const slept = after.slept - before.slept;
    assert.equal(after.polled, before.polled, "no halt polled: the host allows none");
    assert.ok(dozed > 0, `halts that dozed: ${dozed} (slept in waitAsync: ${slept})`);
    assert.ok(dozed > slept, `most halts doze once the domain is busy: ${dozed} dozed, ${slept} slept`);
  });

  it("a busy guest's dozes skip the event loop's turn (quick), and the loop still turns every millisecond", async () => {
    // Quick dozes may be backing off (QUICK_BACKOFF_MS) after one that held up the guest's
    // start: busy again until they come back.
    const before = await reads(fx.domU, 0);
    let after = before;
    await until(
      "quick dozes",
      async () => {
        after = await reads(fx.domU, 300);
        return after.quick > before.quick;
      },
      { every: 0 },
    );
    assert.ok(after.quick - before.quick <= after.dozed - before.dozed, JSON.stringify({ before, after }));
    // A 2 ms timer fires while the guest stays busy with reads (the loop turns at least once a
    // millisecond); without the turns it would wait for the 10,000 reads to end.
    const took = (await host.hv.call(fx.domU, "halts", "timer-while-busy", 10_000)) as number;
    assert.ok(took < 10_000, `the timer fired after ${took} reads`);
  });

  it("work that needs more turns of its promises than a quick doze lets run still runs", async () => {
    // Each read is followed by a 64-tick promise chain: a quick doze may sleep before it ends,
    // wakes after DOZE_MS, and quick dozes back off. Every read is done.
    const h = (await host.hv.call(fx.domU, "halts", "xs-reads-deep", 200)) as HaltStats;
    assert.equal(typeof h.quick, "number");
    assert.match(await host.hv.call(fx.domU, "halts", "xs-reads", 1).then(() => "answered"), /answered/);
  });

  it("dom0's vCPU never dozes", async () => {
    const before = await reads(0, 0);
    const h = await reads(0, 300);
    assert.ok(h.slept + h.crowded > before.slept + before.crowded, `dom0 halted: ${JSON.stringify(h)}`);
    assert.equal(h.dozed, 0);
    assert.equal(h.quick, 0);
  });

  it("the host's requests reach a guest right after it was busy, every one answered", async () => {
    for (let i = 0; i < 20; i++) {
      const h = await reads(fx.domU, 20); // busy, then a request from the host while it may doze
      assert.equal(typeof h.dozed, "number");
      assert.match(await host.hv.call(fx.domU, "halts", "xs-reads", 0).then(() => "answered"), /answered/);
    }
  });
});

describe("EventChannels.nudge", () => {
  it("wakes every vCPU of a domain without marking an upcall pending", () => {
    const ev = new EventChannels();
    const boot = ev.addDomain(3, { vcpus: 2 });
    const m = eventMemory(boot.events);
    const before = [0, 1].map((v) => Atomics.load(m.words, W_WAKE + v));
    ev.nudge(3);
    for (const v of [0, 1]) {
      assert.equal(Atomics.load(m.words, W_WAKE + v), before[v]! + NUDGE, `vCPU ${v}'s wake word moved`);
      assert.equal(Atomics.load(m.bytes, EVTCHN_LAYOUT.vcpuInfo * v + EVTCHN_LAYOUT.upcallPending), 0);
    }
    ev.nudge(99); // no such domain: nothing
  });

  it("is told from kicks by the amount it adds: nudgedSince", () => {
    assert.equal(nudgedSince(7, 7 + 3), false, "three kicks");
    assert.equal(nudgedSince(7, 7 + NUDGE), true, "a nudge");
    assert.equal(nudgedSince(7, 7 + NUDGE + 2), true, "a nudge and two kicks");
    assert.equal(nudgedSince(0x7fffffff, (0x7fffffff + NUDGE) | 0), true, "across the int32 wrap");
    assert.equal(nudgedSince(-1, 1), false, "two kicks across zero");
  });
});
