/**
 * `xl block-detach -f` (detachDisk with force): the toolstack removes the frontend, backend and
 * libxl directories at once, without waiting for either end. blkback disconnects (its I/O ends,
 * every grant of the guest unmapped), blkfront takes the disk away and fails I/O, and the guest's
 * grants all end, the ones the backend still mapped at the frontend's removal a little later
 * (deferred, as Linux's gnttab_end_foreign_access). A disk attached again afterwards works.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { attachDisk, detachDisk } from "../../src/host/disk.ts";
import type { Host } from "../../src/host/host.ts";
import { diskSpec, type GuestHost, startHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

describe("block-detach -f", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;
  let image: string;
  const content = randomBytes(1 << 20);
  const call = (cmd: string, arg?: unknown) => host.hv.call(domU, "xen_blkfront", cmd, arg);
  const spec = () => diskSpec(image);

  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 2048 } });
    ({ host, domU } = fx);
    image = await fx.attachDisk(domU, { content });
  });
  after(() => fx?.stop());

  it("removes both ends at once; dom0 unmaps everything and the guest ends every grant", async () => {
    const fe = `/local/domain/${domU}/device/vbd/51712`;
    const be = `/local/domain/0/backend/vbd/${domU}/51712`;
    assert.deepEqual(
      Buffer.from((await call("read", { vdev: "xvda", sector: 0, count: 8 })) as Uint8Array),
      content.subarray(0, 4096),
    );
    // Reads in flight while the directories go: each one answers or fails, none hangs.
    const reads = Array.from({ length: 16 }, (_, i) =>
      call("read", { vdev: "xvda", sector: i * 128, count: 128 }).then(
        () => "ok",
        () => "failed",
      ),
    );
    await detachDisk(host, domU, "xvda", 10_000, true);
    assert.equal(await host.xs.exists(fe), false);
    assert.equal(await host.xs.exists(be), false);
    assert.equal(await host.xs.exists(`/libxl/${domU}/device/vbd/51712`), false);
    for (const r of await Promise.all(reads)) assert.ok(r === "ok" || r === "failed");
    await until("the guest to drop the disk", async () => ((await call("list")) as string[]).length === 0);
    await until(
      "blkback to disconnect",
      async () => Object.keys((await host.hv.call(0, "xen_blkback", "stats")) as object).length === 0,
    );
    // Only the boot grants (0 console, 1 XenStore) are left: ring and pool ended, deferred or not.
    await until("every grant of the disk to end", () => host.hv.grants.usesOf(domU).every((u) => u.ref <= 1));
  });

  it("attaches again afterwards, and the disk works", async () => {
    await attachDisk(host, domU, spec());
    const got = (await call("read", { vdev: "xvda", sector: 8, count: 8 })) as Uint8Array;
    assert.deepEqual(Buffer.from(got), content.subarray(4096, 8192));
  });
});
