/**
 * XenBus rules from docs/xenbus.md that the alice examples do not show on their own: a probe
 * fails without the other end's details, callbacks of a bus never interleave, switchState writes
 * only on change, devFatal writes the error node and goes Closing.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import type { Kernel } from "../../src/kernel/kernel.ts";
import { XenbusDevice, XenbusState } from "../../src/xenbus/xenbus.ts";
import { startHost, type TestHost } from "../helpers/host.ts";
import { untilLogged } from "../helpers/until.ts";

const RULE = new URL("./fixtures/rule-front.ts", import.meta.url).href;

function rules(host: Host, domid: number): string[] {
  return host.hv
    .dmesg(domid)
    .filter((l) => l.includes("rule: ") || l.includes("xenbus: "))
    .map((l) => l.replace(/^\[[ \d.]+\] /, ""));
}

describe("XenBus rules", () => {
  let fx: TestHost;
  let host: Host;
  before(async () => {
    fx = await startHost();
    ({ host } = fx);
  });
  after(() => fx?.stop());

  it("a device without its backend's details is not probed", async () => {
    const { domid } = await host.createDomain({ name: "nobackend" });
    await host.hv.insmod(domid, RULE);
    const fe = `/local/domain/${domid}/device/rule_dev/0`;
    await host.xs.write(`${fe}/state`, "1");
    await untilLogged(host, domid, "talk_to_otherend failed", { ms: 5000 });
    assert.ok(!rules(host, domid).some((l) => l.startsWith("rule: probe")));
    await host.destroyDomain(domid);
  });

  it("a device whose state is not Initialising is ignored", async () => {
    const { domid } = await host.createDomain({ name: "late" });
    await host.hv.insmod(domid, RULE);
    await host.attachDevice("rule_dev", domid);
    await host.xs.write(`/local/domain/${domid}/device/rule_dev/0/state`, "1");
    await untilLogged(host, domid, "rule: probe", { ms: 5000 });
    // A second device that appears already Closed is not probed.
    await host.attachDevice("rule_dev", domid, 1);
    await host.xs.write(`/local/domain/${domid}/device/rule_dev/1/state`, "6");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(rules(host, domid).filter((l) => l.startsWith("rule: probe")).length, 1);
    await host.destroyDomain(domid);
  });

  it("callbacks run one at a time, each reading the state when it runs", async () => {
    const { domid } = await host.createDomain({ name: "serial" });
    await host.hv.insmod(domid, RULE);
    const be = `/local/domain/0/backend/rule_dev/${domid}/0`;
    await host.attachDevice("rule_dev", domid);
    await untilLogged(host, domid, "rule: otherend 1 end", { ms: 5000 });
    // A change while a callback is running: its callback starts only after that one ends.
    await host.xs.write(`${be}/state`, "2");
    await untilLogged(host, domid, "rule: otherend 2 start", { ms: 5000 });
    await host.xs.write(`${be}/state`, "5");
    await untilLogged(host, domid, "rule: otherend 5 end", { ms: 5000 });
    assert.deepEqual(
      rules(host, domid).filter((l) => l.startsWith("rule: otherend")),
      [
        "rule: otherend 1 start",
        "rule: otherend 1 end",
        "rule: otherend 2 start",
        "rule: otherend 2 end",
        "rule: otherend 5 start",
        "rule: otherend 5 end",
      ],
    );
    // Two writes in a row may reach the bus as one event (xenstored drops an event identical to
    // one still queued, as C xenstored does): the callback reads the state it finds, so a
    // driver may see a state skipped, never one out of order.
    await host.xs.write(`${be}/state`, "6");
    await host.xs.write(`${be}/state`, "5");
    await untilLogged(host, domid, "rule: otherend 5 end", { ms: 5000 });
    await new Promise((r) => setTimeout(r, 200));
    const after5 = rules(host, domid)
      .filter((l) => l.startsWith("rule: otherend"))
      .slice(6);
    assert.ok(
      after5.every((l) => /otherend [56] (start|end)$/.test(l)),
      after5.join("\n"),
    );
    await host.destroyDomain(domid);
  });

  it("switchState writes only when the state changes", async () => {
    let transactions = 0;
    const kernel = {
      xs: {
        transaction: async (fn: (t: unknown) => Promise<void>) => {
          transactions++;
          await fn({ read: async () => "1", write: async () => {} });
        },
      },
    } as unknown as Kernel;
    const dev = new XenbusDevice(
      kernel,
      "frontend",
      "device/x/0",
      { name: "x", ids: ["x"], probe() {} },
      0,
      "/b",
    );
    await dev.switchState(XenbusState.Initialised);
    await dev.switchState(XenbusState.Initialised);
    assert.equal(transactions, 1);
    await dev.switchState(XenbusState.Connected);
    assert.equal(transactions, 2);
    assert.equal(dev.state, XenbusState.Connected);
  });

  it("devFatal writes error/<nodename>/error and switches to Closing", async () => {
    const { domid } = await host.createDomain({ name: "fatal" });
    await host.hv.insmod(domid, RULE, ["fatal"]);
    await host.attachDevice("rule_dev", domid);
    const dom = `/local/domain/${domid}`;
    await host.xs.wait(
      `${dom}/device/rule_dev/0/state`,
      async (xs) => (await xs.read(`${dom}/device/rule_dev/0/state`)) === "5",
    );
    assert.equal(await host.xs.read(`${dom}/error/device/rule_dev/0/error`), "EIO testing devFatal");
    assert.equal(await host.xs.read(`${dom}/device/rule_dev/0/state`), "5");
    await host.destroyDomain(domid);
  });

  it("suspend and resume reach each device's driver; resume starts again from Initialising", async () => {
    const { domid } = await host.createDomain({ name: "saved" });
    await host.hv.insmod(domid, RULE);
    await host.attachDevice("rule_dev", domid);
    await host.xs.write(`/local/domain/0/backend/rule_dev/${domid}/0/state`, "2");
    await untilLogged(host, domid, "rule: otherend 2 end", { ms: 5000 });
    await host.hv.insmod(domid, new URL("./fixtures/bus-pm.ts", import.meta.url).href);
    await untilLogged(host, domid, "rule: resume device/rule_dev/0 state 1", { ms: 5000 });
    const log = rules(host, domid);
    assert.ok(
      log.indexOf("rule: suspend device/rule_dev/0") < log.indexOf("rule: resume device/rule_dev/0 state 1"),
    );
    await host.destroyDomain(domid);
  });

  it("removing the device directory runs remove", async () => {
    const { domid } = await host.createDomain({ name: "removed" });
    await host.hv.insmod(domid, RULE);
    await host.attachDevice("rule_dev", domid);
    await untilLogged(host, domid, "rule: probe", { ms: 5000 });
    await host.xs.rm(`/local/domain/${domid}/device/rule_dev/0`);
    await untilLogged(host, domid, "rule: remove device/rule_dev/0", { ms: 5000 });
    await host.destroyDomain(domid);
  });
});
