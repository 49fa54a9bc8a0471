/**
 * Xen's xenstore-control against the xenstored inside `xenlab up` (a Host), which starts with no
 * trace file, as C xenstored without -T: `memreport FILE` writes its report, `logfile FILE` opens
 * a trace in C's format, `log off` stops it.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connectXenstore } from "../../src/xenstore/transport-socket-client.ts";
import { startHost, type TestHost } from "../helpers/host.ts";
import { REFXS_BIN, REFXS_LIB, refxsAvailable, requirePeer } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";

describe("xenstore-control against a host's xenstored", () => {
  let fx: TestHost;
  let socket: string;
  const control = (...args: string[]) =>
    runTool(join(REFXS_BIN, "xenstore-control"), args, {
      env: { XENSTORED_PATH: socket, LD_LIBRARY_PATH: REFXS_LIB },
      timeoutMs: 10_000,
    });

  before(async () => {
    fx = await startHost();
    socket = join(fx.dir, "socket");
    await fx.host.listen(socket);
  });
  after(() => fx?.stop());

  it("writes memreport FILE, and traces to logfile FILE until log off", async (t) => {
    if (!requirePeer(t, "Xen's xenstore-control (../shared/refxs cache)", refxsAvailable())) return;
    const report = join(fx.dir, "mem.txt");
    const r = await control("memreport", report);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(report) && readFileSync(report, "utf8").length > 0, "the report is written");

    const trace = join(fx.dir, "trace.log");
    assert.equal((await control("logfile", trace)).code, 0);
    // Through the socket, as a tool's request: the host's own in-process client is not a connection.
    const xs = await connectXenstore(socket);
    await xs.write("/traced", "1");
    assert.match(readFileSync(trace, "utf8"), /^IN 0x[0-9a-f]+ \d{8} \d\d:\d\d:\d\d WRITE \(\/traced 1\)$/m);
    assert.equal((await control("log", "off")).code, 0);
    const before = readFileSync(trace, "utf8");
    await xs.write("/untraced", "1");
    xs.close();
    assert.equal(readFileSync(trace, "utf8"), before);
  });
});
