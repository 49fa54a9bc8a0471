/**
 * A restore onto a host whose dom0 lacks a device's backend driver (the newcomer's mistake when
 * moving a guest by file): the guest is restored and runs, and the command says so, then names the
 * device that did not connect, its state, and where to look.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { restoreFromFile, saveToFile } from "../../src/host/save-file.ts";
import { type GuestHost, startHost, type TestHost } from "../helpers/host.ts";
import { untilLogged } from "../helpers/until.ts";

const FRONT = new URL("../../examples/alice-connected/alice_front.ts", import.meta.url).href;
const BACK = new URL("../../examples/alice-connected/alice_back.ts", import.meta.url).href;

describe("restore where dom0 lacks the backend driver", () => {
  let a: GuestHost;
  let b: TestHost;
  before(async () => {
    a = await startHost({ guest: { name: "lonely" } });
    b = await startHost();
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
  });

  it("restores and runs the guest, and names the device left Initialising", async () => {
    await a.host.hv.insmod(0, BACK);
    await a.host.hv.insmod(a.domU, FRONT);
    await a.host.attachDevice("alice_dev", a.domU);
    await untilLogged(a.host, a.domU, "DomU: 8 pings answered.");
    const file = join(a.dir, "lonely.save");
    await saveToFile(a.host, a.domU, file);
    await assert.rejects(
      restoreFromFile(b.host, file, { connectTimeoutMs: 500 }),
      /^Error: Restored lonely as domain (\d+), but: Devices of domain \1 not Connected after 0\.5 s: alice_dev\/0 Initialising \(is each backend's driver loaded in dom0\? 'xenlab devices' says why\)$/,
    );
    const d = b.host.hv.list().find((x) => x.name === "lonely");
    assert.equal(d?.state, "running");
    // Loading the backend now is enough: the guest's frontend connects.
    await b.host.hv.insmod(0, BACK);
    await untilLogged(b.host, d!.domid, "DomU: Connected.");
  });
});
