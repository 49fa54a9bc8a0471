/**
 * `xenlab save` and `xenlab restore` on one host, in the middle of disk writes and pings: the
 * guest acknowledges the suspend, its drivers suspend and save, the file is written and the
 * domain goes; restored under a new domid, its devices reconnect through their resume
 * callbacks (every one Connected), the disk holds every acknowledged write, and the pings and
 * writes go on. A checkpoint (-c) keeps the guest running, its devices untouched.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { restoreFromFile, saveToFile } from "../../src/host/save-file.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { until, untilLogged } from "../helpers/until.ts";
import { pattern } from "./fixtures/writer.ts";

const FRONT = new URL("../../examples/alice-connected/alice_front.ts", import.meta.url).href;
const BACK = new URL("../../examples/alice-connected/alice_back.ts", import.meta.url).href;
const WRITER = new URL("./fixtures/writer.ts", import.meta.url).href;
const SECTORS = 4096;

type Stats = { sent: number; answered: number };
const pings = (h: Host, d: number) => h.hv.call(d, "alice_front", "stats") as Promise<Stats>;
const writes = (h: Host, d: number) => h.hv.call(d, "writer", "stats") as Promise<{ acked: number }>;

describe("save and restore a guest with a console, a disk and alice_dev", () => {
  let fx: GuestHost;
  let host: Host;
  let image: string;

  before(async () => {
    fx = await startHost({ guest: { name: "busy", maxPages: 512 } });
    host = fx.host;
    await host.hv.insmod(0, BACK);
    image = await fx.attachDisk(fx.domU, { sectors: SECTORS });
    await host.hv.insmod(fx.domU, FRONT, ["pings=0", "every_ms=2"]);
    await host.attachDevice("alice_dev", fx.domU);
    await host.hv.insmod(fx.domU, WRITER, [`sectors=${SECTORS}`]);
  });
  after(() => fx?.stop());

  it("checkpoints (-c): the guest goes on where it was, devices untouched", async () => {
    const d = fx.domU;
    await until(
      "pings and writes",
      async () => (await pings(host, d)).answered > 5 && (await writes(host, d)).acked > 5,
    );
    const ring = await host.xs.read(`/local/domain/${d}/device/alice_dev/0/ring-ref`);
    const r = await saveToFile(host, d, join(fx.dir, "ckpt.save"), { checkpoint: true });
    assert.equal(r.domid, d);
    assert.equal(host.hv.info(d)?.state, "running");
    await untilLogged(host, d, "xen:manage: suspend cancelled (checkpoint)");
    assert.equal(await host.xs.read(`/local/domain/${d}/device/alice_dev/0/ring-ref`), ring);
    const before = (await pings(host, d)).answered;
    await until("pings after the checkpoint", async () => (await pings(host, d)).answered > before + 5);
  });

  it("saves mid-I/O, restores under a new domid, every device Connected, nothing acknowledged lost", async () => {
    const old = fx.domU;
    await until("more writes", async () => (await writes(host, old)).acked > 20);
    const file = join(fx.dir, "busy.save");
    const r = await saveToFile(host, old, file);
    assert.equal(host.hv.info(old), undefined, "the saved domain is gone");
    const log = host.hv.list().length;
    assert.equal(log, 1);
    const { domid } = await restoreFromFile(host, file);
    assert.notEqual(domid, old);
    assert.equal(host.hv.info(domid)?.name, "busy");
    assert.ok(r.bytes > 0);
    for (const dev of ["vbd/51712", "alice_dev/0"]) {
      assert.equal(await host.xs.read(`/local/domain/${domid}/device/${dev}/state`), "4", dev);
      const be = await host.xs.read(`/local/domain/${domid}/device/${dev}/backend`);
      assert.equal(await host.xs.read(`${be}/state`), "4", `${dev} backend`);
    }
    const p0 = (await pings(host, domid)).answered;
    await until("pings go on", async () => (await pings(host, domid)).answered > p0 + 10);
    const w0 = (await writes(host, domid)).acked;
    await until("writes go on", async () => (await writes(host, domid)).acked > w0 + 10);
    // Each frontend went through its resume callback, blkfront with the writes it kept.
    await untilLogged(host, domid, /xen-blkfront: device\/vbd\/51712: resuming: \d+ old page\(s\) freed/);
    await untilLogged(host, domid, /DomU: resume: \d+ pings answered before the save\./);
    // The console: xenconsoled attached the new domain's, and its kernel's lines come through.
    await host.console.whenConnected(domid);
    let out = "";
    const session = host.console.attach(domid, {
      write: (b: Uint8Array) => {
        out += Buffer.from(b).toString();
      },
      queued: 0,
      close: () => {},
    });
    await until("the restored guest's console", () => out.includes("writer: restored at"));
    session.detach();
    const { acked } = (await host.hv.call(domid, "writer", "stop")) as { acked: number };
    const disk = readFileSync(image);
    for (let i = 0; i < acked; i++) {
      assert.deepEqual(disk.subarray(i * 512, (i + 1) * 512), Buffer.from(pattern(i)), `sector ${i}`);
    }
    fx = { ...fx, domU: domid };
  });

  it("refuses a truncated or corrupted file, or a taken name, and builds nothing", async () => {
    const file = join(fx.dir, "busy.save");
    const bytes = readFileSync(file);
    const names = () => host.hv.list().map((d) => `${d.domid}:${d.name}`);
    const was = names();
    // The saved guest was restored and still runs: xl's answer, and how to get past it.
    await assert.rejects(
      restoreFromFile(host, file),
      /^RangeError: Cannot restore busy: Domain with name "busy" already exists\. \(xenlab destroy it first\)$/,
    );
    const cut = join(fx.dir, "cut.save");
    writeFileSync(cut, bytes.subarray(0, bytes.length - 5000));
    await assert.rejects(
      restoreFromFile(host, cut),
      /the save file is truncated \(\d+ bytes, its header says \d+\)/,
    );
    const bad = Buffer.from(bytes);
    bad[bad.length >> 1] = (bad[bad.length >> 1] ?? 0) ^ 0x40;
    const corrupt = join(fx.dir, "corrupt.save");
    writeFileSync(corrupt, bad);
    await assert.rejects(
      restoreFromFile(host, corrupt),
      /the save file is corrupted \(its SHA-256 does not match\)/,
    );
    writeFileSync(corrupt, "not a save file at all\n");
    await assert.rejects(restoreFromFile(host, corrupt), /not a xenlab save file/);
    assert.deepEqual(names(), was, "nothing was created");
  });
});
