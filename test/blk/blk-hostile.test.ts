/**
 * A hostile frontend in a real guest against the real blkback in dom0, next to a well-behaved
 * guest using the same backend: requests naming grant refs the hostile guest does not own (among
 * them the refs of the other guest's own blkfront pool) are refused by the hypervisor and answered
 * BLKIF_RSP_ERROR; bad segments and sectors past the end likewise; a ring overflow makes the
 * backend stop serving that ring. Through all of it dom0 keeps running and the other guest's
 * disk keeps reading and writing its own data.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { BLKIF_ENTRY_SIZE, type BlkifRequest, encodeRequest } from "../../src/drivers/blk/blkif.ts";
import { BLKBACK_MODULE } from "../../src/host/disk.ts";
import type { Host } from "../../src/host/host.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { untilLogged } from "../helpers/until.ts";

const HOSTILE = new URL("./fixtures/hostile-front.ts", import.meta.url).href;
const hexOf = (r: BlkifRequest) =>
  Buffer.from(encodeRequest(new Uint8Array(BLKIF_ENTRY_SIZE), r)).toString("hex");
const rd = (
  id: number,
  sector: number,
  segs: { gref: number; firstSect: number; lastSect: number }[],
  nr = segs.length,
) =>
  hexOf({ operation: 0, nrSegments: nr, handle: 0, id: BigInt(id), sectorNumber: BigInt(sector), seg: segs });
const seg = (gref: number, firstSect = 0, lastSect = 7) => ({ gref, firstSect, lastSect });

describe("a hostile frontend next to a good one", () => {
  let fx: GuestHost;
  let host: Host;
  let dir: string;
  let bad: number;
  let good: number;
  let goodData: Buffer;
  const h = (cmd: string, arg?: unknown) => host.hv.call(bad, "blk_hostile", cmd, arg);
  const g = (cmd: string, arg?: unknown) => host.hv.call(good, "xen_blkfront", cmd, arg);

  async function goodStillWorks(): Promise<void> {
    const got = (await g("read", { vdev: "xvda", sector: 0, count: 64 })) as Uint8Array;
    assert.ok(Buffer.from(got).equals(goodData.subarray(0, 64 * 512)), "the good guest reads its data");
    const data = randomBytes(4096);
    await g("write", { vdev: "xvda", sector: 8, data: new Uint8Array(data) });
    data.copy(goodData, 8 * 512);
    assert.ok(
      Buffer.from((await g("read", { vdev: "xvda", sector: 8, count: 8 })) as Uint8Array).equals(data),
    );
  }

  before(async () => {
    fx = await startHost({ guest: { name: "good", maxPages: 1024 } });
    ({ host, dir, domU: good } = fx);
    bad = (await host.createDomain({ name: "bad", maxPages: 1024 })).domid;
    goodData = randomBytes(1 << 20);
    writeFileSync(join(dir, "bad.img"), new Uint8Array(1 << 20).fill(0x11));
    await fx.attachDisk(good, { content: goodData, file: "good.img" });
    await goodStillWorks();
    // A 1 MiB read grows the good guest's pool (and its persistent grants) to ~260 pages.
    await g("read", { vdev: "xvda", sector: 0, count: 2048 });
    // The hostile guest's driver instead of blkfront, then the disk as libxl attaches it.
    await host.hv.insmod(bad, HOSTILE);
    await host.hv.insmod(0, BLKBACK_MODULE).catch(() => {});
    const fe = `/local/domain/${bad}/device/vbd/51712`;
    const be = `/local/domain/0/backend/vbd/${bad}/51712`;
    await host.xs.transaction(async (t) => {
      await t.write(fe, "");
      await t.setPerms(fe, [`n${bad}`, "r0"]);
      await t.write(be, "");
      await t.setPerms(be, ["n0", `r${bad}`]);
      for (const [k, v] of [
        ["frontend", fe],
        ["frontend-id", String(bad)],
        ["params", join(dir, "bad.img")],
        ["mode", "w"],
        ["online", "1"],
        ["state", "1"],
      ]) {
        await t.write(`${be}/${k}`, v!);
      }
      for (const [k, v] of [
        ["backend", be],
        ["backend-id", "0"],
        ["virtual-device", "51712"],
        ["state", "1"],
      ]) {
        await t.write(`${fe}/${k}`, v!);
      }
    });
    await host.xs.wait(`${be}/state`, async (xs) => (await xs.tryRead(`${be}/state`)) === "4", {
      signal: AbortSignal.timeout(10_000),
    });
  });
  after(() => fx?.stop());

  it("serves its sane requests", async () => {
    const [ref] = (await h("grant", { n: 1 })) as number[];
    await h("submit", { entries: [rd(1, 0, [seg(ref!)])] });
    assert.deepEqual(await h("responses", { n: 1 }), [{ id: "1", operation: 0, status: 0 }]);
    assert.deepEqual(await h("page", { ref }), new Uint8Array(4096).fill(0x11));
  });

  it("gets BLKIF_RSP_ERROR for refs it does not own, even the good guest's pool refs", async () => {
    // Refs are per granter: the hostile guest's own low refs (its ring, its pages) are its to
    // use, so take the good guest's refs above any the hostile guest has granted.
    const goodRefs = host.hv.grants
      .usesOf(good)
      .map((u) => u.ref)
      .filter((r) => r > 64);
    assert.ok(goodRefs.length >= 8, "the good guest has many grants mapped by dom0");
    const entries = [...goodRefs.slice(0, 8), 999, 2047, 4000].map((ref, i) => rd(100 + i, 0, [seg(ref)]));
    await h("submit", { entries });
    const rsps = (await h("responses", { n: entries.length })) as { status: number }[];
    assert.deepEqual(
      rsps.map((r) => r.status),
      entries.map(() => -1),
    );
    assert.match(host.hv.dmesg(0).join("\n"), /could not map grant/);
    await goodStillWorks();
  });

  it("gets BLKIF_RSP_ERROR for bad segment counts and offsets and sectors past the end", async () => {
    const [ref] = (await h("grant", { n: 1 })) as number[];
    const entries = [
      rd(1, 0, [], 0),
      rd(2, 0, [seg(ref!)], 12),
      rd(3, 0, [seg(ref!, 3, 2)]),
      rd(4, 0, [seg(ref!, 0, 8)]),
      rd(5, 2045, [seg(ref!)]),
      hexOf({ operation: 4, id: 6n }),
    ];
    await h("submit", { entries });
    const rsps = (await h("responses", { n: entries.length })) as { id: string; status: number }[];
    assert.deepEqual(
      rsps.map((r) => [r.id, r.status]),
      [
        ["1", -1],
        ["2", -1],
        ["3", -1],
        ["4", -1],
        ["5", -1],
        ["6", -2],
      ],
    );
    await goodStillWorks();
  });

  it("is cut off after a ring overflow; the backend and the good guest carry on", async () => {
    await h("set-req-prod", { value: 0x7fff });
    await untilLogged(host, 0, /Halting ring processing/);
    const [ref] = (await h("grant", { n: 1 })) as number[];
    await h("submit", { entries: [rd(77, 0, [seg(ref!)])] });
    assert.deepEqual(await h("responses", { n: 0 }), []);
    await goodStillWorks();
    assert.equal(host.hv.info(0)?.state, "running");
  });
});
