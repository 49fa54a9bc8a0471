/**
 * The connected alice_dev pair: the full XenBus handshake to Connected with a granted ring and an
 * event channel, pings over the ring, a clean detach (backend Closing, frontend Closed, backend
 * Closed, directories removed, grant ended) and a second attach that connects again.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { untilLogged } from "../helpers/until.ts";

const FRONT = new URL("../../examples/alice-connected/alice_front.ts", import.meta.url).href;
const BACK = new URL("../../examples/alice-connected/alice_back.ts", import.meta.url).href;

describe("alice_dev connected: handshake, ring, detach, re-attach", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;
  const fe = () => `/local/domain/${domU}/device/alice_dev/0`;
  const be = () => `/local/domain/0/backend/alice_dev/${domU}/0`;

  before(async () => {
    fx = await startHost({ guest: { name: "alice" } });
    ({ host, domU } = fx);
    await host.hv.insmod(domU, FRONT, ["pings=100"]);
    await host.hv.insmod(0, BACK);
  });
  after(() => fx?.stop());

  it("connects both ends and answers 100 pings over the ring", async () => {
    const states: string[] = [];
    const w = host.xs.watch(`${fe()}/state`);
    await w.add(`${be()}/state`);
    const record = (async () => {
      for await (const ev of w) {
        const v = await host.xs.tryRead(ev.path);
        if (v !== undefined) states.push(`${ev.path.includes("backend") ? "be" : "fe"}=${v}`);
      }
    })();
    await host.attachDevice("alice_dev", domU);
    await untilLogged(host, domU, /DomU: 100 pings answered\.$/);
    assert.equal(await host.xs.read(`${fe()}/state`), "4");
    assert.equal(await host.xs.read(`${be()}/state`), "4");
    assert.match(await host.xs.read(`${fe()}/ring-ref`), /^\d+$/);
    assert.match(await host.xs.read(`${fe()}/event-channel`), /^\d+$/);
    await w.close();
    await record;
    // Each side moves forward only, as the protocol says: be 1→2→4, fe 1→3→4.
    const seq = (side: string) => states.filter((s) => s.startsWith(side)).map((s) => s.slice(3));
    const dedup = (a: string[]) => a.filter((v, i) => i === 0 || a[i - 1] !== v);
    assert.deepEqual(
      dedup(seq("be")).filter((v) => v !== "1"),
      ["2", "4"],
    );
    assert.deepEqual(
      dedup(seq("fe")).filter((v) => v !== "1"),
      ["3", "4"],
    );
  });

  it("detaches cleanly: Closing, Closed, ring unmapped and grant ended", async () => {
    await host.detachDevice("alice_dev", domU);
    await untilLogged(host, 0, /Dom0: Disconnected from domain \d+ after 100 requests\.$/);
    await untilLogged(host, domU, /DomU: ring released\.$/);
    assert.equal(await host.xs.exists(fe()), false);
    assert.equal(await host.xs.exists(be()), false);
    // Only the console daemon's map of the console page (grant ref 0) and xenstored's of the
    // XenStore page (grant ref 1) are left.
    assert.deepEqual(
      host.hv.grants
        .usesOf(domU)
        .map((u) => u.ref)
        .sort(),
      [0, 1],
    );
  });

  it("a new attach connects again", async () => {
    await host.attachDevice("alice_dev", domU);
    await untilLogged(host, domU, /DomU: 100 pings answered\.$/, { count: 2 });
    await untilLogged(host, 0, /Dom0: Connected to domain/, { count: 2 });
    assert.equal(await host.xs.read(`${be()}/state`), "4");
  });

  it("destroying the guest makes the backend let go of its ring", async () => {
    await host.destroyDomain(domU);
    await untilLogged(host, 0, /Dom0: Disconnected from domain \d+ after 100 requests\.$/, { count: 2 });
    assert.deepEqual(
      host.hv.grants.mappingsBy(0).filter((m) => m.granter === domU),
      [],
    );
    assert.equal(await host.xs.exists(be()), false);
  });
});
