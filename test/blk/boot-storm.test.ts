/**
 * Guests created at once, as `xenlab bench domains --storm` does: each `xl create` with a disk
 * (createGuest) runs beside the others, and every disk ends Connected. Before, the second of two
 * concurrent first attaches loaded xen_blkback again while the first load ran and failed with
 * "vbd already has a driver"; Host.ensureModule now shares the one load.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createGuest } from "../../src/host/guest.ts";
import type { GuestConfig } from "../../src/host/guest-config.ts";
import { XenbusState } from "../../src/xen/xenbus-abi.ts";
import { diskSpec, startHost, type TestHost } from "../helpers/host.ts";

describe("a boot storm: guests with disks created at once", () => {
  let fx: TestHost;
  before(async () => {
    fx = await startHost({});
  });
  after(() => fx?.stop());

  it("connects every guest's disk, loading xen_blkback into dom0 once", async () => {
    const n = 4;
    const configs = Array.from({ length: n }, (_, i): GuestConfig => {
      const target = join(fx.dir, `g${i}.img`);
      writeFileSync(target, new Uint8Array(64 * 1024));
      return {
        name: `storm${i}`,
        vcpus: 1,
        disks: [diskSpec(target)],
        modules: [],
        onPoweroff: "destroy",
        onReboot: "destroy",
        onCrash: "destroy",
      };
    });
    const infos = await Promise.all(configs.map((c) => createGuest(fx.host, c)));
    for (const { domid } of infos) {
      const state = await fx.host.xs.read(`/local/domain/${domid}/device/vbd/51712/state`);
      assert.equal(Number(state), XenbusState.Connected, `domain ${domid}'s disk`);
    }
    const lsmod = await fx.host.hv.lsmod(0);
    assert.equal(lsmod.filter((m) => m === "xen_blkback").length, 1);
  });
});
