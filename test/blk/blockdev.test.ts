/**
 * Disk names as libxl numbers them (libxl__device_disk_dev_number and libxl__devid_to_vdev in
 * Xen 4.17's tools/libs/light/libxl_device.c).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { devidToVdev, vdevToDevid } from "../../src/drivers/blk/blockdev.ts";

describe("vdev names", () => {
  it("number disks as libxl does", () => {
    assert.equal(vdevToDevid("xvda"), 51712);
    assert.equal(vdevToDevid("xvdb"), 51728);
    assert.equal(vdevToDevid("xvda1"), 51713);
    assert.equal(vdevToDevid("xvdp15"), (202 << 8) | (15 << 4) | 15);
    assert.equal(vdevToDevid("xvdq"), (1 << 28) | (16 << 8));
    assert.equal(vdevToDevid("xvdaa"), (1 << 28) | (26 << 8));
    assert.equal(vdevToDevid("xvda16"), (1 << 28) | 16);
    assert.equal(vdevToDevid("d0p0"), 51712);
    assert.equal(vdevToDevid("d300p2"), (1 << 28) | (300 << 8) | 2);
    assert.equal(vdevToDevid("hda"), 3 << 8);
    assert.equal(vdevToDevid("hdb"), (3 << 8) | 64);
    assert.equal(vdevToDevid("hdc1"), (22 << 8) | 1);
    assert.equal(vdevToDevid("sdb2"), (8 << 8) | 16 | 2);
    assert.equal(vdevToDevid("51712"), 51712);
    assert.equal(vdevToDevid("0xca00"), 51712);
  });

  it("refuse what xl refuses", () => {
    for (const bad of [
      "",
      "xvd",
      "xvda0",
      "xvda01",
      "xvda256",
      "hde",
      "hda64",
      "sdq",
      "sda16",
      "vda",
      "xvdA",
    ])
      assert.equal(vdevToDevid(bad), -1, bad);
  });

  it("name devids back", () => {
    for (const v of ["xvda", "xvdb", "xvda1", "xvdp15", "xvdq", "xvdaa", "xvda16", "xvdzz3"])
      assert.equal(devidToVdev(vdevToDevid(v)), v);
  });
});
