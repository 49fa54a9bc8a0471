/**
 * netfront's attach race, made deterministic. It failed about one run of net-hostile.test.ts in
 * fifteen: "netback failed: EIO connecting vif1.0: map of ref 8 of domain 1: undefined error".
 * netfront goes Connected as soon as it has written its rings (it never writes Initialised), and its
 * watch on the backend's `state` reads the key when each event is handled: when netback wrote
 * InitWait before the frontend's first read, the watch's initial event and the event of that write
 * both read InitWait, the second once netfront is Connected and netback is mapping its rings.
 * netfront took it for a new backend: it ended the ring's grants and started over, and netback mapped
 * a dead grant. Here the backend is played by the test (dom0's own XenStore writes, no netback).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { NETFRONT_MODULE } from "../../src/host/nic.ts";
import { GNTMAP, GNTST } from "../../src/xen/grant-table-abi.ts";
import { devicePaths } from "../../src/xenbus/bus-type.ts";
import { writeDeviceNodes } from "../../src/xenbus/device-nodes.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

describe("netfront: an InitWait before the backend's Connected is no new backend", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;

  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 1024 } });
    ({ host, domU } = fx);
    await host.hv.insmod(domU, NETFRONT_MODULE);
  });
  after(() => fx?.stop());

  const state = (path: string, want: string) =>
    host.xs.wait(`${path}/state`, async (xs) => (await xs.tryRead(`${path}/state`)) === want, {
      signal: AbortSignal.timeout(15_000),
    });
  const mapRing = (ref: string) =>
    host.hv.grants.mapGrantRef(0, { flags: GNTMAP.host_map, ref: Number(ref), dom: domU });
  const startedOver = () => host.hv.dmesg(domU).filter((l) => /backend went away/.test(l)).length;
  const up = async (fe: string) => {
    const list = (await host.hv.call(domU, "xen_netfront", "list", undefined)) as Record<
      string,
      { up: boolean }
    >;
    return list[fe.replace(`/local/domain/${domU}/`, "")]?.up === true;
  };

  it("keeps its rings and port through a repeated InitWait, and comes up on Connected", async () => {
    const { frontend: fe, backend: be } = devicePaths("vif", domU, 0);
    await host.transaction((t) =>
      writeDeviceNodes(
        t,
        domU,
        { fe, be },
        [
          ["online", "1"],
          ["feature-rx-copy", "1"],
        ],
        [["mac", "00:16:3e:00:00:21"]],
      ),
    );
    // netback's probe: InitWait. netfront answers with its rings and → Connected at once.
    await host.xs.write(`${be}/state`, "2");
    await state(fe, "4");
    const tx = await host.xs.read(`${fe}/tx-ring-ref`);
    const rx = await host.xs.read(`${fe}/rx-ring-ref`);
    const port = await host.xs.read(`${fe}/event-channel`);
    // netback maps the rings, as it does on seeing Connected...
    const txMap = mapRing(tx);
    const rxMap = mapRing(rx);
    assert.equal(txMap.status, GNTST.okay);
    assert.equal(rxMap.status, GNTST.okay);
    // ...while the frontend's second watch event reads InitWait: the guest's read of the state
    // after the last write below (xenstored's trace) is one that read it.
    let writes = 0;
    let readsAfter = 0;
    const off = host.core.tracer.subscribe((e) => {
      if (e.kind !== "xs-request" || e.path !== `${be}/state`) return;
      if (e.domid === 0 && e.type === "WRITE") writes++;
      else if (writes === 2 && e.domid === domU && e.type === "READ") readsAfter++;
    });
    try {
      await host.xs.write(`${be}/state`, "2");
      await host.xs.write(`${be}/state`, "2");
      await until("the frontend's read of the backend's InitWait", () => readsAfter > 0);
    } finally {
      off();
    }
    // netback connects. The frontend handles its events in order, so once it is up it has
    // handled both InitWaits.
    await host.xs.write(`${be}/state`, "4");
    await until("eth0 up", () => up(fe), { detail: () => host.hv.dmesg(domU).join("\n") });
    assert.equal(startedOver(), 0, `the frontend started over:\n${host.hv.dmesg(domU).join("\n")}`);
    assert.equal(await host.xs.read(`${fe}/tx-ring-ref`), tx);
    assert.equal(await host.xs.read(`${fe}/rx-ring-ref`), rx);
    assert.equal(await host.xs.read(`${fe}/event-channel`), port);
    assert.equal(await host.xs.read(`${fe}/state`), "4");

    // A backend that was Connected and comes back in InitWait is a new one (netback reloaded, its
    // Initialising missed): the frontend starts over with new rings.
    assert.equal(host.hv.grants.unmapGrantRef(0, txMap.handle!), GNTST.okay);
    assert.equal(host.hv.grants.unmapGrantRef(0, rxMap.handle!), GNTST.okay);
    await host.xs.write(`${be}/state`, "2");
    await until(
      "the frontend Connected again, started over once",
      async () => startedOver() === 1 && (await host.xs.tryRead(`${fe}/state`)) === "4",
      { detail: () => host.hv.dmesg(domU).join("\n") },
    );
    const tx2 = await host.xs.read(`${fe}/tx-ring-ref`);
    const again = mapRing(tx2);
    assert.equal(again.status, GNTST.okay);
    assert.equal(host.hv.grants.unmapGrantRef(0, again.handle!), GNTST.okay);
  });
});
