/**
 * `xl block-attach` when the backend cannot serve the disk: blkback's devFatal leaves its errno and
 * reason in dom0's error/<nodename>/error, both ends go Closing, and attachDisk fails at once with
 * that reason, then removes the device's directories, as libxl does on a failed attach.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { attachDisk } from "../../src/host/disk.ts";
import { devicePaths } from "../../src/xenbus/bus-type.ts";
import { diskSpec, type GuestHost, startHost } from "../helpers/host.ts";

describe("attachDisk() with an image blkback cannot open", () => {
  let fx: GuestHost;
  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 1024 } });
  });
  after(() => fx?.stop());

  it("fails with the backend's errno and reason, and leaves no device behind", async () => {
    const missing = join(fx.dir, "no-such.img");
    await assert.rejects(attachDisk(fx.host, fx.domU, diskSpec(missing, "xvdb")), (e: Error) => {
      assert.match(e.message, /^Cannot attach disk xvdb: the device closed \(ENOENT /);
      return true;
    });
    const { frontend, backend } = devicePaths("vbd", fx.domU, 51728);
    assert.equal(await fx.host.xs.exists(frontend), false);
    assert.equal(await fx.host.xs.exists(backend), false);
  });
});
