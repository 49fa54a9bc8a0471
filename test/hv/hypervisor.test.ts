/**
 * The hypervisor and the host, end to end with real workers: domains boot paused and run on
 * unpause, talk to xenstored through their own ring with their own identity, touch only their
 * own pages and pages granted to them, and leave nothing behind when destroyed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import type { Host } from "../../src/host/host.ts";
import { newPage } from "../../src/hv/page.ts";
import { EVTCHNSTAT } from "../../src/xen/evtchn-abi.ts";
import { GNTST } from "../../src/xen/grant-table-abi.ts";
import { pageBytes, XEN_PAGE_SIZE } from "../../src/xen/xen.ts";
import { formatPerm } from "../../src/xenstore/client.ts";
import { startHost, type TestHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

const PROBE = new URL("./fixtures/probe-module.ts", import.meta.url).href;

interface LogRecord {
  level: number;
  msg: string;
  [k: string]: unknown;
}

function testLogger(records: LogRecord[]): pino.Logger {
  return pino({ level: "debug" }, { write: (s: string) => void records.push(JSON.parse(s) as LogRecord) });
}

/** Runs the probe module in `domid` with `args` and returns what it printed. */
async function probe(host: Host, domid: number, ...args: string[]): Promise<string> {
  const before = host.hv.dmesg(domid).length;
  await host.hv.insmod(domid, PROBE, args);
  await host.hv.rmmod(domid, "probe");
  const lines = host.hv
    .dmesg(domid)
    .slice(before)
    .filter((l) => l.includes("probe: "));
  assert.equal(lines.length, 1, `one probe line expected, got ${JSON.stringify(lines)}`);
  return lines[0]!.replace(/^\[[ \d.]+\] probe: .*? = /, "");
}

describe("hypervisor and host", () => {
  const logs: LogRecord[] = [];
  let fx: TestHost;
  let host: Host;

  before(async () => {
    fx = await startHost({ log: testLogger(logs) });
    ({ host } = fx);
  });
  after(() => fx?.stop());

  it("boots dom0 with its kernel log stamped as dmesg prints it", () => {
    const log = host.hv.dmesg(0);
    assert.match(log[0]!, /^\[ {4}\d\.\d{6}\] Booting domain 0 \(Domain-0\)/);
    const d0 = host.hv.info(0)!;
    assert.equal(d0.state, "running");
    assert.equal(d0.privileged, true);
  });

  it("gives a domain pages that start on a host page: one-page growable buffers that never grow", () => {
    const d0 = host.hv.info(0)!;
    for (const gfn of [d0.store.gfn, d0.console.gfn]) {
      const page = host.hv.page(0, gfn)!;
      // V8 maps a growable SharedArrayBuffer's memory itself (page-aligned); malloc's start 16·k bytes past a page.
      assert.equal(page.growable, true);
      assert.equal(page.byteLength, XEN_PAGE_SIZE);
      assert.equal(page.maxByteLength, XEN_PAGE_SIZE);
      assert.throws(() => page.grow(XEN_PAGE_SIZE + 1), RangeError);
      const bytes = pageBytes(page);
      assert.equal(bytes.byteLength, XEN_PAGE_SIZE);
      assert.equal(bytes.buffer, page);
    }
    const fresh = newPage();
    assert.equal(fresh.growable && fresh.maxByteLength === XEN_PAGE_SIZE, true);
    assert.deepEqual(pageBytes(fresh).subarray(0, 8), new Uint8Array(8), "a new page is zeroed");
  });

  it("a host call reaches a loaded module and brings back its answer or its error", async () => {
    await host.hv.insmod(0, PROBE, ["none"]);
    try {
      const bytes = new Uint8Array([1, 2, 3]);
      assert.deepEqual(await host.hv.call(0, "probe", "echo", { bytes }), { domid: 0, arg: { bytes } });
      assert.equal(await host.hv.call(0, "probe", "read", "/local/domain/0/name"), "Domain-0");
      await assert.rejects(host.hv.call(0, "probe", "nope"), /unknown call nope/);
      await assert.rejects(host.hv.call(0, "missing", "echo"), /No module missing loaded/);
    } finally {
      await host.hv.rmmod(0, "probe");
    }
  });

  it("dom0's kernel reaches xenstored through its ring, privileged", async () => {
    assert.equal(await probe(host, 0, "read", "/local/domain/0/name"), 'ok "Domain-0"');
    assert.equal(await probe(host, 0, "write", "/tool/x", "1"), "ok");
    assert.equal(await host.xs.read("/tool/x"), "1");
  });

  it("creates a guest paused, describes it in XenStore as libxl does, then boots it", async () => {
    const info = await host.createDomain({ name: "guest1" });
    assert.equal(info.state, "running");
    const dom = `/local/domain/${info.domid}`;
    assert.equal(await host.xs.read(`${dom}/name`), "guest1");
    assert.equal(await host.xs.read(`${dom}/store/port`), String(info.store.port));
    assert.deepEqual((await host.xs.getPerms(dom)).map(formatPerm), ["n0", `r${info.domid}`]);
    assert.equal(await host.xs.isDomainIntroduced(info.domid), true);
    assert.deepEqual(host.xenstored.attached.sort(), [0, info.domid].sort());
    assert.match(host.hv.dmesg(info.domid).join("\n"), /Booting domain \d+ \(guest1\)/);
    await host.destroyDomain(info.domid);
  });

  it("a guest's requests carry its identity: relative paths, its own nodes, EACCES elsewhere", async () => {
    const { domid } = await host.createDomain({ name: "ident" });
    assert.equal(await probe(host, domid, "read", "name"), 'ok "ident"');
    assert.equal(await probe(host, domid, "write", "data/x", "hello"), "ok");
    assert.equal(await host.xs.read(`/local/domain/${domid}/data/x`), "hello");
    assert.equal(await probe(host, domid, "read", "/local/domain/0/name"), "error EACCES");
    assert.equal(await probe(host, domid, "write", "name", "evil"), "error EACCES");
    assert.equal(await probe(host, domid, "write", "/tool/y", "1"), "error EACCES");
    await host.destroyDomain(domid);
  });

  it("a guest maps only what is granted to it", async () => {
    const a = await host.createDomain({ name: "granter" });
    const b = await host.createDomain({ name: "mapper" });
    // Ref 1 of A is its XenStore page, granted to dom0 only; ref 100 is not granted at all.
    // Xen answers both (and a wrong domid in general) with GNTST_general_error.
    assert.equal(
      await probe(host, b.domid, "map", String(a.domid), "1"),
      `error GrantOpError ${GNTST.general_error}`,
    );
    assert.equal(
      await probe(host, b.domid, "map", String(a.domid), "100"),
      `error GrantOpError ${GNTST.general_error}`,
    );
    assert.equal(await probe(host, b.domid, "map", "0", "1"), `error GrantOpError ${GNTST.general_error}`);
    assert.match(await probe(host, a.domid, "grant", String(b.domid), "ping"), /^ok \d+$/);
    const ref = await host.xs.read(`/local/domain/${a.domid}/data/ref`);
    assert.equal(await probe(host, b.domid, "map-read", String(a.domid), ref), "ok ping");
    await host.destroyDomain(b.domid);
    await host.destroyDomain(a.domid);
  });

  it("memory is the domain's size and no more", async () => {
    const { domid } = await host.createDomain({ name: "small", maxPages: 8 });
    // 2 pages (store, console) are the builder's: 6 left.
    assert.equal(await probe(host, domid, "alloc-all"), "error 12 after 6" /* ENOMEM */);
    await host.destroyDomain(domid);
  });

  it("a guest that corrupts its ring indexes is cut off, logged; others go on", async () => {
    const bad = await host.createDomain({ name: "bad" });
    const good = await host.createDomain({ name: "good" });
    assert.equal(await probe(host, bad.domid, "corrupt"), "ok");
    await until(
      "the bad ring index to be logged",
      () =>
        logs.some(
          (r) =>
            r.domid === bad.domid && r.msg === `dom${bad.domid}: bad ring index: ignoring the connection`,
        ),
      5000,
    );
    const page = new DataView(host.hv.page(bad.domid, bad.store.gfn)!);
    await until(
      "the ring's error word to say XENSTORE_ERROR_RINGIDX",
      () => page.getUint32(2072, true) === 2,
      5000,
    );
    assert.equal(await probe(host, good.domid, "read", "name"), 'ok "good"');
    await host.destroyDomain(bad.domid);
    await host.destroyDomain(good.domid);
  });

  it("a guest reconnects its XenStore ring (feature bit 1) and carries on", async () => {
    const { domid } = await host.createDomain({ name: "reconnector" });
    assert.equal(await probe(host, domid, "write", "data/before", "1"), "ok");
    assert.equal(await probe(host, domid, "reconnect"), "ok");
    assert.equal(await probe(host, domid, "read", "data/before"), 'ok "1"');
    await host.destroyDomain(domid);
  });

  it("destroy releases the domain: @releaseDomain, its nodes, its ports, its ring", async () => {
    const { domid, store } = await host.createDomain({ name: "doomed" });
    assert.equal(await probe(host, domid, "write", "data/x", "1"), "ok");
    const w = host.xs.watch("@releaseDomain");
    const first = await w.next(); // the initial event
    assert.equal(first.value.path, "@releaseDomain");
    const dom0Port = host.hv.events.status(0, domid, store.port);
    assert.equal(typeof dom0Port === "object" && dom0Port.status, EVTCHNSTAT.interdomain);
    await host.destroyDomain(domid);
    const ev = await w.next();
    assert.equal(ev.value.path, "@releaseDomain");
    await w.return();
    assert.equal(await host.xs.isDomainIntroduced(domid), false);
    assert.equal(await host.xs.exists(`/local/domain/${domid}`), false);
    assert.equal(host.hv.info(domid), undefined);
    assert.ok(!host.xenstored.attached.includes(domid));
    assert.deepEqual(
      host.hv.grants.mappingsBy(0).filter((m) => m.granter === domid),
      [],
    );
  });

  it("a paused domain handles no event until unpaused", async () => {
    const { domid } = await host.createDomain({ name: "sleepy" });
    host.hv.pause(domid);
    let done = false;
    const p = probe(host, domid, "read", "name").then((r) => {
      done = true;
      return r;
    });
    // insmod's message is taken, but the XenStore reply's event waits for unpause.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(done, false);
    host.hv.unpause(domid);
    assert.equal(await p, 'ok "sleepy"');
    await host.destroyDomain(domid);
  });
});

describe("a guest's XenStore quotas", () => {
  it("apply to its own requests through its ring, with a log line naming it and the quota", async () => {
    const logs: LogRecord[] = [];
    const fx = await startHost({ log: testLogger(logs), xenstored: { quotas: { nodes: 40 } } });
    const { host } = fx;
    try {
      const { domid } = await host.createDomain({ name: "greedy" });
      // The toolstack gave it 20-odd nodes already; it may create a few more, then ENOSPC.
      let last = "";
      for (let i = 0; i < 40 && !last.startsWith("error"); i++) {
        last = await probe(host, domid, "write", `data/n${i}`, "x");
      }
      assert.equal(last, "error ENOSPC");
      assert.ok(
        logs.some((r) => r.msg === `domain ${domid} reached quota nodes (40)`),
        "a log line names the domain and the quota",
      );
      // Dom0 is not subject to it.
      await host.xs.write(`/local/domain/${domid}/data/by-dom0`, "1");
    } finally {
      await fx.stop();
    }
  });
});
