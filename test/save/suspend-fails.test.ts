/**
 * Suspends that do not happen. libxl's cancel path: a guest that does not acknowledge `control/shutdown = suspend` in time
 * (here: its only thread held by a module) gets the request taken back in a transaction, the
 * save fails with the reason, and the guest, once free, finds "" and goes on running. And a guest
 * that dies while it suspends: the save fails with that, as libxl's does on a destroyed domain.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { suspendGuest } from "../../src/host/save.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";

const STALL = new URL("./fixtures/stall.ts", import.meta.url).href;
const DIES = new URL("./fixtures/dies.ts", import.meta.url).href;

describe("suspends that do not happen", () => {
  let fx: GuestHost;
  before(async () => {
    fx = await startHost({ guest: { name: "deaf" } });
  });
  after(() => fx?.stop());

  it("a request the guest does not acknowledge is taken back after the time-out; the guest goes on", async () => {
    const { host, domU } = fx;
    await host.hv.insmod(domU, STALL);
    const stalled = host.hv.call(domU, "stall", "stall", 1500);
    await assert.rejects(
      suspendGuest(host, domU, 300),
      /^Error: Cannot save deaf \(\d+\): the guest did not acknowledge the suspend request in 0\.3 s \(its kernel must watch control\/shutdown\)$/,
    );
    assert.equal(await host.xs.read(`/local/domain/${domU}/control/shutdown`), "");
    await stalled;
    // Free again, it answers, and is not suspended.
    assert.deepEqual(await host.hv.lsmod(domU), ["stall"]);
    assert.equal(host.hv.info(domU)?.state, "running");
  });

  it("fails, saying so, when the guest dies while it suspends", async () => {
    const { host } = fx;
    const { domid } = await host.createDomain({ name: "dying" });
    await host.hv.insmod(domid, DIES);
    await assert.rejects(
      suspendGuest(host, domid),
      /^Error: Cannot save dying \(\d+\): it did not suspend: Domain \d+ \(dying\) exited before it suspended$/,
    );
    assert.equal(host.hv.info(domid)?.state, "crashed");
    await host.destroyDomain(domid);
  });
});
