/**
 * The XenStore ring transport, both ends, in process: guests are XsClients over a
 * RingClientChannel on a SharedArrayBuffer page, the daemon is a real XenStoreCore behind a
 * RingServer, and the "event channels" are callbacks run as microtasks. Dom0 talks to the same
 * core through an in-memory channel (LocalChannel, no socket). One test runs the guest in a worker thread
 * with Atomics-based kicks; one replays the guest section of the reference daemon's probe
 * transcript (../shared/refxs/probe-cxenstored.txt) through the ring.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import { XS_CONNECTION, XS_RING_ERROR, XS_SERVER_FEATURE } from "../../src/ring/byte-ring.ts";
import { XsClient } from "../../src/xenstore/client.ts";
import { type CoreOptions, XenStoreCore } from "../../src/xenstore/core.ts";
import { type Connection, deliver, type XsLogger } from "../../src/xenstore/daemon.ts";
import { ConnectionClosedError, XsError, XsRingError } from "../../src/xenstore/errors.ts";
import { LocalChannel } from "../../src/xenstore/transport-local.ts";
import { RingClientChannel, RingServer } from "../../src/xenstore/transport-ring.ts";
import {
  encodePacket,
  HEADER_SIZE,
  PacketReader,
  writeHeader,
  type XsPacket,
  XsType,
} from "../../src/xenstore/wire.ts";
import { until } from "../helpers/until.ts";
import { kick, listen, PORT } from "./fixtures/atomics-evtchn.ts";
import { bigValue, type GuestData, type GuestResult } from "./fixtures/ring-guest.ts";

const PAGE_SIZE = 4096;
/** A guest's node may not reach 2048 bytes by default (C `-Q node-size`); 4000-byte values need more. */
const BIG_NODES = { nodeSize: 8192 };

/** Lets everything queued run (kicks, flushes, replies). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

interface LogLine {
  level: "info" | "warn" | "error" | "debug";
  obj: object;
  msg: string;
}

/** One domain as the fake hypervisor sees it: its XenStore page and both ends' kick counts. */
interface Dom {
  readonly domid: number;
  readonly page: Uint8Array;
  server: RingServer | null;
  /** What the guest's event handler runs (set once the guest has a channel). */
  onGuestKick: () => void;
  kicksToGuest: number;
  kicksToServer: number;
}

interface Guest {
  readonly dom: Dom;
  readonly channel: RingClientChannel;
  readonly xs: XsClient;
}

/** A core, dom0, and domains whose XenStore rings are attached on INTRODUCE. */
class Bed {
  readonly core: XenStoreCore;
  readonly logs: LogLine[] = [];
  readonly doms = new Map<number, Dom>();
  readonly dom0: XsClient;

  constructor(opts: CoreOptions = {}) {
    const logs = this.logs;
    const log: XsLogger = {
      info: (obj, msg) => logs.push({ level: "info", obj, msg }),
      warn: (obj, msg) => logs.push({ level: "warn", obj, msg }),
      error: (obj, msg) => logs.push({ level: "error", obj, msg }),
      debug: (obj, msg) => logs.push({ level: "debug", obj, msg }),
    };
    this.core = new XenStoreCore({
      ...opts,
      log,
      hooks: {
        introduce: (domid) => this.#attach(domid),
        reintroduce: (domid) => this.doms.get(domid)?.server?.introduced(),
        release: (domid) => this.doms.get(domid)?.server?.detach(),
      },
    });
    this.dom0 = new XsClient(new LocalChannel(this.core));
  }

  /** The domain's page exists before it is introduced, as a built domain's does. */
  dom(domid: number): Dom {
    let d = this.doms.get(domid);
    if (d === undefined) {
      d = {
        domid,
        page: new Uint8Array(new SharedArrayBuffer(PAGE_SIZE)),
        server: null,
        onGuestKick: () => {},
        kicksToGuest: 0,
        kicksToServer: 0,
      };
      this.doms.set(domid, d);
    }
    return d;
  }

  #attach(domid: number): Connection {
    const d = this.dom(domid);
    d.server?.detach();
    d.server = new RingServer({
      core: this.core,
      conn: this.core.connectDomain(domid),
      page: d.page,
      notify: () => {
        d.kicksToGuest++;
        queueMicrotask(() => d.onGuestKick());
      },
    });
    return d.server.conn;
  }

  /** A channel on the domain's page whose kicks reach the domain's RingServer. */
  channel(domid: number): RingClientChannel {
    const d = this.dom(domid);
    const channel = new RingClientChannel({
      page: d.page,
      notify: () => {
        d.kicksToServer++;
        queueMicrotask(() => d.server?.onKick());
      },
    });
    d.onGuestKick = () => channel.onKick();
    return channel;
  }

  /** Builds /local/domain/<domid> (n<domid>, r0), introduces the domain and connects a client. */
  async guest(domid: number): Promise<Guest> {
    const home = `/local/domain/${domid}`;
    await this.dom0.mkdir(home);
    await this.dom0.setPerms(home, [`n${domid}`, "r0"]);
    await this.dom0.introduce(domid, 12345, 7);
    const channel = this.channel(domid);
    return { dom: this.dom(domid), channel, xs: new XsClient(channel) };
  }

  server(domid: number): RingServer {
    const s = this.doms.get(domid)?.server;
    assert.ok(s, `dom${domid} has a ring server`);
    return s;
  }

  conn(domid: number): Connection {
    return this.server(domid).conn;
  }
}

/** A request's bytes. */
function packet(type: number, reqId: number, txId: number, payload: string): Uint8Array {
  return encodePacket({ type, reqId, txId, payload: ascii(payload) });
}

function ascii(s: string): Uint8Array {
  return Uint8Array.from([...s].map((c) => c.charCodeAt(0)));
}

function text(b: Uint8Array): string {
  return String.fromCharCode(...b);
}

async function rejectsWith(p: Promise<unknown>, errno: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof XsError && e.errno === errno);
}

describe("RingServer and RingClientChannel", () => {
  it("advertise reconnection and error in server_features when the ring is attached", async () => {
    const bed = new Bed();
    const g = await bed.guest(5);
    assert.equal(g.channel.serverFeatures, XS_SERVER_FEATURE.reconnection | XS_SERVER_FEATURE.error);
    assert.equal(g.channel.intf.connection, XS_CONNECTION.connected);
    assert.equal(g.channel.intf.error, XS_RING_ERROR.none);
  });

  it("carry reads, writes, directories and permissions for an unprivileged guest", async () => {
    const bed = new Bed();
    const { xs } = await bed.guest(5);
    await xs.write("x", "1");
    assert.equal(await xs.read("/local/domain/5/x"), "1");
    assert.deepEqual(await xs.directory("/local/domain/5"), ["x"]);
    assert.deepEqual(
      (await xs.getPerms("x")).map((p) => `${p.id}${p.read ? "r" : ""}${p.write ? "w" : ""}`),
      ["5", "0r"],
    );
    assert.equal(await xs.getDomainPath(5), "/local/domain/5");
    assert.equal(await bed.dom0.read("/local/domain/5/x"), "1");
    await rejectsWith(xs.read("nonexistent"), "ENOENT");
  });

  it("deliver watch events to the guest, including those fired by dom0", async () => {
    const bed = new Bed();
    const { xs } = await bed.guest(5);
    const w = xs.watch("/local/domain/5/dev", "t");
    await w.ready;
    const it = w[Symbol.asyncIterator]();
    assert.deepEqual((await it.next()).value, { path: "/local/domain/5/dev", token: "t" });
    await bed.dom0.write("/local/domain/5/dev/vif", "up");
    assert.deepEqual((await it.next()).value, { path: "/local/domain/5/dev/vif", token: "t" });
    await xs.write("dev/vbd", "1");
    assert.deepEqual((await it.next()).value, { path: "/local/domain/5/dev/vbd", token: "t" });
    await w.close();
  });

  it("run transactions; a conflicting dom0 write makes the commit fail with EAGAIN", async () => {
    const bed = new Bed();
    const { xs } = await bed.guest(5);
    const tx = await xs.transactionStart();
    await tx.write("t", "guest");
    assert.equal(await xs.tryRead("t"), undefined, "not visible outside the transaction");
    await tx.commit();
    assert.equal(await bed.dom0.read("/local/domain/5/t"), "guest");

    const tx2 = await xs.transactionStart();
    await tx2.write("t", "again");
    await bed.dom0.write("/local/domain/5/t", "dom0");
    await rejectsWith(tx2.commit(), "EAGAIN");
    assert.equal(await xs.read("t"), "dom0");
  });

  it("give a guest EACCES on another domain's nodes", async () => {
    const bed = new Bed();
    const g5 = await bed.guest(5);
    const g6 = await bed.guest(6);
    await g6.xs.write("secret", "six");
    await rejectsWith(g5.xs.read("/local/domain/6/secret"), "EACCES");
    await rejectsWith(g5.xs.write("/local/domain/6/secret", "five"), "EACCES");
    await rejectsWith(g5.xs.write("/local/domain/6/new", "five"), "EACCES");
    await rejectsWith(g5.xs.introduce(9, 1, 1), "EACCES");
    assert.equal(await g6.xs.read("secret"), "six");
  });

  it("stream messages larger than the 1024-byte ring: a 4000-byte WRITE and READ", async () => {
    const bed = new Bed({ quotas: BIG_NODES });
    const { xs, dom } = await bed.guest(5);
    const value = bigValue(3);
    const before = dom.kicksToServer;
    await xs.write("big", value);
    assert.ok(dom.kicksToServer - before >= 4, "the request went through the ring in several rounds");
    assert.equal(await bed.dom0.read("/local/domain/5/big"), value);
    assert.equal(await xs.read("big"), value);
    // Payload exactly 4096 bytes: the largest request the daemon takes.
    const path = "/local/domain/5/max";
    const max = "m".repeat(4096 - path.length - 1);
    await xs.write(path, max);
    assert.equal(await xs.read(path), max);
  });

  it("notify only when an index moved", async () => {
    const bed = new Bed();
    const { xs, dom, channel } = await bed.guest(5);
    await xs.write("a", "1");
    await settle();
    const toGuest = dom.kicksToGuest;
    const toServer = dom.kicksToServer;
    bed.server(5).onKick();
    channel.onKick();
    await settle();
    assert.equal(dom.kicksToGuest, toGuest, "a kick with nothing to do is not answered");
    assert.equal(dom.kicksToServer, toServer);
    await xs.read("a");
    assert.ok(dom.kicksToGuest > toGuest);
  });

  it("cut off a guest that corrupts its req indexes (error = 2); another guest and dom0 carry on", async () => {
    const bed = new Bed();
    const g5 = await bed.guest(5);
    const g6 = await bed.guest(6);
    const conn5 = bed.conn(5);
    const w = g5.xs.watch("/local/domain/5/w", "t");
    await w.ready;
    await g5.xs.transactionStart();
    assert.equal(conn5.watches.length, 1);
    assert.equal(conn5.transactions.size, 1);
    const dom0Watch = bed.dom0.watch("/local/domain/5/w", "d0");
    await dom0Watch.ready;

    const intf = g5.channel.intf;
    const cons = intf.req.cons;
    intf.req.prod = cons + 1025;
    bed.server(5).onKick();
    assert.equal(intf.error, XS_RING_ERROR.badIndex);
    assert.equal(bed.server(5).ignored, true);
    const err = await g5.xs.closed;
    assert.ok(err instanceof XsRingError && err.code === XS_RING_ERROR.badIndex, String(err));
    assert.equal(conn5.watches.length, 0, "its watches are gone");
    assert.equal(conn5.transactions.size, 0, "its transactions are gone");
    const logged = bed.logs.find((l) => l.level === "error" && l.msg.includes("dom5"));
    assert.ok(logged, "the daemon logs it");
    assert.deepEqual({ ...logged.obj }, { domid: 5, error: 2, ring: "req", cons, prod: cons + 1025 });

    // Nobody else notices.
    await g6.xs.write("still", "here");
    assert.equal(await g6.xs.read("still"), "here");
    await bed.dom0.write("/local/domain/5/w", "x");
    assert.equal(await bed.dom0.read("/local/domain/5/w"), "x");
    assert.equal(bed.core.domains.has(5), true, "the domain stays introduced");

    // The daemon never reads or writes that ring again, even with sane indexes.
    const rspProd = intf.rsp.prod;
    intf.req.prod = intf.req.cons;
    intf.req.write(packet(XsType.READ, 1, 0, "/local/domain/5/w\0"));
    bed.server(5).onKick();
    await settle();
    assert.equal(intf.req.cons, cons);
    assert.equal(intf.rsp.prod, rspProd);
    assert.equal(intf.error, XS_RING_ERROR.badIndex);
  });

  it("cut off a guest whose rsp indexes are corrupt when the daemon next writes (error = 2)", async () => {
    const bed = new Bed();
    const g5 = await bed.guest(5);
    const w = g5.xs.watch("/local/domain/5/w", "t");
    await w.ready;
    await settle();
    const intf = g5.channel.intf;
    intf.rsp.cons = intf.rsp.prod + 7; // the guest claims to have read bytes never written
    await bed.dom0.write("/local/domain/5/w", "fire");
    await settle();
    assert.equal(intf.error, XS_RING_ERROR.badIndex);
    assert.equal(bed.conn(5).watches.length, 0);
    assert.equal(await bed.dom0.read("/local/domain/5/w"), "fire");
  });

  it("ignore a guest announcing a payload over 4096 bytes (error = 3)", async () => {
    const bed = new Bed();
    const g5 = await bed.guest(5);
    const g6 = await bed.guest(6);
    const intf = g5.channel.intf;
    const hdr = new Uint8Array(HEADER_SIZE);
    writeHeader(hdr, 0, XsType.WRITE, 1, 0, 4097);
    intf.req.write(hdr);
    bed.server(5).onKick();
    assert.equal(intf.error, XS_RING_ERROR.payloadTooLong);
    const err = await g5.xs.closed;
    assert.ok(err instanceof XsRingError && err.code === XS_RING_ERROR.payloadTooLong, String(err));
    assert.ok(bed.logs.some((l) => l.level === "error" && /payload too long/.test(l.msg)));
    await g6.xs.write("ok", "1");
    assert.equal(await bed.dom0.read("/local/domain/6/ok"), "1");
  });

  it("reconnect on request: watches, transactions and partial packets go, connection returns to 0", async () => {
    const bed = new Bed();
    const g = await bed.guest(5);
    const conn = bed.conn(5);
    const w = g.xs.watch("/local/domain/5/w", "t");
    await w.ready;
    const tx = await g.xs.transactionStart();
    await tx.write("tx", "1");
    await settle();
    // Half a request in the ring when the guest asks to reconnect.
    g.channel.intf.req.write(packet(XsType.READ, 99, 0, "/local/domain/5/w\0").subarray(0, 10));
    bed.server(5).onKick();

    const pending = g.xs.read("w");
    const reset = g.channel.reconnect();
    await assert.rejects(pending, ConnectionClosedError);
    assert.ok((await g.xs.closed) instanceof ConnectionClosedError);
    await reset;
    const intf = g.channel.intf;
    assert.equal(intf.connection, XS_CONNECTION.connected);
    assert.deepEqual([intf.req.cons, intf.req.prod, intf.rsp.cons, intf.rsp.prod], [0, 0, 0, 0]);
    assert.equal(conn.watches.length, 0);
    assert.equal(conn.transactions.size, 0);
    assert.equal(intf.error, XS_RING_ERROR.none);

    // The same ring works again, for a new client.
    const xs = new XsClient(g.channel);
    await xs.write("after", "yes");
    assert.equal(await xs.read("after"), "yes");
    assert.equal(await xs.tryRead("tx"), undefined, "the transaction was discarded, not committed");
    await rejectsWith(xs.request(XsType.READ, tx.txId, ascii("/local/domain/5/w\0")), "ENOENT");
    const prod = intf.rsp.prod;
    await bed.dom0.write("/local/domain/5/w", "no one watches");
    await settle();
    assert.equal(intf.rsp.prod, prod, "the old watch fires nothing");
  });

  it("answer a reconnection request pending at INTRODUCE, and reset the ring on a repeated INTRODUCE", async () => {
    const bed = new Bed();
    const d = bed.dom(5);
    const words = new Uint32Array(d.page.buffer, 0, 1024);
    words[2068 / 4] = XS_CONNECTION.reconnecting; // dom0less: the guest waits from boot
    // The guest starts first and queues a request; it writes nothing while connection = 1.
    const channel = bed.channel(5);
    const xs = new XsClient(channel);
    const wrote = xs.write("early", "1");
    await settle();
    assert.equal(channel.intf.req.prod, 0);
    await bed.dom0.mkdir("/local/domain/5");
    await bed.dom0.setPerms("/local/domain/5", ["n5", "r0"]);
    await bed.dom0.introduce(5, 12345, 7);
    assert.equal(channel.intf.connection, XS_CONNECTION.connected);
    assert.ok(d.kicksToGuest >= 1, "the guest is told");
    await wrote;
    assert.equal(await bed.dom0.read("/local/domain/5/early"), "1");
    const w = xs.watch("/local/domain/5/w", "t");
    await w.ready;
    assert.equal(bed.conn(5).watches.length, 1);

    // C xenstored's do_introduce resets the connection of a domain it already knows.
    await bed.dom0.introduce(5, 12345, 8);
    assert.equal(bed.conn(5).watches.length, 0);
    assert.equal(bed.core.domains.get(5)?.port, 8);
  });

  it("stop reading requests while a guest has `outstanding` replies unsent (domain_can_read)", async () => {
    const bed = new Bed({ quotas: { outstanding: 2 } });
    await bed.guest(5);
    await bed.dom0.write("/local/domain/5/v", "v".repeat(900));
    const server = bed.server(5);
    const ring = server.intf;
    // A raw guest that sends five READs and does not consume the replies.
    const read = packet(XsType.READ, 1, 0, "/local/domain/5/v\0");
    for (let i = 0; i < 5; i++) assert.equal(ring.req.write(read).ok, true);
    server.onKick();
    // #1 fits in rsp (916 bytes); #2 partly, #3 queued: 2 outstanding, reading stops.
    assert.equal(ring.req.cons, 3 * read.byteLength);
    assert.equal(server.outstanding, 2);
    assert.equal(ring.rsp.prod, 1024);
    // The guest consumes everything it gets; the rest follows.
    const reader = new PacketReader();
    const got: XsPacket[] = [];
    const buf = new Uint8Array(1024);
    for (let round = 0; round < 20 && got.length < 5; round++) {
      const r = ring.rsp.read(buf);
      assert.ok(r.ok);
      got.push(...reader.push(buf.subarray(0, r.bytes)));
      server.onKick();
    }
    assert.equal(got.length, 5);
    assert.ok(got.every((p) => p.type === XsType.READ && p.payload.byteLength === 900));
    assert.equal(ring.req.cons, 5 * read.byteLength);
  });

  it("drop a watch event identical to one still queued for the guest", async () => {
    const bed = new Bed();
    const g = await bed.guest(5);
    const w = g.xs.watch("/local/domain/5/w", "t");
    await w.ready;
    await settle();
    // Stop the guest from consuming: events pile up in the daemon's queue once rsp is full.
    g.dom.onGuestKick = () => {};
    for (let i = 0; i < 40; i++) await bed.dom0.write(`/local/domain/5/w/c${i}`, "");
    await settle();
    const queued = bed.server(5).queued;
    assert.ok(queued > 0, "rsp is full");
    for (let i = 0; i < 3; i++) await bed.dom0.write("/local/domain/5/w", String(i));
    await settle();
    assert.equal(bed.server(5).queued, queued + 1, "three identical events, one queued");
    g.dom.onGuestKick = () => g.channel.onKick();
    g.channel.onKick();
    await settle();
    assert.equal(bed.server(5).queued, 0);
  });
});

describe("RingServer with the guest in a worker thread", () => {
  it("serves a few hundred pipelined requests through Atomics-kicked event channels", async () => {
    const bed = new Bed({ quotas: BIG_NODES });
    const home = "/local/domain/7";
    await bed.dom0.mkdir(home);
    await bed.dom0.setPerms(home, ["n7", "r0"]);
    const page = new SharedArrayBuffer(PAGE_SIZE);
    const events = new SharedArrayBuffer(8);
    const ev = new Int32Array(events);
    const core = bed.core;
    const conn = core.connectDomain(7);
    const server = new RingServer({
      core,
      conn,
      page: new Uint8Array(page),
      notify: () => kick(ev, PORT.toGuest),
    });
    const stop = listen(ev, PORT.toServer, () => server.onKick());

    const data: GuestData = { page, events, domid: 7, rounds: 30 };
    // Workers do not inherit tsx's hooks on Node 20: register them in the worker, then load the guest.
    const guest = new URL("./fixtures/ring-guest.ts", import.meta.url).href;
    const boot = `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))})
      .then(({ register }) => { register(); return import(${JSON.stringify(guest)}); });`;
    const worker = new Worker(boot, { eval: true, workerData: data });
    try {
      const result = await new Promise<GuestResult>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("Guest worker timed out")), 60_000);
        worker.on("message", (m: { ready?: boolean } & Partial<GuestResult>) => {
          if (m.ready) return;
          clearTimeout(timer);
          resolve(m as GuestResult);
        });
        worker.on("error", (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
      assert.equal(result.ok, true, result.error);
      assert.ok(result.requests >= 400, `${result.requests} requests`);
      assert.ok(result.events >= 2, "watch events reached the worker");
      assert.equal(await bed.dom0.read(`${home}/count`), "3");
      assert.equal(await bed.dom0.read(`${home}/data/29-4`), "v29.4");
      assert.equal(await bed.dom0.read(`${home}/big`), bigValue(20));
      assert.equal(server.ignored, false);
      assert.equal(server.intf.error, XS_RING_ERROR.none);
    } finally {
      stop();
      await worker.terminate();
    }
  });
});

// ---------------------------------------------------------------------------------------
// The reference daemon's probe, guest section, through the ring

/**
 * `probe-cxenstored.txt` lines 175–230 (C xenstored 4.17 with the refxs shim), verbatim: the
 * probe's dom0 on the socket and dom5 over its shared ring, up to the second INTRODUCE. The
 * rest of that section needs the shim's domain-death emulation.
 */
const PROBE_GUEST_SECTION = String.raw`
[dom0] WATCH b'@introduceDomain\x00tokI\x00'  -> WATCH b'OK\x00'
[dom0]     event WATCH_EVENT b'@introduceDomain\x00tokI\x00'
[dom0] WATCH b'@releaseDomain\x00tokR\x00'  -> WATCH b'OK\x00'
[dom0]     event WATCH_EVENT b'@releaseDomain\x00tokR\x00'
[dom0] MKDIR b'/local/domain/5\x00'  -> MKDIR b'OK\x00'
[dom0] SET_PERMS b'/local/domain/5\x00n5\x00r0\x00'  -> SET_PERMS b'OK\x00'
[dom0] INTRODUCE b'5\x0012345\x007\x00'  -> INTRODUCE b'OK\x00'
[dom0]     event WATCH_EVENT b'@introduceDomain\x00tokI\x00'
[dom0] IS_DOMAIN_INTRODUCED b'5\x00'  -> IS_DOMAIN_INTRODUCED b'T\x00'
[dom5] READ b'/local/domain/5\x00'  -> READ b''
[dom5] WRITE b'x\x001'   # relative = /local/domain/5/x  -> WRITE b'OK\x00'
[dom5] READ b'/local/domain/5/x\x00'  -> READ b'1'
[dom5] GET_PERMS b'x\x00'   # inherited from parent  -> GET_PERMS b'n5\x00r0\x00'
[dom5] READ b'/refxs-probe/a\x00'   # dom0-owned, no perms for 5  -> ERROR b'EACCES\x00'
[dom5] GET_PERMS b'/refxs-probe/a\x00'  -> ERROR b'EACCES\x00'
[dom5] DIRECTORY b'/refxs-probe\x00'  -> ERROR b'EACCES\x00'
[dom5] WRITE b'/refxs-probe/a\x00from-guest'  -> ERROR b'EACCES\x00'
[dom5] WRITE b'/refxs-probe/newnode\x00from-guest'   # create under dom0 dir  -> ERROR b'EACCES\x00'
[dom5] RM b'/refxs-probe/a\x00'  -> ERROR b'EACCES\x00'
[dom5] READ b'/refxs-probe/nonexistent\x00'   # ENOENT or EACCES?  -> ERROR b'EACCES\x00'
[dom5] READ b'/local/domain/5/nonexistent\x00'  -> ERROR b'ENOENT\x00'
[dom0] SET_PERMS b'/refxs-probe/a\x00n0\x00r5\x00'  -> SET_PERMS b'OK\x00'
[dom5] READ b'/refxs-probe/a\x00'   # now readable  -> READ b'conflict'
[dom5] WRITE b'/refxs-probe/a\x00from-guest'   # still not writable  -> ERROR b'EACCES\x00'
[dom0] SET_PERMS b'/refxs-probe/a\x00n0\x00b5\x00'  -> SET_PERMS b'OK\x00'
[dom5] WRITE b'/refxs-probe/a\x00from-guest'   # now writable  -> WRITE b'OK\x00'
[dom5] SET_PERMS b'/refxs-probe/a\x00n5\x00'   # non-owner chmod  -> ERROR b'EACCES\x00'
[dom5] SET_PERMS b'x\x00n0\x00'   # owner gives node to dom0  -> ERROR b'EPERM\x00'
[dom5] GET_PERMS b'x\x00'  -> GET_PERMS b'n5\x00r0\x00'
[dom5] SET_PERMS b'/local/domain/5\x00n5\x00r0\x00w9\x00'   # owner chmod of own node  -> SET_PERMS b'OK\x00'
[dom5] WATCH b'/refxs-probe\x00gtok\x00'   # watch on non-readable parent  -> WATCH b'OK\x00'
[dom5]     event WATCH_EVENT b'/refxs-probe\x00gtok\x00'
[dom0] WRITE b'/refxs-probe/a\x00by-dom0'  -> WRITE b'OK\x00'
[dom0] WRITE b'/refxs-probe/secret\x00by-dom0'  -> WRITE b'OK\x00'
[dom5] (pending events: WATCH_EVENT b'/refxs-probe/a\x00gtok\x00')   # guest sees only permitted events?
[dom5] UNWATCH b'/refxs-probe\x00gtok\x00'  -> UNWATCH b'OK\x00'
[dom5] WATCH b'@releaseDomain\x00gR\x00'   # guest special watch  -> WATCH b'OK\x00'
[dom5]     event WATCH_EVENT b'@releaseDomain\x00gR\x00'
[dom5] INTRODUCE b'8\x001\x001\x00'   # privileged op from guest  -> ERROR b'EACCES\x00'
[dom5] RELEASE b'0\x00'  -> ERROR b'EACCES\x00'
[dom5] GET_DOMAIN_PATH b'0\x00'  -> GET_DOMAIN_PATH b'/local/domain/0\x00'
[dom5] IS_DOMAIN_INTRODUCED b'0\x00'  -> ERROR b'EACCES\x00'
[dom5] SET_TARGET b'8\x009\x00'  -> ERROR b'EACCES\x00'
[dom5] CONTROL b'print\x00x\x00'  -> ERROR b'EACCES\x00'
[dom5] TRANSACTION_START b'\x00'  -> TRANSACTION_START <tx1>
[dom5] WRITE tx=<tx1> b'tx\x001'  -> WRITE b'OK\x00'
[dom0] WRITE b'/local/domain/5/tx\x00dom0'  -> WRITE b'OK\x00'
[dom5] TRANSACTION_END tx=<tx1> b'T\x00'   # guest conflict  -> ERROR b'EAGAIN\x00'
[dom0] SET_TARGET b'8\x005\x00'   # target not introduced  -> ERROR b'ENOENT\x00'
[dom0] RESUME b'5\x00'  -> RESUME b'OK\x00'
[dom0] RELEASE b'5\x00'  -> RELEASE b'OK\x00'
[dom0]     event WATCH_EVENT b'@releaseDomain\x00tokR\x00'
[dom0] (pending events: none)   # after RELEASE
[dom0] IS_DOMAIN_INTRODUCED b'5\x00'  -> IS_DOMAIN_INTRODUCED b'F\x00'
[dom0] INTRODUCE b'5\x0012345\x007\x00'  -> INTRODUCE b'OK\x00'
[dom0]     event WATCH_EVENT b'@introduceDomain\x00tokI\x00'
`;

/** Python's `repr()` of bytes, as probe.py prints them. */
function pyRepr(b: Uint8Array): string {
  const hasSingle = b.includes(0x27);
  const q = hasSingle && !b.includes(0x22) ? '"' : "'";
  let s = `b${q}`;
  for (const c of b) {
    if (c === 0x5c) s += "\\\\";
    else if (c === q.charCodeAt(0)) s += `\\${q}`;
    else if (c === 0x09) s += "\\t";
    else if (c === 0x0a) s += "\\n";
    else if (c === 0x0d) s += "\\r";
    else if (c < 0x20 || c >= 0x7f) s += `\\x${c.toString(16).padStart(2, "0")}`;
    else s += String.fromCharCode(c);
  }
  return `${s}${q}`;
}

/** Parses a Python bytes literal (`b'a\x00b'`). */
function pyBytes(lit: string): Uint8Array {
  const m = /^b(['"])(.*)\1$/.exec(lit);
  assert.ok(m, `bytes literal: ${lit}`);
  const body = m[2]!;
  const out: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      out.push(c.charCodeAt(0));
      continue;
    }
    const e = body[++i]!;
    if (e === "x") {
      out.push(Number.parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push({ t: 9, n: 10, r: 13 }[e as "t" | "n" | "r"] ?? e.charCodeAt(0));
    }
  }
  return Uint8Array.from(out);
}

/** One side of the probe: requests out, every packet received kept in order. */
interface ProbeConn {
  send(p: XsPacket): void;
  readonly inbox: XsPacket[];
}

/** Replays the transcript: each request line is sent and the line it prints is rebuilt. */
async function replayProbe(transcript: string): Promise<{ expected: string[]; actual: string[] }> {
  const bed = new Bed();
  await bed.dom0.write("/refxs-probe/a", "conflict"); // what the earlier sections left behind
  const conns = new Map<string, ProbeConn>();
  const dom0: ProbeConn = (() => {
    const conn = bed.core.connectSocket();
    const inbox: XsPacket[] = [];
    conn.sink = { send: (_c, p) => inbox.push(p) };
    return { inbox, send: (p) => deliver(bed.core.step(conn, p).out) };
  })();
  conns.set("dom0", dom0);
  const guest = (domid: number): ProbeConn => {
    const channel = bed.channel(domid);
    const reader = new PacketReader();
    const inbox: XsPacket[] = [];
    channel.attach({ data: (chunk) => inbox.push(...reader.push(chunk)), closed: () => {} });
    return { inbox, send: (p) => channel.write(encodePacket(p)) };
  };
  const txByName = new Map<string, number>();
  const nameOfTx = (id: number): string => {
    for (const [n, v] of txByName) if (v === id) return n;
    const n = `<tx${txByName.size + 1}>`;
    txByName.set(n, id);
    return n;
  };
  const show = (rows: XsPacket[]) => rows.map((e) => `${opName(e.type)} ${pyRepr(e.payload)}`).join(", ");
  const expected: string[] = [];
  const actual: string[] = [];
  let reqId = 0;
  const lines = transcript.trim().split("\n");
  for (const [at, line] of lines.entries()) {
    if (line.startsWith("## ")) continue;
    const m = /^\[(\w+)\] (.*)$/.exec(line)!;
    const who = m[1]!;
    let c = conns.get(who);
    if (c === undefined) {
      c = guest(Number(who.slice(3)));
      conns.set(who, c);
    }
    const rest = m[2]!;
    if (rest.startsWith("    event ")) continue; // printed with their request below
    if (rest.startsWith("(pending events")) {
      await settle();
      const note = rest.includes("   # ") ? `   # ${rest.split("   # ")[1]}` : "";
      actual.push(`[${who}] (pending events: ${show(c.inbox.splice(0)) || "none"})${note}`);
      expected.push(line);
      continue;
    }
    const arrow = rest.lastIndexOf("  -> ");
    const req = /^(\w+)(?: tx=(<tx\d+>))? (b'.*'|b".*?")( {3}# .*)?$/.exec(rest.slice(0, arrow))!;
    const [, op, tx, lit, note] = req;
    const txId = tx === undefined ? 0 : txByName.get(tx)!;
    const payload = pyBytes(lit!);
    reqId++;
    c.send({ type: XsType[op as keyof typeof XsType], reqId, txId, payload });
    const inbox = c.inbox;
    // Queued callbacks answer: look again after each turn of the event loop.
    await until(`${who} ${op}`, () => inbox.some((p) => p.reqId === reqId && p.type !== XsType.WATCH_EVENT), {
      every: 0,
      ms: 5_000,
    });
    await settle();
    const got = inbox.splice(0);
    const reply = got.find((p) => p.reqId === reqId && p.type !== XsType.WATCH_EVENT)!;
    const isTx = op === "TRANSACTION_START" && /^\d+\0$/.test(text(reply.payload));
    const body = isTx ? nameOfTx(Number(text(reply.payload).slice(0, -1))) : pyRepr(reply.payload);
    const txShown = tx === undefined ? "" : ` tx=${tx}`;
    actual.push(`[${who}] ${op}${txShown} ${lit}${note ?? ""}  -> ${opName(reply.type)} ${body}`);
    expected.push(line);
    for (const e of got.filter((p) => p !== reply)) {
      actual.push(`[${who}]     event ${opName(e.type)} ${pyRepr(e.payload)}`);
    }
    // The event lines that follow this request line in the transcript.
    let i = at + 1;
    while (i < lines.length && lines[i]!.startsWith(`[${who}]     event `)) expected.push(lines[i++]!);
  }
  return { expected, actual };
}

function opName(type: number): string {
  return Object.entries(XsType).find(([, v]) => v === type)?.[0] ?? String(type);
}

describe("the reference probe's guest section over the ring", () => {
  it("gives dom5 and dom0 the replies and events C xenstored 4.17 gave", async () => {
    const { expected, actual } = await replayProbe(PROBE_GUEST_SECTION);
    assert.equal(expected.length, 56);
    assert.deepEqual(actual, expected);
  });
});
