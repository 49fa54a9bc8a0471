/**
 * netfront ↔ netback ↔ passt end to end: attachNic writes libxl's keys, both ends negotiate to
 * Connected with Linux's keys, each vif gets a passt of its own, and the guest's raw Ethernet frames
 * reach passt's real network stack: an ARP request is answered by passt. Detach closes both ends
 * and ends passt.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { attachNic, detachNic, listNics } from "../../src/host/nic.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { hasCommand, requirePeer } from "../helpers/peers.ts";
import { until } from "../helpers/until.ts";
import { arpRequest, isArpReply } from "./frames.ts";

const RAW = new URL("./fixtures/raw-eth.ts", import.meta.url).href;
const MAC = "00:16:3e:12:34:56";

describe("netfront ↔ netback ↔ passt", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;
  const fe = () => `/local/domain/${domU}/device/vif/0`;
  const be = () => `/local/domain/0/backend/vif/${domU}/0`;
  const call = (cmd: string, arg?: unknown) => host.hv.call(domU, "raw_eth", cmd, arg);

  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 1024 } });
    ({ host, domU } = fx);
  });
  after(() => fx?.stop());

  it("attaches: both ends Connected, with Linux's keys", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", hasCommand("passt"))) return;
    const devid = await attachNic(host, domU, { mac: MAC });
    assert.equal(devid, 0);
    await host.hv.insmod(domU, RAW);
    assert.equal(await host.xs.read(`${fe()}/state`), "4");
    assert.equal(await host.xs.read(`${be()}/state`), "4");
    for (const [k, v] of [
      ["feature-rx-copy", "1"],
      ["feature-rx-flip", "0"],
      ["feature-sg", "1"],
      ["feature-gso-tcpv4", "1"],
      ["multi-queue-max-queues", "4"],
      ["mac", MAC],
      ["handle", "0"],
    ])
      assert.equal(await host.xs.read(`${be()}/${k}`), v, k);
    for (const [k, v] of [
      ["request-rx-copy", "1"],
      ["feature-rx-notify", "1"],
      ["feature-sg", "1"],
      ["mac", MAC],
    ])
      assert.equal(await host.xs.read(`${fe()}/${k}`), v, k);
    assert.match(await host.xs.read(`${fe()}/tx-ring-ref`), /^\d+$/);
    assert.match(await host.xs.read(`${fe()}/rx-ring-ref`), /^\d+$/);
    assert.match(await host.xs.read(`${fe()}/event-channel`), /^\d+$/);
    await until("eth0", async () => ((await call("devices")) as unknown[]).length === 1);
    assert.deepEqual(await call("devices"), [{ name: "eth0", mac: MAC }]);
    const rows = await listNics(host, domU);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.mac, MAC);
    assert.equal(rows[0]!.state, 4);
  });

  it("carries a frame to passt and passt's answer back: ARP who-has is answered", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", hasCommand("passt"))) return;
    assert.equal(await call("send", { hex: arpRequest(MAC, [198, 51, 100, 7]) }), true);
    // Asked again every half second, as a stack does: passt drops an ARP request that reaches it
    // in one read with an IPv4 frame before it (docs/net.md).
    let sent = Date.now();
    let reply: { hex: string } | undefined;
    await until("passt's ARP reply", async () => {
      if (Date.now() - sent > 500) {
        sent = Date.now();
        await call("send", { hex: arpRequest(MAC, [198, 51, 100, 7]) });
      }
      for (const f of (await call("recv")) as { hex: string }[]) {
        // The guest's own stack (inet) may have asked for the gateway meanwhile: ours is for .7.
        if (isArpReply(f.hex) && f.hex.slice(56, 64) === "c6336407") reply = f;
      }
      return reply !== undefined;
    });
    const h = reply!.hex;
    assert.equal(h.slice(0, 12), MAC.split(":").join(""), "to our mac");
    assert.equal(h.slice(56, 64), "c6336407", "198.51.100.7 is at passt's mac");
    const stats = (await host.hv.call(0, "xen_netback", "stats", undefined)) as Record<
      string,
      { txPackets: number; rxPackets: number; passtPid: number | null }
    >;
    const s = stats[`backend/vif/${domU}/0`]!;
    assert.ok(s.txPackets >= 1 && s.rxPackets >= 1);
    assert.ok(s.passtPid !== null);
  });

  it("detaches: both ends close, passt ends", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", hasCommand("passt"))) return;
    const stats = (await host.hv.call(0, "xen_netback", "stats", undefined)) as Record<
      string,
      { passtPid: number }
    >;
    const pid = stats[`backend/vif/${domU}/0`]!.passtPid;
    await detachNic(host, domU, "0");
    assert.equal(await host.xs.exists(fe()), false);
    assert.equal(await host.xs.exists(be()), false);
    await until("passt to exit", () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    assert.deepEqual(await call("devices"), []);
  });
});
