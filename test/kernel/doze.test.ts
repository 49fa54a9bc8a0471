/**
 * Dozing (src/kernel/evtchn.ts): where the host allows no halt polling (as beside a busy
 * neighbour), a guest's vCPU that keeps halting briefly waits for its next event in a blocking
 * wait, not in waitAsync; dom0's never does (its event loop has sockets and files to serve). The
 * host's requests still reach a dozing guest (the hypervisor nudges its wake word). Counts of what
 * happened, not timings.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { EventChannels } from "../../src/hv/evtchn.ts";
import type { HaltStats } from "../../src/kernel/evtchn.ts";
import { EVTCHN_LAYOUT, eventMemory, W_WAKE } from "../../src/xen/evtchn-abi.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";

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

  it("dom0's vCPU never dozes", async () => {
    const before = await reads(0, 0);
    const h = await reads(0, 300);
    assert.ok(h.slept + h.crowded > before.slept + before.crowded, `dom0 halted: ${JSON.stringify(h)}`);
    assert.equal(h.dozed, 0);
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
      assert.equal(Atomics.load(m.words, W_WAKE + v), before[v]! + 1, `vCPU ${v}'s wake word moved`);
      assert.equal(Atomics.load(m.bytes, EVTCHN_LAYOUT.vcpuInfo * v + EVTCHN_LAYOUT.upcallPending), 0);
    }
    ev.nudge(99); // no such domain: nothing
  });
});
