/**
 * blkfront's side of a restore, made deterministic: dom0 (blkback) is paused so a write stays in
 * flight on the ring while the guest is saved; the saved domain is destroyed with it unanswered.
 * In the restored domain blkfront ends its old grants, reconnects to the new backend and
 * resubmits the write it kept, which then reaches the disk (Linux's blkif_recover).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { restoreFromFile, saveToFile } from "../../src/host/save-file.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { untilLogged } from "../helpers/until.ts";

describe("blkfront across a save and restore", () => {
  let fx: GuestHost;

  before(async () => {
    fx = await startHost({ guest: { name: "inflight", maxPages: 512 } });
  });
  after(() => fx?.stop());

  it("resubmits a write that was in flight at the save, and it reaches the disk", async () => {
    const { host, domU } = fx;
    const image = await fx.attachDisk(domU, { sectors: 64 });
    const data = new Uint8Array(1024).fill(0xa5);
    host.hv.pause(0);
    const pending = host.hv.call(domU, "xen_blkfront", "write", { vdev: "xvda", sector: 10, data });
    pending.catch(() => {});
    // The request reaches the guest before the suspend request does (its message is first).
    const file = join(fx.dir, "inflight.save");
    await saveToFile(host, domU, file);
    await assert.rejects(pending, /Domain \d+ is gone/);
    host.hv.unpause(0);
    const { domid } = await restoreFromFile(host, file);
    await untilLogged(
      host,
      domid,
      /xen-blkfront: device\/vbd\/51712: resuming: \d+ old page\(s\) freed, 1 request\(s\) to resubmit/,
    );
    await untilLogged(host, domid, "1 resubmitted request(s) completed");
    const disk = readFileSync(image);
    assert.deepEqual(disk.subarray(10 * 512, 12 * 512), Buffer.from(data));
  });
});
