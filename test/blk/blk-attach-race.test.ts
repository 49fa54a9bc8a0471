/**
 * The attach race of issue 5 (about 1 attach in 6 under load failed with "-1 mapping ring-ref"),
 * made deterministic. The frontend's watch on the backend's `state` reads the key when each event
 * is handled, so when blkback wrote InitWait before the frontend's first read, the watch's initial
 * event and the event of that write both read InitWait. blkfront used to take the second one for
 * "a new backend" while it was Initialised: it ended the ring's grant and closed its port, and the
 * backend, already reading `ring-ref`, mapped a dead grant. Here the backend is played by the test
 * (dom0's own XenStore writes, no blkback): InitWait is written twice, then Connected; the frontend
 * must go Initialised once and keep the ring-ref (which the backend has mapped) and the port.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BLKFRONT_MODULE } from "../../src/host/disk.ts";
import type { Host } from "../../src/host/host.ts";
import { GNTMAP, GNTST } from "../../src/xen/grant-table-abi.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";

describe("blkfront: a repeated InitWait is no new backend", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;

  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 1024 } });
    ({ host, domU } = fx);
    await host.hv.insmod(domU, BLKFRONT_MODULE);
  });
  after(() => fx?.stop());

  it("keeps its ring-ref and port, and connects on the backend's Connected", async () => {
    const fe = `/local/domain/${domU}/device/vbd/51712`;
    const be = `/local/domain/0/backend/vbd/${domU}/51712`;
    await host.attachDevice("vbd", domU, 51712);
    await host.xs.write(`${fe}/virtual-device`, "51712");
    const state = (path: string, want: string) =>
      host.xs.wait(`${path}/state`, async (xs) => (await xs.tryRead(`${path}/state`)) === want, {
        signal: AbortSignal.timeout(15_000),
      });
    // blkback's probe: InitWait. The frontend answers with its ring and → Initialised.
    await host.xs.write(`${be}/state`, "2");
    await state(fe, "3");
    const ref = await host.xs.read(`${fe}/ring-ref`);
    const port = await host.xs.read(`${fe}/event-channel`);
    // The backend maps the ring, as blkback does on seeing Initialised.
    const m = host.hv.grants.mapGrantRef(0, { flags: GNTMAP.host_map, ref: Number(ref), dom: domU });
    assert.equal(m.status, GNTST.okay);
    // The same state again (what the frontend's second watch event reads in the race).
    await host.xs.write(`${be}/state`, "2");
    await host.xs.write(`${be}/state`, "2");
    // The backend connects: its keys, then Connected. The frontend's events are handled in order,
    // so once it is Connected it has handled both InitWaits.
    await host.xs.transaction(async (t) => {
      await t.write(`${be}/sectors`, "2048");
      await t.write(`${be}/info`, "0");
      await t.write(`${be}/sector-size`, "512");
      await t.write(`${be}/state`, "4");
    });
    await state(fe, "4");
    assert.equal(await host.xs.read(`${fe}/ring-ref`), ref);
    assert.equal(await host.xs.read(`${fe}/event-channel`), port);
    assert.ok(
      !host.hv.dmesg(domU).some((l) => /backend went away/.test(l)),
      `the frontend started over:\n${host.hv.dmesg(domU).join("\n")}`,
    );
    assert.equal(host.hv.grants.unmapGrantRef(0, m.handle!), GNTST.okay);
  });
});
