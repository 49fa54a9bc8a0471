import assert from "node:assert/strict";
import { connect, createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import { Host } from "../../src/host/host.ts";
import { LiveServer, parseListen } from "../../src/host/live-server.ts";
import { createLogger } from "../../src/lib/log.ts";
import { until } from "../helpers/until.ts";

describe("parseListen()", () => {
  it("takes PORT (on 127.0.0.1), HOST:PORT and [IPv6]:PORT", () => {
    assert.deepEqual(parseListen("8080"), { host: "127.0.0.1", port: 8080 });
    assert.deepEqual(parseListen("0.0.0.0:80"), { host: "0.0.0.0", port: 80 });
    assert.deepEqual(parseListen("localhost:0"), { host: "localhost", port: 0 });
    assert.deepEqual(parseListen("[::1]:9000"), { host: "::1", port: 9000 });
  });

  it("refuses anything else with the form it wants", () => {
    for (const bad of ["", "http", "70000", ":80", "host:", "1.2.3.4:x", "a:b:c"]) {
      assert.throws(() => parseListen(bad), {
        message: `Invalid --http value '${bad}': expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080`,
      });
    }
  });
});

describe("LiveServer", () => {
  let host: Host;
  let srv: LiveServer;

  before(async () => {
    host = await Host.start({ log: createLogger("test", "silent") });
    srv = await LiveServer.start(host, { host: "127.0.0.1", port: 0 });
  });

  after(async () => {
    await srv.close();
    await host.stop();
  });

  it("says in one line that a port is in use and how to fix it", async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const port = (busy.address() as { port: number }).port;
    try {
      await assert.rejects(LiveServer.start(host, { host: "127.0.0.1", port }), {
        message: `Cannot listen on 127.0.0.1:${port}: the port is in use; pick another with --http PORT`,
      });
    } finally {
      busy.close();
    }
  });

  it("says in one line that a host is not local, or not known", async () => {
    await assert.rejects(LiveServer.start(host, { host: "192.0.2.1", port: 0 }), {
      message: "Cannot listen on 192.0.2.1:0: no such local address; use 127.0.0.1 or 0.0.0.0",
    });
    await assert.rejects(LiveServer.start(host, { host: "nosuch.invalid", port: 8080 }), {
      message:
        "Cannot listen on nosuch.invalid:8080: no host 'nosuch.invalid' is known; use 127.0.0.1 or 0.0.0.0",
    });
  });

  it("stops writing to a viewer that does not read, holds a bounded queue, and resyncs it once it reads", async () => {
    const port = Number(new URL(srv.url).port);
    const sock = connect(port, "127.0.0.1");
    await new Promise<void>((r) => sock.once("connect", () => r()));
    sock.write(`GET /events?token=${srv.token} HTTP/1.1\r\nHost: x\r\n\r\n`);
    sock.pause();
    // Big values make every snapshot large: the socket's buffers fill within a few ticks.
    const big = "x".repeat(3000);
    let i = 0;
    await until(
      "the viewer to fall behind",
      async () => {
        for (let k = 0; k < 50; k++) await host.xs.write(`/big/n${k}`, `${big}${i++}`);
        return srv.stats.behind === 1;
      },
      { ms: 60_000, every: 100 },
    );
    const queued = srv.stats.queuedBytes;
    // More changes while it is behind add nothing to its queue.
    for (let n = 0; n < 5; n++) {
      for (let k = 0; k < 50; k++) await host.xs.write(`/big/n${k}`, `${big}${i++}`);
      await new Promise((r) => setTimeout(r, 150));
    }
    assert.equal(srv.stats.queuedBytes, queued);
    let got = "";
    sock.on("data", (d: Buffer) => {
      got = (got + d.toString("latin1")).slice(-200_000);
    });
    sock.resume();
    await until("a resync", () => srv.stats.resyncs >= 1 && srv.stats.behind === 0, { ms: 60_000 });
    await until("a fresh state after the resync", () => got.includes("event: state"), { ms: 20_000 });
    sock.destroy();
  });
});
