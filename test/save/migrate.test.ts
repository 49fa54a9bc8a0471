/**
 * `xenlab migrate` between two hosts started by the test, over the receiver's control socket,
 * in the middle of disk writes and pings: the guest ends on the receiver with every device
 * Connected, the disk (shared, as Xen's migration assumes) holding every acknowledged write, the
 * pings and writes going on; the sender's copy is gone. Faults: a receiver that dies mid-stream
 * and one that stops answering (scripted fake peers), and one that cannot run the guest after it
 * was cleared (the name is taken there): each time the sender's guest goes on where it was, under
 * its name.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ControlServer } from "../../src/host/control.ts";
import type { Host } from "../../src/host/host.ts";
import { MIGRATE, migrateGuest } from "../../src/host/migrate.ts";
import { type GuestHost, startHost, type TestHost } from "../helpers/host.ts";
import { until, untilLogged } from "../helpers/until.ts";
import { pattern } from "./fixtures/writer.ts";

const FRONT = new URL("../../examples/alice-connected/alice_front.ts", import.meta.url).href;
const BACK = new URL("../../examples/alice-connected/alice_back.ts", import.meta.url).href;
const WRITER = new URL("./fixtures/writer.ts", import.meta.url).href;
const SECTORS = 4096;

type Stats = { sent: number; answered: number };
const pings = (h: Host, d: number) => h.hv.call(d, "alice_front", "stats") as Promise<Stats>;
const writes = (h: Host, d: number) => h.hv.call(d, "writer", "stats") as Promise<{ acked: number }>;
const byName = (h: Host, name: string) => h.hv.list().find((d) => d.name === name);

describe("migrate a guest with a console, a disk and alice_dev between two hosts", () => {
  let a: GuestHost;
  let b: TestHost;
  let ctl: ControlServer;
  let bSocket: string;
  let image: string;
  let fake: Server | null = null;

  before(async () => {
    a = await startHost({ guest: { name: "mover", maxPages: 512 } });
    b = await startHost();
    ctl = new ControlServer(b.host);
    bSocket = join(b.dir, "xenstored.sock");
    await ctl.listen(`${bSocket}.ctl`);
    for (const h of [a.host, b.host]) await h.hv.insmod(0, BACK);
    image = await a.attachDisk(a.domU, { sectors: SECTORS });
    await a.host.hv.insmod(a.domU, FRONT, ["pings=0", "every_ms=2"]);
    await a.host.attachDevice("alice_dev", a.domU);
    await a.host.hv.insmod(a.domU, WRITER, [`sectors=${SECTORS}`]);
    await until("pings and writes", async () => (await pings(a.host, a.domU)).answered > 5);
  });
  after(async () => {
    fake?.close();
    await ctl?.close();
    await b?.stop();
    await a?.stop();
  });

  it("a receiver dying mid-stream leaves the guest running on the sender, devices untouched", async () => {
    // A scripted receiver: the banner, part of the stream, then it dies.
    const path = join(b.dir, "dies.ctl");
    fake = createServer((s) => {
      let got = 0;
      s.once("data", () => s.write(`${JSON.stringify({ msg: MIGRATE.banner })}\n`));
      s.on("data", (d: Buffer) => {
        got += d.length;
        if (got > 4096) s.destroy();
      });
    });
    await new Promise<void>((r) => fake!.listen(path, r));
    const d = a.domU;
    const ring = await a.host.xs.read(`/local/domain/${d}/device/alice_dev/0/ring-ref`);
    await assert.rejects(
      migrateGuest(a.host, d, path),
      /Cannot migrate mover \(\d+\) to .*: .*; mover goes on here/,
    );
    assert.equal(a.host.hv.info(d)?.state, "running");
    assert.equal(a.host.hv.info(d)?.name, "mover");
    assert.equal(await a.host.xs.read(`/local/domain/${d}/device/alice_dev/0/ring-ref`), ring);
    const p0 = (await pings(a.host, d)).answered;
    await until(
      "pings go on after the failed migration",
      async () => (await pings(a.host, d)).answered > p0 + 5,
    );
  });

  it("a receiver that stops answering: after the time-out the guest goes on on the sender", async () => {
    const path = join(b.dir, "hangs.ctl");
    const hang = createServer((s) => {
      s.once("data", () => s.write(`${JSON.stringify({ msg: MIGRATE.banner })}\n`));
      s.on("data", () => {});
    });
    await new Promise<void>((r) => hang.listen(path, r));
    const d = a.domU;
    await assert.rejects(
      migrateGuest(a.host, d, path, { timeoutMs: 500 }),
      /Cannot migrate mover \(\d+\) to .*: no answer in 0\.5 s; mover goes on here$/,
    );
    hang.close();
    assert.equal(a.host.hv.info(d)?.state, "running");
    const p0 = (await pings(a.host, d)).answered;
    await until("pings go on", async () => (await pings(a.host, d)).answered > p0 + 5);
  });

  it("a receiver that cannot run it after it was cleared: the sender takes its copy back", async () => {
    const squatter = await b.host.createDomain({ name: "mover" });
    const d = a.domU;
    await assert.rejects(
      migrateGuest(a.host, d, bSocket),
      /Domain with name "mover" already exists\..*mover goes on here/,
    );
    assert.equal(a.host.hv.info(d)?.name, "mover");
    assert.equal(await a.host.xs.read(`/local/domain/${d}/name`), "mover");
    assert.deepEqual(
      b.host.hv.list().map((x) => x.name),
      ["Domain-0", "mover"],
      "the receiver destroyed its incoming copy",
    );
    await b.host.destroyDomain(squatter.domid);
    const p0 = (await pings(a.host, d)).answered;
    await until("pings go on", async () => (await pings(a.host, d)).answered > p0 + 5);
  });

  it("moves it: Connected on the receiver, pings and writes go on, every acknowledged write on disk", async () => {
    const old = a.domU;
    await until("more writes", async () => (await writes(a.host, old)).acked > 20);
    const r = await migrateGuest(a.host, old, bSocket);
    assert.ok(r.downtimeMs > 0);
    assert.equal(a.host.hv.info(old), undefined, "the sender's copy is gone");
    const moved = byName(b.host, "mover");
    assert.equal(moved?.domid, r.domid);
    const domid = r.domid;
    for (const dev of ["vbd/51712", "alice_dev/0"]) {
      assert.equal(await b.host.xs.read(`/local/domain/${domid}/device/${dev}/state`), "4", dev);
    }
    const p0 = (await pings(b.host, domid)).answered;
    await until("pings go on", async () => (await pings(b.host, domid)).answered > p0 + 10);
    const w0 = (await writes(b.host, domid)).acked;
    await until("writes go on", async () => (await writes(b.host, domid)).acked > w0 + 10);
    await b.host.console.whenConnected(domid);
    await untilLogged(b.host, domid, "writer: restored at");
    const { acked } = (await b.host.hv.call(domid, "writer", "stop")) as { acked: number };
    const disk = readFileSync(image);
    for (let i = 0; i < acked; i++) {
      assert.deepEqual(disk.subarray(i * 512, (i + 1) * 512), Buffer.from(pattern(i)), `sector ${i}`);
    }
  });
});
