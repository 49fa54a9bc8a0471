/**
 * The seed, end to end: the alice_dev frontend in a guest and backend in dom0 log their init
 * lines; no probe runs until the seed's activate.sh, run unmodified with Debian's real
 * xenstore-write and xenstore-chmod against the host's xenstored socket, describes the device;
 * then both probes log.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { startHost, type TestHost } from "../helpers/host.ts";
import { hasCommand, REPO, requirePeer } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { untilLogged } from "../helpers/until.ts";

const FRONT = new URL("../../examples/alice/alice_front.ts", import.meta.url).href;
const BACK = new URL("../../examples/alice/alice_back.ts", import.meta.url).href;
const ACTIVATE = join(REPO, "examples/alice/activate.sh");

describe("alice_dev: the seed's driver pair and activate.sh", () => {
  let fx: TestHost;
  let host: Host;
  let socket: string;
  let domU: number;

  before(async () => {
    fx = await startHost();
    ({ host } = fx);
    socket = join(fx.dir, "socket");
    await host.listen(socket);
    domU = (await host.createDomain({ name: "alice" })).domid;
  });
  after(() => fx?.stop());

  it("loads both modules: init lines, and no probe without activation", async () => {
    assert.equal(await host.hv.insmod(domU, FRONT), "alice_front");
    assert.equal(await host.hv.insmod(0, BACK), "alice_back");
    await untilLogged(host, domU, /\] DomU: Alice_front inited!$/);
    await untilLogged(host, 0, /\] Dom0: Alice_back inited!$/);
    // Give the buses time to (wrongly) probe: nothing under device/ or backend/ yet.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!host.hv.dmesg(domU).some((l) => l.includes("Probe called")));
    assert.ok(!host.hv.dmesg(0).some((l) => l.includes("Probe called")));
  });

  it("activate.sh with Debian's tools makes both sides probe", async (t) => {
    if (
      !requirePeer(t, "Debian's xenstore-utils", hasCommand("xenstore-write") && hasCommand("xenstore-chmod"))
    )
      return;
    const r = await runTool("sh", [ACTIVATE], { env: { DOMU_ID: String(domU), XENSTORED_PATH: socket } });
    assert.equal(r.code, 0, `activate.sh failed: ${r.stderr}`);
    const [front] = await untilLogged(host, domU, /\] DomU: Probe called\.$/);
    const [back] = await untilLogged(host, 0, /\] Dom0: Probe called\.$/);
    assert.match(front, /^\[ *\d+\.\d{6}\] DomU: Probe called\.$/);
    assert.match(back, /^\[ *\d+\.\d{6}\] Dom0: Probe called\.$/);
    // The seed's keys, as its script wrote them.
    const be = `/local/domain/0/backend/alice_dev/${domU}/0`;
    assert.equal(await host.xs.read(`/local/domain/${domU}/device/alice_dev/0/backend`), be);
    assert.deepEqual(
      (await host.xs.getPerms(be)).map((p) => `${p.read ? "r" : "n"}${p.id}`),
      ["r0"],
    );
  });
});
