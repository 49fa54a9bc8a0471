/**
 * blkfront ↔ blkback end to end: attachDisk writes libxl's keys, both ends negotiate to
 * Connected, the guest reads and writes the raw image through the ring (checked against the file
 * itself), flush and discard, the negotiated keys are Linux's, and detachDisk closes both ends and
 * gives back every grant.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { attachDisk, detachDisk } from "../../src/host/disk.ts";
import type { Host } from "../../src/host/host.ts";
import { RINGS_ATTRIBUTE, type RingIndexes } from "../../src/xenbus/xenbus.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";

const MiB = 1 << 20;

describe("blkfront ↔ blkback: attach, I/O, detach", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;
  let image: string;
  let content: Buffer;
  const call = (cmd: string, arg?: unknown) => host.hv.call(domU, "xen_blkfront", cmd, arg);
  const fe = () => `/local/domain/${domU}/device/vbd/51712`;
  const be = () => `/local/domain/0/backend/vbd/${domU}/51712`;

  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 2048 } });
    ({ host, domU } = fx);
    // The tests attach it themselves.
    image = join(fx.dir, "disk.img");
    content = randomBytes(4 * MiB);
    writeFileSync(image, content);
  });
  after(() => fx?.stop());

  it("attaches: both ends Connected, with Linux's keys", async () => {
    await attachDisk(host, domU, {
      target: image,
      vdev: "xvda",
      access: "rw",
      format: "raw",
      devtype: "disk",
    });
    assert.equal(await host.xs.read(`${fe()}/state`), "4");
    assert.equal(await host.xs.read(`${be()}/state`), "4");
    assert.equal(await host.xs.read(`${be()}/sectors`), String((4 * MiB) / 512));
    assert.equal(await host.xs.read(`${be()}/sector-size`), "512");
    assert.equal(await host.xs.read(`${be()}/info`), "0");
    assert.equal(await host.xs.read(`${be()}/feature-persistent`), "1");
    assert.equal(await host.xs.read(`${be()}/feature-max-indirect-segments`), "256");
    assert.equal(await host.xs.read(`${be()}/max-ring-page-order`), "4");
    assert.equal(await host.xs.read(`${fe()}/protocol`), "x86_64-abi");
    assert.match(await host.xs.read(`${fe()}/ring-ref`), /^\d+$/);
    assert.equal(await host.xs.exists(`${fe()}/ring-page-order`), false);
    assert.deepEqual(await call("list"), ["xvda"]);
    const info = (await call("info", { vdev: "xvda" })) as Record<string, unknown>;
    assert.deepEqual(info, {
      vdev: "xvda",
      devid: 51712,
      sectors: 8192,
      sectorSize: 512,
      physicalSectorSize: 512,
      readonly: false,
      features: { flush: true, discard: true, persistent: true, maxIndirectSegments: 32, ringPages: 1 },
    });
  });

  it("reads what the image holds: one sector, a page, 1 MiB (indirect), unaligned", async () => {
    for (const [sector, count] of [
      [0, 1],
      [8, 8],
      [3, 5],
      [100, 2048],
      [8191, 1],
      [17, 300],
    ] as const) {
      const got = (await call("read", { vdev: "xvda", sector, count })) as Uint8Array;
      assert.equal(got.length, count * 512);
      assert.ok(
        Buffer.from(got).equals(content.subarray(sector * 512, (sector + count) * 512)),
        `${sector}+${count}`,
      );
    }
  });

  it("writes land in the image file, byte for byte", async () => {
    const data = randomBytes(300 * 512);
    await call("write", { vdev: "xvda", sector: 1001, data: new Uint8Array(data) });
    await call("flush", { vdev: "xvda" });
    data.copy(content, 1001 * 512);
    assert.ok(readFileSync(image).equals(content));
    const back = (await call("read", { vdev: "xvda", sector: 1001, count: 300 })) as Uint8Array;
    assert.ok(Buffer.from(back).equals(data));
  });

  it("discard makes the range read as zeros", async () => {
    await call("discard", { vdev: "xvda", sector: 64, count: 16 });
    content.fill(0, 64 * 512, 80 * 512);
    assert.ok(readFileSync(image).equals(content));
  });

  it("refuses I/O past the end of the disk", async () => {
    await assert.rejects(call("read", { vdev: "xvda", sector: 8190, count: 4 }), /the disk has 8192/);
  });

  it("shows both ends' private ring indexes (xenbus/rings) after I/O: all consumed", async () => {
    const shown = async (domid: number) =>
      ((await host.hv.attribute(domid, RINGS_ATTRIBUTE)) as RingIndexes[]).filter(
        (r) => r.nodename.includes("vbd/") && r.nodename.endsWith("51712"),
      );
    const [front] = await shown(domU);
    const [back] = await shown(0);
    assert.equal(front?.nodename, "device/vbd/51712");
    assert.equal(back?.nodename, `backend/vbd/${domU}/51712`);
    const f = front!.indexes;
    const b = back!.indexes;
    assert.ok(f.req_prod_pvt! > 0, "the reads and writes above went through the ring");
    assert.deepEqual(
      [f.rsp_cons, b.req_cons, b.rsp_prod_pvt],
      [f.req_prod_pvt, f.req_prod_pvt, f.req_prod_pvt],
    );
  });

  it("a read-only disk and a cdrom: info bits, no flush or discard, writes refused", async () => {
    await attachDisk(host, domU, {
      target: image,
      vdev: "xvdb",
      access: "ro",
      format: "raw",
      devtype: "disk",
    });
    await attachDisk(host, domU, {
      target: image,
      vdev: "xvdc",
      access: "rw",
      format: "raw",
      devtype: "cdrom",
    });
    assert.equal(await host.xs.read(`/local/domain/0/backend/vbd/${domU}/51728/info`), "4");
    assert.equal(await host.xs.read(`/local/domain/0/backend/vbd/${domU}/51744/info`), "5");
    const info = (await call("info", { vdev: "xvdb" })) as {
      readonly: boolean;
      features: Record<string, unknown>;
    };
    assert.equal(info.readonly, true);
    assert.equal(info.features.flush, false);
    assert.equal(info.features.discard, false);
    await assert.rejects(call("write", { vdev: "xvdb", sector: 0, data: new Uint8Array(512) }), /read-only/);
    const got = (await call("read", { vdev: "xvdc", sector: 0, count: 8 })) as Uint8Array;
    assert.ok(Buffer.from(got).equals(content.subarray(0, 4096)));
    await detachDisk(host, domU, "xvdb");
    await detachDisk(host, domU, "xvdc");
  });

  it("detaches: Closed, directories removed, no grant of the guest left mapped", async () => {
    await detachDisk(host, domU, "xvda");
    assert.equal(await host.xs.exists(fe()), false);
    assert.equal(await host.xs.exists(be()), false);
    assert.deepEqual(await call("list"), []);
    // Only the boot grants (0 console, 1 XenStore) are still in use: ring and pool are ended.
    assert.deepEqual(
      host.hv.grants.usesOf(domU).filter((u) => u.ref > 1),
      [],
    );
  });
});
