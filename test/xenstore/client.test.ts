import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  formatPerm,
  parsePerm,
  type XsChannel,
  type XsChannelSink,
  XsClient,
} from "../../src/xenstore/client.ts";
import type { XsWatchEvent } from "../../src/xenstore/client-watch.ts";
import { ConnectionClosedError, XsError, XsProtocolError } from "../../src/xenstore/errors.ts";
import { connectXenstore, xenstoredSocketPath } from "../../src/xenstore/transport-socket-client.ts";
import {
  encodePacket,
  joinStrings,
  PacketReader,
  splitStrings,
  utf8,
  type XsPacket,
  XsType,
} from "../../src/xenstore/wire.ts";
import type { RunningDaemon } from "../helpers/peers.ts";
import { REFERENCE, requireDaemon, SUBJECT, type Target } from "../helpers/subject.ts";

/** The daemons every client test runs against; drop SUBJECT to test the reference alone. */
const TARGETS: readonly Target[] = [REFERENCE, SUBJECT];

// ---------------------------------------------------------------------------------------
// A scriptable fake daemon on an in-memory channel

class FakeDaemon implements XsChannel {
  sink: XsChannelSink | null = null;
  readonly writes: Uint8Array[] = [];
  readonly requests: XsPacket[] = [];
  closed = false;
  readonly #reader = new PacketReader();
  #waiters: (() => void)[] = [];

  attach(sink: XsChannelSink): void {
    this.sink = sink;
  }

  write(bytes: Uint8Array): void {
    this.writes.push(bytes.slice());
    this.requests.push(...this.#reader.push(bytes));
    for (const w of this.#waiters.splice(0)) w();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sink?.closed();
  }

  /** Resolves once `n` requests in all have arrived. */
  async received(n: number): Promise<XsPacket[]> {
    while (this.requests.length < n) await new Promise<void>((r) => this.#waiters.push(r));
    return this.requests;
  }

  send(p: XsPacket, oneByteAtATime = false): void {
    const bytes = encodePacket(p);
    if (!oneByteAtATime) this.sink!.data(bytes);
    else for (let i = 0; i < bytes.byteLength; i++) this.sink!.data(bytes.subarray(i, i + 1));
  }

  reply(req: XsPacket, payload: Uint8Array | string, type: number = req.type): void {
    const body = typeof payload === "string" ? utf8(payload) : payload;
    this.send({ type, reqId: req.reqId, txId: req.txId, payload: body });
  }

  event(path: string, token: string): void {
    this.send({ type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload: joinStrings([path, token]) });
  }
}

function fakeClient(): { fake: FakeDaemon; client: XsClient } {
  const fake = new FakeDaemon();
  return { fake, client: new XsClient(fake) };
}

function strings(p: XsPacket): string[] {
  return splitStrings(p.payload).parts;
}

// ---------------------------------------------------------------------------------------

describe("parsePerm() and formatPerm()", () => {
  it("reads the four letters with a domid", () => {
    assert.deepEqual(parsePerm("n0"), { id: 0, read: false, write: false });
    assert.deepEqual(parsePerm("r5"), { id: 5, read: true, write: false });
    assert.deepEqual(parsePerm("w7"), { id: 7, read: false, write: true });
    assert.deepEqual(parsePerm("b9"), { id: 9, read: true, write: true });
  });

  it("formats what it parses back to the same string", () => {
    for (const s of ["n0", "r5", "w7", "b9", "b32752", "r4294967295"])
      assert.equal(formatPerm(parsePerm(s)), s);
  });

  it("rejects a bad letter, a missing or signed domid, and a domid over 32 bits", () => {
    for (const s of ["x1", "r", "", "r-1", "r+1", " r1", "r1 ", "R1", "r4294967296", "r0x10"]) {
      assert.throws(() => parsePerm(s), RangeError, s);
    }
  });
});

describe("xenstoredSocketPath()", () => {
  it("prefers an explicit path, then XENSTORED_PATH, then XENSTORED_RUNDIR/socket, then /var/run/xenstored/socket", () => {
    const env = { XENSTORED_PATH: "/p/sock", XENSTORED_RUNDIR: "/run/x" };
    assert.equal(xenstoredSocketPath("/explicit", env), "/explicit");
    assert.equal(xenstoredSocketPath(undefined, env), "/p/sock");
    assert.equal(xenstoredSocketPath(undefined, { XENSTORED_RUNDIR: "/run/x" }), "/run/x/socket");
    assert.equal(xenstoredSocketPath(undefined, {}), "/var/run/xenstored/socket");
  });
});

describe("XsClient on a scripted channel", () => {
  it("matches replies to requests by req_id when the daemon answers out of order", async () => {
    const { fake, client } = fakeClient();
    const a = client.read("/a");
    const b = client.read("/b");
    const [ra, rb] = await fake.received(2);
    assert.notEqual(ra!.reqId, rb!.reqId);
    fake.reply(rb!, "B");
    fake.reply(ra!, "A");
    assert.deepEqual(await Promise.all([a, b]), ["A", "B"]);
  });

  it("never uses req_id 0, which watch events carry", async () => {
    const { fake, client } = fakeClient();
    const ps = Array.from({ length: 5 }, (_, i) => client.read(`/k${i}`));
    for (const r of await fake.received(5)) {
      assert.notEqual(r.reqId, 0);
      fake.reply(r, "v");
    }
    await Promise.all(ps);
  });

  it("sends requests issued in the same tick in one write (corked)", async () => {
    const { fake, client } = fakeClient();
    const ps = Array.from({ length: 100 }, (_, i) => client.write(`/k${i}`, "v"));
    const reqs = await fake.received(100);
    assert.equal(fake.writes.length, 1);
    for (const r of reqs) fake.reply(r, "OK\0");
    await Promise.all(ps);
  });

  it("decodes replies fed whole and one byte at a time", async () => {
    const { fake, client } = fakeClient();
    const p = client.directory("/d");
    const [r] = await fake.received(1);
    fake.send({ type: XsType.DIRECTORY, reqId: r!.reqId, txId: 0, payload: joinStrings(["x", "y"]) }, true);
    assert.deepEqual(await p, ["x", "y"]);
  });

  it("encodes each request as path NUL, and WRITE as path NUL value with no NUL after it", async () => {
    const { fake, client } = fakeClient();
    const unanswered = [
      client.read("/a"),
      client.write("/b", new Uint8Array([1, 0, 2])),
      client.setPerms("/c", ["r1", { id: 2, read: false, write: true }]),
    ];
    const [read, write, perms] = await fake.received(3);
    assert.deepEqual([...read!.payload], [...utf8("/a\0")]);
    assert.deepEqual([...write!.payload], [...utf8("/b\0"), 1, 0, 2]);
    assert.deepEqual(strings(perms!), ["/c", "r1", "w2"]);
    fake.close();
    for (const p of unanswered) await assert.rejects(p, ConnectionClosedError);
  });

  it("raises XsError with the daemon's error name", async () => {
    const { fake, client } = fakeClient();
    const p = client.read("/missing");
    const [r] = await fake.received(1);
    fake.reply(r!, "ENOENT\0", XsType.ERROR);
    await assert.rejects(p, (e: unknown) => e instanceof XsError && e.errno === "ENOENT");
  });

  it("maps an error name it does not know to EINVAL, as Linux does", async () => {
    const { fake, client } = fakeClient();
    const p = client.write("/q", "v");
    const [r] = await fake.received(1);
    fake.reply(r!, "EQUOTA\0", XsType.ERROR);
    await assert.rejects(
      p,
      (e: unknown) => e instanceof XsError && e.errno === "EINVAL" && /EQUOTA/.test(e.message),
    );
  });

  it("rejects a payload over 4096 bytes with E2BIG without sending it", async () => {
    const { fake, client } = fakeClient();
    await assert.rejects(
      client.write("/big", new Uint8Array(4096)),
      (e: unknown) => e instanceof XsError && e.errno === "E2BIG",
    );
    await new Promise((r) => setImmediate(r));
    assert.equal(fake.requests.length, 0);
  });

  it("rejects a reply of the wrong type with XsProtocolError", async () => {
    const { fake, client } = fakeClient();
    const p = client.read("/a");
    const [r] = await fake.received(1);
    fake.reply(r!, "OK\0", XsType.WRITE);
    await assert.rejects(p, XsProtocolError);
  });

  it("fails every request in flight and every later one with ConnectionClosedError when the channel closes", async () => {
    const { fake, client } = fakeClient();
    const p = client.read("/a");
    await fake.received(1);
    fake.close();
    await assert.rejects(p, ConnectionClosedError);
    await assert.rejects(client.read("/b"), ConnectionClosedError);
    assert.ok((await client.closed) instanceof ConnectionClosedError);
  });

  it("closes the connection on a reply to no request", async () => {
    const { fake, client } = fakeClient();
    fake.send({ type: XsType.READ, reqId: 77, txId: 0, payload: utf8("x") });
    assert.ok((await client.closed) instanceof XsProtocolError);
    assert.equal(fake.closed, true);
  });

  it("falls back to DIRECTORY_PART on E2BIG and starts over when the generation changes", async () => {
    const { fake, client } = fakeClient();
    const p = client.directory("/big");
    const part = (r: XsPacket, body: string) => fake.reply(r, utf8(body));
    let [r] = await fake.received(1);
    fake.reply(r!, "E2BIG\0", XsType.ERROR);
    r = (await fake.received(2))[1];
    assert.deepEqual(strings(r!), ["/big", "0"]);
    part(r!, "7\0a\0bb\0");
    r = (await fake.received(3))[2];
    assert.deepEqual(strings(r!), ["/big", "5"]);
    part(r!, "8\0c\0\0"); // changed underneath: start over
    r = (await fake.received(4))[3];
    assert.deepEqual(strings(r!), ["/big", "0"]);
    part(r!, "8\0a\0bb\0c\0\0");
    assert.deepEqual(await p, ["a", "bb", "c"]);
  });

  it("routes watch events by token and unwatches when the loop is left", async () => {
    const { fake, client } = fakeClient();
    const w = client.watch("/w", "T");
    const [r] = await fake.received(1);
    assert.deepEqual(strings(r!), ["/w", "T"]);
    fake.reply(r!, "OK\0");
    fake.event("/w", "T");
    fake.event("/other", "not-ours");
    fake.event("/w/x", "T");
    const unwatched = fake.received(2).then((reqs) => {
      fake.reply(reqs[1]!, "OK\0");
      return reqs[1]!;
    });
    const seen: XsWatchEvent[] = [];
    for await (const ev of w) {
      seen.push(ev);
      if (seen.length === 2) break;
    }
    assert.deepEqual(seen, [
      { path: "/w", token: "T" },
      { path: "/w/x", token: "T" },
    ]);
    const unwatch = await unwatched;
    assert.equal(unwatch!.type, XsType.UNWATCH);
    assert.deepEqual(strings(unwatch!), ["/w", "T"]);
  });

  it("retries transaction(fn) when the commit says EAGAIN", async () => {
    const { fake, client } = fakeClient();
    let runs = 0;
    const p = client.transaction(async (tx) => {
      runs++;
      await tx.write("/k", "v");
      return runs;
    });
    const script = async (n: number, type: number, payload: string, errorType?: number) => {
      const r = (await fake.received(n))[n - 1]!;
      assert.equal(r.type, type);
      fake.reply(r, payload, errorType ?? r.type);
      return r;
    };
    await script(1, XsType.TRANSACTION_START, "5\0");
    const w1 = await script(2, XsType.WRITE, "OK\0");
    assert.equal(w1.txId, 5);
    await script(3, XsType.TRANSACTION_END, "EAGAIN\0", XsType.ERROR);
    await script(4, XsType.TRANSACTION_START, "6\0");
    await script(5, XsType.WRITE, "OK\0");
    const end = await script(6, XsType.TRANSACTION_END, "OK\0");
    assert.equal(end.txId, 6);
    assert.deepEqual(strings(end), ["T"]);
    assert.equal(await p, 2);
  });
});

// ---------------------------------------------------------------------------------------

for (const target of TARGETS) {
  describe(`XsClient against ${target.name}`, () => {
    let daemon: RunningDaemon | null = null;
    let xs: XsClient;
    let other: XsClient;

    before(async () => {
      if (!target.available()) return;
      daemon = await target.start();
      xs = await connectXenstore(daemon.socket);
      other = await connectXenstore(daemon.socket);
    });

    after(async () => {
      xs?.close();
      other?.close();
      await daemon?.stop();
    });

    it("writes, reads, lists and removes nodes", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await xs.write("/c/a/b", "hello");
      assert.equal(await xs.read("/c/a/b"), "hello");
      assert.equal(await xs.read("/c/a"), "");
      assert.deepEqual(await xs.directory("/c/a"), ["b"]);
      await xs.mkdir("/c/a/m");
      await xs.mkdir("/c/a/b"); // exists: kept as it is
      assert.equal(await xs.read("/c/a/b"), "hello");
      assert.deepEqual(await xs.directory("/c/a"), ["b", "m"]);
      await xs.rm("/c/a");
      assert.equal(await xs.tryRead("/c/a/b"), undefined);
      assert.equal(await xs.exists("/c"), true);
    });

    it("keeps binary values byte for byte", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      const v = Uint8Array.from({ length: 256 }, (_, i) => i);
      await xs.write("/c/bin", v);
      assert.deepEqual(new Uint8Array(await xs.readBytes("/c/bin")), v);
    });

    it("raises XsError ENOENT for a missing node and EINVAL for a bad path", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await assert.rejects(
        xs.read("/c/nothing"),
        (e: unknown) => e instanceof XsError && e.errno === "ENOENT",
      );
      await assert.rejects(
        xs.read("/c/bad..path"),
        (e: unknown) => e instanceof XsError && e.errno === "EINVAL",
      );
    });

    it("answers 200 requests in flight at once, each with its own reply", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await Promise.all(Array.from({ length: 200 }, (_, i) => xs.write(`/c/many/k${i}`, `v${i}`)));
      const got = await Promise.all(Array.from({ length: 200 }, (_, i) => xs.read(`/c/many/k${i}`)));
      assert.deepEqual(
        got,
        Array.from({ length: 200 }, (_, i) => `v${i}`),
      );
    });

    it("sets and gets permissions in letter and object form", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await xs.write("/c/p", "x");
      await xs.setPerms("/c/p", ["n5", { id: 0, read: true, write: false }, "w7", "b9"]);
      assert.deepEqual((await xs.getPerms("/c/p")).map(formatPerm), ["n5", "r0", "w7", "b9"]);
      await assert.rejects(
        xs.setPerms("/c/p", ["x1"]),
        (e: unknown) => e instanceof XsError && e.errno === "EINVAL",
      );
    });

    it("lists a directory in parts with directoryPart()", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await xs.write("/c/dp/aa", "");
      await xs.write("/c/dp/b", "");
      const whole = await xs.directoryPart("/c/dp", 0);
      assert.deepEqual(whole.names, ["aa", "b"]);
      assert.equal(whole.complete, true);
      const tail = await xs.directoryPart("/c/dp", 3);
      assert.deepEqual(tail, { generation: whole.generation, names: ["b"], complete: true });
    });

    it("lists a directory too big for one reply (E2BIG) in parts", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      const names = Array.from(
        { length: 120 },
        (_, i) => `child-with-a-long-name-${String(i).padStart(20, "0")}`,
      );
      await Promise.all(names.map((n) => xs.write(`/c/huge/${n}`, "")));
      assert.deepEqual(await xs.directory("/c/huge"), names);
    });

    it("delivers the initial watch event, then one per change, and unwatches on break", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      const w = xs.watch("/c/w", "tok");
      await w.ready;
      const seen: string[] = [];
      for await (const ev of w) {
        assert.equal(ev.token, "tok");
        seen.push(ev.path);
        if (seen.length === 1) await other.write("/c/w/x", "1");
        if (seen.length === 2) break;
      }
      assert.deepEqual(seen, ["/c/w", "/c/w/x"]);
      // Unwatched: the same path and token may be watched again.
      const again = xs.watch("/c/w", "tok");
      await again.ready;
      await again.close();
    });

    it("rejects a second watch with the same path and token with EEXIST", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      const w = xs.watch("/c/dup", "same");
      await w.ready;
      const dup = xs.watch("/c/dup", "same");
      await assert.rejects(dup.ready, (e: unknown) => e instanceof XsError && e.errno === "EEXIST");
      await assert.rejects(dup.next(), (e: unknown) => e instanceof XsError && e.errno === "EEXIST");
      await w.close();
    });

    it("merges several watched paths into one stream with add()", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      const w = xs.watch("/c/m1");
      await w.ready;
      await w.add("/c/m2");
      const first = [(await w.next()).value, (await w.next()).value].map((e) => (e as XsWatchEvent).path);
      assert.deepEqual(first, ["/c/m1", "/c/m2"]);
      await other.write("/c/m2/z", "");
      assert.equal(((await w.next()).value as XsWatchEvent).path, "/c/m2/z");
      await w.close();
      assert.equal((await w.next()).done, true);
    });

    it("commits a transaction and hides its writes until then", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await xs.write("/c/tx/v", "0");
      const tx = await xs.transactionStart();
      await tx.write("/c/tx/v", "1");
      assert.equal(await tx.read("/c/tx/v"), "1");
      assert.equal(await other.read("/c/tx/v"), "0");
      await tx.commit();
      assert.equal(await other.read("/c/tx/v"), "1");
    });

    it("runs transaction(fn) again after a conflicting change (EAGAIN)", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await xs.write("/c/rmw", "10");
      let runs = 0;
      const result = await xs.transaction(async (tx) => {
        runs++;
        const v = Number(await tx.read("/c/rmw"));
        if (runs === 1) await other.write("/c/rmw", "20"); // conflicts with our read
        await tx.write("/c/rmw", String(v + 1));
        return v;
      });
      assert.equal(runs, 2);
      assert.equal(result, 20);
      assert.equal(await xs.read("/c/rmw"), "21");
    });

    it("aborts transaction(fn) when fn throws, leaving nothing behind", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await assert.rejects(
        xs.transaction(async (tx) => {
          await tx.write("/c/aborted", "x");
          throw new Error("changed my mind");
        }),
        /changed my mind/,
      );
      assert.equal(await xs.tryRead("/c/aborted"), undefined);
    });

    it("wait() resolves once the predicate holds, re-evaluating it on watch events", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      let evaluations = 0;
      let looked!: () => void;
      const firstLook = new Promise<void>((r) => {
        looked = r;
      });
      const state = xs.wait(["/c/dev/state", "/c/dev/other"], async (c) => {
        evaluations++;
        const s = await c.tryRead("/c/dev/state");
        looked();
        return s === "4" ? s : undefined;
      });
      await firstLook; // the watches are in place: nothing written from now on is missed
      await other.write("/c/dev/state", "1");
      await other.write("/c/dev/state", "4");
      assert.equal(await state, "4");
      assert.ok(evaluations >= 2);
    });

    it("wait() rejects when its signal aborts", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      await assert.rejects(
        xs.wait("/c/never", (c) => c.tryRead("/c/never"), { signal: AbortSignal.timeout(100) }),
        (e: unknown) => e instanceof Error && e.name === "TimeoutError",
      );
    });

    it("answers domain requests: path, introduced, release of an unknown domain", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      assert.equal(await xs.getDomainPath(7), "/local/domain/7");
      assert.equal(await xs.isDomainIntroduced(0), true);
      await assert.rejects(xs.release(99), (e: unknown) => e instanceof XsError && e.errno === "ENOENT");
      await assert.rejects(
        xs.introduce(5, 1234, 0),
        (e: unknown) => e instanceof XsError && e.errno === "EINVAL",
      );
    });

    it("resetWatches() drops every watch, ending their iterators", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      const c = await connectXenstore(daemon.socket);
      const w = c.watch("/c/rw", "r");
      await w.ready;
      await c.resetWatches();
      const drained: unknown[] = [];
      for await (const ev of w) drained.push(ev); // ends: only what was queued before
      assert.ok(drained.length <= 1);
      const again = c.watch("/c/rw", "r"); // the daemon forgot it: no EEXIST
      await again.ready;
      c.close();
    });

    it("sends CONTROL with its arguments and returns the text reply", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      assert.match(await xs.control("help"), /^check\t/);
      await assert.rejects(
        xs.control("no-such-command"),
        (e: unknown) => e instanceof XsError && e.errno === "EINVAL",
      );
    });

    it("rejects what is in flight with ConnectionClosedError when the daemon goes away", async (t) => {
      if (!requireDaemon(t, target, daemon)) return;
      const d = await target.start();
      const c = await connectXenstore(d.socket);
      await c.write("/x", "1");
      const closed = c.closed;
      await d.stop();
      assert.ok((await closed) instanceof ConnectionClosedError);
      await assert.rejects(c.read("/x"), ConnectionClosedError);
    });
  });
}
