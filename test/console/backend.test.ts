/**
 * The console daemon (src/console/xenconsoled.ts) in a host with two guests, as xenconsoled serves
 * them: libxl's keys, printk into the log file and to an attached client, input to the guest's
 * getty and its answer back, a guest that never reads its input flooded by a client while the
 * other guest's console and XenStore keep answering with the backend's buffers bounded, a client
 * that never drains, and the clean-up when a guest is destroyed.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { LIBXL_XENCONSOLE_LIMIT } from "../../src/console/keys.ts";
import { CONSOLE_INPUT_MAX, type ConsoleClient, type ConsoleSession } from "../../src/console/xenconsoled.ts";
import type { Host } from "../../src/host/host.ts";
import { EVTCHNSTAT } from "../../src/xen/evtchn-abi.ts";
import { formatPerm } from "../../src/xenstore/client.ts";
import { startHost, type TestHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

const PROBE = pathToFileURL(join(import.meta.dirname, "fixtures/con-probe.ts")).href;

/** A client that keeps what it gets as text. */
class Client implements ConsoleClient {
  out = "";
  closed: string | null = null;
  queued = 0;
  write(b: Uint8Array): void {
    this.out += Buffer.from(b).toString("latin1");
  }
  close(reason: string): void {
    this.closed = reason;
  }
}

describe("the console daemon in a host", () => {
  let fx: TestHost;
  let host: Host;
  let logDir: string;
  let g1: number;
  let g2: number;

  before(async () => {
    fx = await startHost((dir) => ({ consoleLogDir: join(dir, "console") }));
    ({ host } = fx);
    logDir = join(fx.dir, "console");
    g1 = (await host.createDomain({ name: "g1" })).domid;
    g2 = (await host.createDomain({ name: "g2" })).domid;
    await host.console.whenConnected(g1);
    await host.console.whenConnected(g2);
    await host.hv.insmod(g1, PROBE);
    await host.hv.insmod(g2, PROBE);
  });
  after(() => fx?.stop());

  it("finds libxl's console keys, with libxl's permissions, and serves every guest but dom0", async () => {
    const fe = `/local/domain/${g1}/console`;
    const info = host.hv.info(g1)!;
    assert.equal(await host.xs.read(`${fe}/ring-ref`), String(info.console.gfn));
    assert.equal(await host.xs.read(`${fe}/port`), String(info.console.port));
    assert.equal(await host.xs.read(`${fe}/type`), "xenconsoled");
    assert.equal(await host.xs.read(`${fe}/limit`), String(LIBXL_XENCONSOLE_LIMIT));
    assert.equal(await host.xs.read(`${fe}/backend`), `/local/domain/0/backend/console/${g1}/0`);
    const perms = async (p: string) => (await host.xs.getPerms(p)).map(formatPerm);
    assert.deepEqual(await perms(fe), ["n0", `r${g1}`]);
    assert.deepEqual(await perms(`${fe}/ring-ref`), ["n0", `r${g1}`]);
    assert.deepEqual(await perms(`${fe}/backend-id`), [`n${g1}`, "r0"]);
    const be = `/local/domain/0/backend/console/${g1}/0`;
    assert.equal(await host.xs.read(`${be}/state`), "1");
    assert.equal(await host.xs.read(`${be}/protocol`), "vt100");
    assert.deepEqual(host.console.attached.sort(), [g1, g2].sort());
  });

  it("puts a guest's printk in guest-<name>.log and gives it to an attached client", async () => {
    const c = new Client();
    const s = host.console.attach(g1, c);
    try {
      await host.hv.call(g1, "con_probe", "printk", "hello from g1");
      await until("the line at the client", () => c.out.includes("hello from g1\r\n"));
      const log = join(logDir, "guest-g1.log");
      await until(
        "the line in the log",
        () => existsSync(log) && readFileSync(log, "latin1").includes("hello from g1\r\n"),
      );
      // From the boot on: the log has what the guest printed before anyone attached.
      assert.match(readFileSync(log, "latin1"), /^\[ *\d+\.\d{6}\] Booting domain \d+ \(g1\)/);
      // The host's log path is still there (xenlab dmesg).
      assert.ok(host.hv.dmesg(g1).some((l) => l.endsWith("hello from g1")));
    } finally {
      s.detach();
    }
  });

  it("gives a new client what was printed while nobody was attached, then the live output", async () => {
    const before = host.console.stats(g2)!.outputBuffered;
    await host.hv.call(g2, "con_probe", "printk", "while nobody watched");
    await until("buffered output", () => host.console.stats(g2)!.outputBuffered > before);
    const c = new Client();
    const s = host.console.attach(g2, c);
    try {
      assert.match(c.out, /^\[ *\d+\.\d{6}\] Booting domain \d+ \(g2\)[\s\S]*while nobody watched\r\n$/);
      assert.equal(host.console.stats(g2)!.outputBuffered, 0);
    } finally {
      s.detach();
    }
  });

  it("takes input to the guest's getty and brings its answer back", async () => {
    const c = new Client();
    const s = host.console.attach(g1, c);
    try {
      s.input(Buffer.from("xenstore-read name\r"));
      await until("the answer", () => c.out.includes("xenstore-read name\r\ng1\r\nroot@g1:~# "));
      s.input(Buffer.from("echo two\n"));
      await until("the second answer", () => c.out.includes("echo two\r\ntwo\r\n"));
    } finally {
      s.detach();
    }
  });

  it("a guest that never reads its input does not hold up the other guest, XenStore, or the backend's memory", async () => {
    await host.hv.call(g2, "con_probe", "deaf", null);
    const deaf = new Client();
    const flooder = host.console.attach(g2, deaf);
    const c = new Client();
    let s: ConsoleSession | null = null;
    try {
      const chunk = Buffer.alloc(4096, "y");
      const total = 256 * chunk.length;
      for (let i = 0; i < 256; i++) flooder.input(chunk);
      const st = host.console.stats(g2)!;
      // The in ring holds 1024 bytes, the backend's queue CONSOLE_INPUT_MAX; the rest is dropped.
      assert.equal(st.inputQueued, CONSOLE_INPUT_MAX);
      assert.equal(st.inputDropped, total - 1024 - CONSOLE_INPUT_MAX);
      // The other guest answers on its console, and XenStore answers too.
      s = host.console.attach(g1, c);
      s.input(Buffer.from("echo still here\r"));
      await until("the other guest's answer", () => c.out.includes("\r\nstill here\r\n"));
      assert.equal(await host.xs.read(`/local/domain/${g2}/name`), "g2");
      // And the deaf guest itself still writes: its printk reaches its console.
      await host.hv.call(g2, "con_probe", "printk", "deaf but not mute");
      await until("the deaf guest's output", () => deaf.out.includes("deaf but not mute"));
      assert.equal(host.console.stats(g2)!.inputQueued, CONSOLE_INPUT_MAX);
    } finally {
      flooder.detach();
      s?.detach();
    }
  });

  it("drops output for a client that does not drain, and keeps logging it", async () => {
    const stuck = new Client();
    stuck.queued = LIBXL_XENCONSOLE_LIMIT + 1;
    const s = host.console.attach(g1, stuck);
    try {
      const before = host.console.stats(g1)!.outputDropped;
      await host.hv.call(g1, "con_probe", "printk", "nobody reads this socket");
      const log = join(logDir, "guest-g1.log");
      await until("the log", () => readFileSync(log, "latin1").includes("nobody reads this socket"));
      assert.ok(host.console.stats(g1)!.outputDropped > before);
      assert.equal(stuck.out, "");
    } finally {
      s.detach();
    }
  });

  it("releases a destroyed guest's console: port closed, page unmapped, clients told", async () => {
    const g3 = (await host.createDomain({ name: "g3" })).domid;
    await host.console.whenConnected(g3);
    const port = host.console.stats(g3)!.port;
    const c = new Client();
    host.console.attach(g3, c);
    assert.ok(host.hv.grants.mappingsBy(0).some((m) => m.granter === g3));
    await host.destroyDomain(g3);
    await until("the release", () => !host.console.attached.includes(g3));
    assert.equal(c.closed, `domain ${g3} is gone`);
    assert.equal(host.console.stats(g3), undefined);
    assert.ok(!host.hv.grants.mappingsBy(0).some((m) => m.granter === g3));
    const st = host.hv.events.status(0, 0, port);
    assert.ok(typeof st === "object" && st.status !== EVTCHNSTAT.interdomain);
    assert.throws(() => host.console.attach(g3, new Client()), /has no console/);
    // The other guests are still served.
    assert.deepEqual(host.console.attached.sort(), [g1, g2].sort());
  });
});
