/**
 * Multi-queue netfront against netback, as Linux's pair negotiates it: netfront asks for
 * min(its max_queues, the backend's multi-queue-max-queues) queues, writes
 * multi-queue-num-queues and each queue's ring refs and event channel under queue-N/, and the
 * guest's traffic crosses them to passt and back (DHCP, UDP flows hashed to the queues).
 */
import assert from "node:assert/strict";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { attachNic, NETBACK_MODULE, NETFRONT_MODULE } from "../../src/host/nic.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { hasCommand, requirePeer } from "../helpers/peers.ts";
import { until } from "../helpers/until.ts";

const MAC = "00:16:3e:00:0a:02";

describe("xen_netfront max_queues", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;
  let udp: UdpSocket;
  const fe = () => `/local/domain/${domU}/device/vif/0`;
  const present = hasCommand("passt");
  const frontList = async () =>
    Object.values(
      (await host.hv.call(domU, "xen_netfront", "list", undefined)) as Record<
        string,
        { queues: number; txPerQueue: number[] }
      >,
    )[0]!;

  before(async () => {
    // Two queues take about 200 of the guest's pages.
    fx = await startHost({ guest: { name: "mqguest", maxPages: 2048 } });
    ({ host, domU } = fx);
    udp = createSocket("udp4");
    udp.on("message", (m, r) => udp.send(m, r.port, r.address));
    await new Promise<void>((r) => udp.bind(0, "127.0.0.1", () => r()));
    if (!present) return;
    // netback offers 2, netfront would take 3: they settle on 2.
    await host.hv.insmod(0, NETBACK_MODULE, ["max_queues=2"]);
    await host.hv.insmod(domU, NETFRONT_MODULE, ["max_queues=3"]);
    await attachNic(host, domU, { mac: MAC });
  });
  after(async () => {
    udp?.close();
    await fx?.stop();
  });

  it("takes the backend's maximum when it offers fewer, with each queue's keys under queue-N/", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", present)) return;
    assert.equal(await host.xs.read(`${fe()}/multi-queue-num-queues`), "2");
    for (const q of [0, 1])
      for (const key of ["tx-ring-ref", "rx-ring-ref", "event-channel"])
        assert.match(await host.xs.read(`${fe()}/queue-${q}/${key}`), /^\d+$/, `queue-${q}/${key}`);
    assert.equal(await host.xs.exists(`${fe()}/tx-ring-ref`), false, "no flat keys beside queue-N/");
    assert.equal((await frontList()).queues, 2);
  });

  it("carries the guest's DHCP and UDP flows across the queues to passt and back", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", present)) return;
    await until("a DHCP lease", async () => {
      const ifs = (await host.hv.call(domU, "inet", "ifaces", undefined)) as { addr: string | null }[];
      return ifs[0]?.addr != null;
    });
    // Each udp-rtt binds a socket of its own: eight flows, spread over the two queues by their hash.
    for (let i = 0; i < 8; i++) {
      const us = (await host.hv.call(domU, "inet", "udp-rtt", {
        host: "gateway",
        port: udp.address().port,
        count: 3,
      })) as number[];
      assert.equal(us.filter((x) => Number.isNaN(x)).length, 0, `flow ${i}: a round trip was lost`);
    }
    const perQueue = (await frontList()).txPerQueue;
    assert.equal(perQueue.length, 2);
    assert.ok(
      perQueue.every((n) => n > 0),
      `frames sent per queue: ${perQueue.join(", ")}`,
    );
    const stats = (await host.hv.call(0, "xen_netback", "stats", undefined)) as Record<
      string,
      { txPackets: number; rxPackets: number; disabled: boolean }
    >;
    const s = stats[`backend/vif/${domU}/0`]!;
    assert.equal(s.disabled, false);
    assert.ok(s.txPackets >= 24 && s.rxPackets >= 24, JSON.stringify(s));
  });
});
