/**
 * vchan between domains of a running host: the server in one domain, the client in another, each
 * with the `xen_vchan` module; streams checked by SHA-256 end to end (guest ↔ guest, guest ↔
 * dom0, in-page and multi-page rings), a peer that closes or dies noticed through the unmap
 * notifications, and the setup errors.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { vchanCall, vchanPath } from "../../src/host/vchan.ts";
import { joinStrings, XsType } from "../../src/xenstore/wire.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";

interface Stream {
  bytes: number;
  sha256: string;
  seconds: number;
}

describe("vchan between domains", () => {
  let fx: GuestHost;
  let host: Host;
  let a: number;
  let b: number;
  let c: number;
  let port = 1;

  before(async () => {
    fx = await startHost({ guest: { name: "a", maxPages: 2048 }, dom0: { maxPages: 4096 } });
    host = fx.host;
    a = fx.domU;
    b = (await host.createDomain({ name: "b", maxPages: 2048 })).domid;
    c = (await host.createDomain({ name: "c", maxPages: 256 })).domid;
  });
  after(() => fx?.stop());

  const call = (d: number, cmd: string, arg?: unknown) => vchanCall(host, d, cmd, arg);

  async function pair(srv: number, cli: number, leftMin = 0, rightMin = 0) {
    const path = vchanPath(srv, cli, port++);
    const s = (await call(srv, "server", { peer: cli, path, leftMin, rightMin })) as { id: number };
    const k = (await call(cli, "client", { peer: srv, path })) as { id: number };
    await call(srv, "connected", { id: s.id });
    return { path, s: s.id, c: k.id };
  }

  async function stream(
    from: number,
    fromId: number,
    to: number,
    toId: number,
    bytes: number,
    chunk: number,
  ) {
    const drained = call(to, "drain", { id: toId, chunk: 7919 }) as Promise<Stream>;
    const pumped = (await call(from, "pump", { id: fromId, bytes, chunk, seed: bytes })) as Stream;
    await call(from, "close", { id: fromId });
    const got = await drained;
    assert.equal(got.bytes, bytes);
    assert.equal(got.sha256, pumped.sha256);
  }

  it("carries a stream from a client guest to a server guest intact (in-page rings)", async () => {
    const p = await pair(a, b);
    await stream(b, p.c, a, p.s, 3_000_000, 5000);
    await call(a, "close", { id: p.s });
    assert.equal(await host.xs.tryRead(`${p.path}/ring-ref`), undefined, "the server removes its keys");
  });

  it("carries a stream from a server guest to a client guest over multi-page rings", async () => {
    const p = await pair(a, b, 8192, 65536);
    await stream(a, p.s, b, p.c, 5_000_000, 65536);
    await call(b, "close", { id: p.c });
  });

  it("carries streams both ways between a guest and dom0 (1 MiB rings)", async () => {
    const p = await pair(0, a, 1 << 20, 1 << 20);
    await stream(0, p.s, a, p.c, 4_000_000, 100_000);
    await call(a, "close", { id: p.c });
    const q = await pair(0, a, 1 << 20, 1 << 20);
    await stream(a, q.c, 0, q.s, 4_000_000, 3);
    await call(0, "close", { id: q.s });
  });

  it("lets the reader take what was written before the writer closed", async () => {
    const p = await pair(a, b);
    await call(b, "write", { id: p.c, data: new TextEncoder().encode("last words") });
    await call(b, "close", { id: p.c });
    const got = (await call(a, "read", { id: p.s, max: 100 })) as Uint8Array;
    assert.equal(new TextDecoder().decode(got), "last words");
    assert.equal(((await call(a, "read", { id: p.s })) as Uint8Array).length, 0, "then end of stream");
    await call(a, "close", { id: p.s });
  });

  it("notices a client whose domain dies: a blocked read ends, a write fails", async () => {
    const d = (await host.createDomain({ name: "doomed-client", maxPages: 256 })).domid;
    const p = await pair(a, d);
    const reading = call(a, "read", { id: p.s, timeoutMs: 10_000 }) as Promise<Uint8Array>;
    await host.hv.destroy(d);
    assert.equal((await reading).length, 0);
    await assert.rejects(call(a, "write", { id: p.s, data: new Uint8Array(10) }), /the peer is gone/);
    const list = (await call(a, "list")) as { id: number; open: number }[];
    assert.equal(list.find((v) => v.id === p.s)?.open, 0);
    await call(a, "close", { id: p.s });
  });

  it("notices a server whose domain dies", async () => {
    const d = (await host.createDomain({ name: "doomed-server", maxPages: 256 })).domid;
    const p = await pair(d, b, 8192, 8192);
    const reading = call(b, "read", { id: p.c, timeoutMs: 10_000 }) as Promise<Uint8Array>;
    await host.hv.destroy(d);
    assert.equal((await reading).length, 0);
    await call(b, "close", { id: p.c });
  });

  it("names the key it waited for when no server is there, after the timeout", async () => {
    const path = vchanPath(a, b, 999);
    await assert.rejects(
      call(b, "client", { peer: a, path, timeoutMs: 200 }),
      new RegExp(`within 200 ms: domain ${b} may not read ${path}/ring-ref \\(EACCES\\)`),
    );
  });

  it("names the key a third domain may not read", async () => {
    const p = await pair(a, b);
    await assert.rejects(
      call(c, "client", { peer: a, path: p.path, timeoutMs: 300 }),
      /may not read .*ring-ref \(EACCES\): it is missing, or the server was opened for another peer/,
    );
    await call(b, "close", { id: p.c });
    await call(a, "close", { id: p.s });
  });

  it("names the memory quota a server runs out of", async () => {
    await assert.rejects(
      call(c, "server", { peer: a, path: vchanPath(c, a, 1), leftMin: 1 << 20, rightMin: 1 << 20 }),
      new RegExp(`domain ${c} is out of memory \\(ENOMEM, 256 pages\\)`),
    );
    // Nothing of the failed server is left: a smaller one fits.
    const s = (await call(c, "server", {
      peer: a,
      path: vchanPath(c, a, 2),
      leftMin: 65536,
      rightMin: 65536,
    })) as {
      id: number;
    };
    await call(c, "close", { id: s.id });
  });

  it("names the XenStore permission and quota a setup runs into", async () => {
    await assert.rejects(
      call(b, "server", { peer: a, path: vchanPath(a, b, 50) }),
      new RegExp(
        `domain ${b} may not write there \\(EACCES\\); a guest's server publishes under its own /local/domain/${b}/`,
      ),
    );
    // Domain c at its nodes quota (SET_QUOTA for it alone): its server cannot publish.
    const setNodes = (n: number) =>
      host.xs.request(XsType.SET_QUOTA, 0, joinStrings([String(c), "nodes", String(n)]));
    await setNodes(1);
    try {
      await assert.rejects(
        call(c, "server", { peer: a, path: vchanPath(c, a, 51) }),
        new RegExp(
          `domain ${c} is at a XenStore quota \\(ENOSPC: nodes, node size or transactions\\); see 'xenstore-control quota ${c}'`,
        ),
      );
    } finally {
      await setNodes(1000);
    }
    const s = (await call(c, "server", { peer: a, path: vchanPath(c, a, 52) })) as { id: number };
    await call(c, "close", { id: s.id });
  });

  it("refuses a ring over 1 MiB, a loopback vchan, and a gref of 0", async () => {
    await assert.rejects(
      call(a, "server", { peer: b, path: vchanPath(a, b, 77), leftMin: 2 << 20 }),
      /largest is 1048576/,
    );
    await assert.rejects(call(a, "server", { peer: a, path: vchanPath(a, a, 78) }), /loopback/);
    const path = `/local/domain/${b}/data/vchan/${a}/bad`;
    await host.xs.write(`${path}/ring-ref`, "0");
    await host.xs.write(`${path}/event-channel`, "5");
    await host.xs.setPerms(path, [`n${b}`, `r${a}`]);
    const own = `/local/domain/${a}/data/vchan/${b}/missing`;
    await host.xs.write(`${own}/x`, "");
    await host.xs.setPerms(own, [`n${a}`]);
    await assert.rejects(
      call(a, "client", { peer: b, path: own, timeoutMs: 200 }),
      /missing\/ring-ref did not appear/,
    );
    await host.xs.setPerms(`${path}/ring-ref`, [`n${b}`, `r${a}`]);
    await host.xs.setPerms(`${path}/event-channel`, [`n${b}`, `r${a}`]);
    await assert.rejects(
      call(a, "client", { peer: b, path }),
      /ring-ref is "0", not a the server's control page gref/,
    );
  });
});
