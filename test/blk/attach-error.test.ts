/**
 * `xl block-attach` when one end cannot serve the disk: that end's devFatal leaves its errno and
 * reason in its own domain's error/<nodename>/error and goes Closing, attachDisk fails at once
 * with that reason, naming the guest, then removes the device's directories and the error nodes
 * (libxl's path clean-up), as libxl does on a failed attach.
 *
 *   blkback    an image it cannot open: ENOENT, in dom0's error directory.
 *   blkfront   a guest with no page left for the ring: ENOMEM, in the guest's own home.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { attachDisk } from "../../src/host/disk.ts";
import { devicePaths } from "../../src/xenbus/bus-type.ts";
import { diskSpec, type GuestHost, startHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

describe("attachDisk() when an end cannot serve the disk", () => {
  let fx: GuestHost;
  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 1024 } });
  });
  after(() => fx?.stop());

  it("fails with the backend's errno and reason, and leaves no device behind", async () => {
    const missing = join(fx.dir, "no-such.img");
    await assert.rejects(attachDisk(fx.host, fx.domU, diskSpec(missing, "xvdb")), (e: Error) => {
      assert.match(e.message, /^Cannot attach disk xvdb to domain guest \(\d+\): blkback failed: ENOENT /);
      return true;
    });
    const { frontend, backend } = devicePaths("vbd", fx.domU, 51728);
    assert.equal(await fx.host.xs.exists(frontend), false);
    assert.equal(await fx.host.xs.exists(backend), false);
    assert.equal(await fx.host.xs.exists("/local/domain/0/error/backend/vbd"), false);
  });

  it("fails with the guest's ENOMEM and the fix when the guest has no page for the ring", async () => {
    // Two pages: the store page and one more, taken by the console: none left for blkfront.
    const tiny = (await fx.host.createDomain({ name: "tiny", maxPages: 2 })).domid;
    const image = join(fx.dir, "tiny.img");
    writeFileSync(image, new Uint8Array(64 * 512));
    // A time limit far above the test's own: a failure that waited for it would not be this one.
    await assert.rejects(attachDisk(fx.host, tiny, diskSpec(image, "xvda"), 600_000), (e: Error) => {
      assert.equal(e.message.includes("\n"), false);
      assert.match(
        e.message,
        new RegExp(
          `^Cannot attach disk xvda to domain tiny \\(${tiny}\\): the guest's blkfront failed: ENOMEM .*` +
            "the guest has no page left of its 8 KiB .*'xenlab create NAME --memory 1024'",
        ),
      );
      return true;
    });
    const { frontend, backend } = devicePaths("vbd", tiny, 51712);
    assert.equal(await fx.host.xs.exists(frontend), false);
    assert.equal(await fx.host.xs.exists(backend), false);
    assert.equal(await fx.host.xs.exists(`/local/domain/${tiny}/error`), false);
    assert.equal(await fx.host.xs.exists(`/libxl/${tiny}`), false);
    // The guest's printk reaches the host in a message of its own, maybe after the error node.
    await until("the guest's ENOMEM line", () =>
      /xenbus: device\/vbd\/51712: ENOMEM /.test(fx.host.hv.dmesg(tiny).join("\n")),
    );
  });
});
