/**
 * A backend that goes away mid-I/O: `rmmod xen_blkback` with a burst of writes in flight fails
 * the frontend's requests (BlockIOError, never a hang), takes the disk out of the guest's
 * registry and leaves no grant mapped; `insmod` again reconnects the same frontend and the disk
 * works again, with every write that was acknowledged in the image.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { BLKBACK_MODULE } from "../../src/host/disk.ts";
import type { Host } from "../../src/host/host.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

const SECTORS = 8192; // 4 MiB
const CHUNK = 128; // 64 KiB writes

function pattern(i: number): Uint8Array {
  const b = new Uint8Array(CHUNK * 512);
  for (let j = 0; j < b.length; j += 512) b.fill((i * 31 + j / 512) & 0xff, j, j + 512);
  return b;
}

describe("blkback killed mid-I/O, then back", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;
  let image: string;
  const call = (cmd: string, arg?: unknown) => host.hv.call(domU, "xen_blkfront", cmd, arg);
  const fe = () => `/local/domain/${domU}/device/vbd/51712`;

  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 1024 } });
    ({ host, domU } = fx);
    image = await fx.attachDisk(domU, { sectors: SECTORS });
  });
  after(() => fx?.stop());

  const acked = new Map<number, number>(); // sector -> write number

  it("fails the frontend's I/O with errors when blkback is unloaded mid-burst", async () => {
    const n = 600;
    // rmmod as soon as the first write is acknowledged, not at the next look of a poll: the
    // rest of the burst can finish within a poll's 20 ms (it did once in CI).
    let firstAcked = (): void => {};
    const first = new Promise<void>((resolve) => {
      firstAcked = resolve;
    });
    const results = Array.from({ length: n }, (_, i) => {
      const sector = (i * CHUNK) % SECTORS;
      return call("write", { vdev: "xvda", sector, data: pattern(i) }).then(
        () => {
          firstAcked();
          return { i, sector, ok: true as const };
        },
        (e: Error) => ({ i, sector, ok: false as const, e }),
      );
    });
    await first;
    await host.hv.rmmod(0, "xen_blkback");
    const settled = await Promise.all(results);
    const failed = settled.filter((r) => !r.ok);
    assert.ok(failed.length > 0, "some writes were still queued or in flight");
    for (const r of failed) {
      assert.match((r as { e: Error }).e.message, /backend went away|not connected|No disk xvda/);
    }
    // Writes acknowledged are in the image (the last acknowledged write per sector wins: writes
    // to one sector are never in flight together here, as each 64 KiB range repeats every 64).
    for (const r of settled) if (r.ok) acked.set(r.sector, Math.max(acked.get(r.sector) ?? -1, r.i));
    await until(
      "the frontend to go back to Initialising",
      async () => (await host.xs.read(`${fe()}/state`)) === "1",
    );
    assert.deepEqual(await call("list"), []);
    assert.deepEqual(
      host.hv.grants.usesOf(domU).filter((u) => u.ref > 1),
      [],
      "no grant of the guest is still mapped",
    );
    assert.match(host.hv.dmesg(0).join("\n"), /driver unloaded, device left Initialising/);
  });

  it("reconnects when blkback is loaded again, and the disk works", async () => {
    await host.hv.insmod(0, BLKBACK_MODULE);
    await until("the disk to come back", async () => ((await call("list")) as string[]).includes("xvda"));
    // blkfront registers the disk, then writes Connected.
    await until("the frontend to be Connected", async () => (await host.xs.read(`${fe()}/state`)) === "4");
    const file = readFileSync(image);
    for (const [sector, i] of acked) {
      // A later write to the same range may have landed without being acknowledged; an
      // acknowledged write is never lost unless a later one replaced it.
      const got = file.subarray(sector * 512, (sector + CHUNK) * 512);
      const ok = [...Array(600).keys()].some(
        (j) => j >= i && (j * CHUNK) % SECTORS === sector && Buffer.from(pattern(j)).equals(got),
      );
      assert.ok(ok, `sector ${sector}: acknowledged write ${i} lost`);
    }
    const data = pattern(7777);
    await call("write", { vdev: "xvda", sector: 256, data });
    assert.deepEqual(await call("read", { vdev: "xvda", sector: 256, count: CHUNK }), data);
  });
});
