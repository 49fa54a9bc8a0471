/**
 * A hostile netfront in a real guest against the real netback in dom0, next to a good guest whose
 * vif goes to passt: what Linux netback drops gets ERROR responses and the vif carries on (a frame
 * shorter than an Ethernet header, a fragment larger than what remains, a chain of 20 slots, a grant
 * ref not granted to dom0); what Linux netback calls fatal disables that vif and no more of its
 * requests are answered (a slot crossing its page, req_prod a ring ahead, a 22-slot chain, a chain
 * that asks for slots not posted, an extra of a bad type). Through all of it the good guest's network
 * carries on: passt answers its ARP.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VifStats } from "../../src/drivers/net/netback.ts";
import { NETIF_RSP, NETTXF, XEN_NETIF_EXTRA_TYPE } from "../../src/drivers/net/netif.ts";
import type { Host } from "../../src/host/host.ts";
import { attachNic } from "../../src/host/nic.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { hasCommand, requirePeer } from "../helpers/peers.ts";
import { until } from "../helpers/until.ts";
import { arpRequest, isArpReply, txextra, txreq } from "./frames.ts";

const HOSTILE = new URL("./fixtures/hostile-netfront.ts", import.meta.url).href;
const RAW = new URL("./fixtures/raw-eth.ts", import.meta.url).href;
const GOOD_MAC = "00:16:3e:00:00:0a";
const { moreData, extraInfo } = NETTXF;
const { okay, error } = NETIF_RSP;

describe("a hostile netfront next to a good one", () => {
  let fx: GuestHost;
  let host: Host;
  let bad: number;
  let good: number;
  let ref: number;
  const h = (cmd: string, arg: Record<string, unknown>) => host.hv.call(bad, "net_hostile", cmd, arg);
  const stats = async (devid: number): Promise<VifStats> =>
    ((await host.hv.call(0, "xen_netback", "stats", undefined)) as Record<string, VifStats>)[
      `backend/vif/${bad}/${devid}`
    ]!;
  const submit = (dev: number, entries: string[]) => h("submit", { dev, entries });
  const responses = (dev: number, n: number) =>
    h("responses", { dev, n }) as Promise<{ id: number; status: number }[]>;

  async function goodStillWorks(): Promise<void> {
    if (!hasCommand("passt")) return;
    // Asked again every half second, as a stack does: passt drops an ARP request that reaches it
    // in one read with an IPv4 frame before it (docs/net.md).
    let sent = 0;
    await until("passt's ARP reply to the good guest", async () => {
      if (Date.now() - sent > 500) {
        sent = Date.now();
        await host.hv.call(good, "raw_eth", "send", { hex: arpRequest(GOOD_MAC, [198, 51, 100, 9]) });
      }
      return ((await host.hv.call(good, "raw_eth", "recv", undefined)) as { hex: string }[]).some((f) =>
        isArpReply(f.hex),
      );
    });
  }

  before(async () => {
    fx = await startHost({ guest: { name: "good", maxPages: 1024 } });
    ({ host, domU: good } = fx);
    bad = (await host.createDomain({ name: "bad", maxPages: 1024 })).domid;
    await host.hv.insmod(bad, HOSTILE);
    for (let dev = 0; dev < 6; dev++) await attachNic(host, bad, { bridge: "none" }, { loadFrontend: false });
    ref = ((await h("grant", { dev: 0, n: 1 })) as number[])[0]!;
    if (hasCommand("passt")) {
      await attachNic(host, good, { mac: GOOD_MAC });
      await host.hv.insmod(good, RAW);
      await until(
        "the good guest's eth0",
        async () => ((await host.hv.call(good, "raw_eth", "devices", undefined)) as unknown[]).length === 1,
      );
    }
  });
  after(() => fx?.stop());

  it("the good guest reaches passt (when passt is installed)", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", hasCommand("passt"))) return;
    await goodStillWorks();
  });

  it("answers a good frame OKAY, and drops with ERROR what Linux drops; the vif carries on", async () => {
    await submit(0, [txreq(ref, 0, 0, 1, 60)]);
    assert.deepEqual(await responses(0, 1), [{ id: 1, status: okay }]);
    // Shorter than an Ethernet header.
    await submit(0, [txreq(ref, 0, 0, 2, 10)]);
    assert.deepEqual(await responses(0, 1), [{ id: 2, status: error }]);
    // A fragment larger than what remains of the frame (total 100, fragment 200).
    await submit(0, [txreq(ref, 0, moreData, 3, 100), txreq(ref, 0, 0, 4, 200)]);
    assert.deepEqual(await responses(0, 2), [
      { id: 3, status: error },
      { id: 4, status: error },
    ]);
    // 19 slots (the first and 18 fragments) pass; 20 are dropped (XEN_NETBK_LEGACY_SLOTS_MAX).
    const chain = (n: number, id0: number) =>
      Array.from({ length: n }, (_, i) =>
        txreq(ref, 0, i < n - 1 ? moreData : 0, id0 + i, i === 0 ? 60 + (n - 1) * 10 : 10),
      );
    await submit(0, chain(19, 10));
    const ok19 = await responses(0, 19);
    assert.equal(ok19.length, 19);
    assert.ok(ok19.every((r) => r.status === okay));
    await submit(0, chain(20, 40));
    const drop20 = await responses(0, 20);
    assert.equal(drop20.length, 20);
    assert.ok(drop20.every((r) => r.status === error));
    // A grant ref that is not granted to dom0: the copy fails, ERROR.
    await submit(0, [txreq(ref + 100, 0, 0, 70, 60)]);
    assert.deepEqual(await responses(0, 1), [{ id: 70, status: error }]);
    // Still served.
    await submit(0, [txreq(ref, 0, 0, 71, 1514)]);
    assert.deepEqual(await responses(0, 1), [{ id: 71, status: okay }]);
    const s = await stats(0);
    assert.equal(s.disabled, false);
    assert.equal(s.txPackets, 3);
    assert.equal(s.txErrors, 4);
    await goodStillWorks();
  });

  it("serves a frontend's queues (multi-queue-num-queues 2, keys under queue-N/); a fatal error on one disables the vif", async () => {
    const mq = (await host.createDomain({ name: "mq", maxPages: 1024 })).domid;
    await host.hv.insmod(mq, HOSTILE, ["queues=2"]);
    await attachNic(host, mq, { bridge: "none" }, { loadFrontend: false });
    const m = (cmd: string, arg: Record<string, unknown>) => host.hv.call(mq, "net_hostile", cmd, arg);
    const r = ((await m("grant", { n: 1 })) as number[])[0]!;
    for (const queue of [0, 1]) {
      await m("submit", { queue, entries: [txreq(r, 0, 0, 7 + queue, 60)] });
      assert.deepEqual(await m("responses", { queue, n: 1 }), [{ id: 7 + queue, status: okay }]);
    }
    const be = `/local/domain/0/backend/vif/${mq}/0`;
    assert.equal(await host.xs.read(`${be}/multi-queue-max-queues`), "4");
    assert.equal(await host.xs.read(`/local/domain/${mq}/device/vif/0/multi-queue-num-queues`), "2");
    await m("submit", { queue: 1, entries: [txreq(r, 4000, 0, 9, 200)] });
    const st = async () =>
      ((await host.hv.call(0, "xen_netback", "stats", undefined)) as Record<string, VifStats>)[
        `backend/vif/${mq}/0`
      ]!;
    await until("the two-queue vif disabled", async () => (await st()).disabled);
    await m("submit", { queue: 0, entries: [txreq(r, 0, 0, 10, 60)] });
    assert.deepEqual(await m("responses", { queue: 0, n: 0 }), []);
    assert.equal((await st()).txPackets, 2);
    await goodStillWorks();
  });

  it("refuses more queues than it offers, as Linux: the attach fails naming why", async () => {
    const many = (await host.createDomain({ name: "many", maxPages: 1024 })).domid;
    await host.hv.insmod(many, HOSTILE, ["queues=5"]);
    await assert.rejects(attachNic(host, many, { bridge: "none" }, { loadFrontend: false }), {
      message: /netback failed: EINVAL guest requested 5 queues, exceeding the maximum of 4\.$/,
    });
  });

  const fatal: [string, number, (dev: number) => Promise<unknown>][] = [
    ["a slot crossing its page (offset 4000, size 200)", 1, (d) => submit(d, [txreq(ref, 4000, 0, 1, 200)])],
    ["req_prod more than a ring ahead", 2, (d) => h("set-req-prod", { dev: d, value: 1000 })],
    [
      "a chain of 22 slots (fatal_skb_slots 20)",
      3,
      (d) =>
        submit(
          d,
          Array.from({ length: 22 }, (_, i) => txreq(ref, 0, i < 21 ? moreData : 0, i, i === 0 ? 400 : 10)),
        ),
    ],
    ["a chain asking for a slot not posted", 4, (d) => submit(d, [txreq(ref, 0, moreData, 1, 60)])],
    [
      "an extra slot of type 0",
      5,
      (d) => submit(d, [txreq(ref, 0, extraInfo, 1, 60), txextra(XEN_NETIF_EXTRA_TYPE.none, 0)]),
    ],
  ];
  for (const [what, dev, attack] of fatal) {
    it(`disables the vif for ${what}; the others carry on`, async () => {
      await attack(dev);
      await until(`vif ${dev} disabled`, async () => (await stats(dev)).disabled);
      // No more of its requests are answered.
      await submit(dev, [txreq(ref, 0, 0, 99, 60)]);
      assert.deepEqual(await h("responses", { dev, n: 0 }), []);
      // The first vif of the same guest, and the good guest, carry on.
      await submit(0, [txreq(ref, 0, 0, 100 + dev, 60)]);
      assert.deepEqual(await responses(0, 1), [{ id: 100 + dev, status: okay }]);
      await goodStillWorks();
    });
  }
});
