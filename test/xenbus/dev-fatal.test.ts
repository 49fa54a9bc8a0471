/**
 * devFatal reports the errno the driver names, as Linux's `xenbus_dev_fatal(dev, err, fmt)`:
 * the real blkback in dom0, facing a frontend that asks for a protocol it does not speak, leaves
 * ENOSYS in its error node (Linux writes the number, "38 unknown fe protocol …"; xenlab writes
 * the name) and goes Closing. A driver that passes a caught error instead gets the errno the
 * error carries (errnoOf), EIO when it carries none.
 */
import assert from "node:assert/strict";
import { openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { BLKBACK_MODULE } from "../../src/host/disk.ts";
import type { Host } from "../../src/host/host.ts";
import { GrantOpError, HypercallError } from "../../src/kernel/kernel.ts";
import { GNTST } from "../../src/xen/grant-table-abi.ts";
import { BACKEND_BUS } from "../../src/xenbus/bus-type.ts";
import { devicePaths, domainPath, errnoOf, errorPath, XenbusState } from "../../src/xenbus/xenbus.ts";
import { XsError } from "../../src/xenstore/errors.ts";
import { startHost, type TestHost } from "../helpers/host.ts";

describe("devFatal from a real backend", () => {
  let fx: TestHost;
  let host: Host;
  let dir: string;
  before(async () => {
    fx = await startHost();
    ({ host, dir } = fx);
    await host.hv.insmod(0, BLKBACK_MODULE);
  });
  after(() => fx?.stop());

  it("blkback meeting an unknown fe protocol writes ENOSYS to error/<nodename>/error", async () => {
    const { domid } = await host.createDomain({ name: "x86_32" });
    const image = join(dir, "disk.img");
    writeFileSync(image, new Uint8Array(1 << 20));
    const devid = 51712;
    const { frontend: fe, backend: be } = devicePaths("vbd", domid, devid);
    const state = (s: number) => String(s);
    // The disk as libxl attaches it, with no frontend driver in the guest: the test is the frontend.
    await host.xs.transaction(async (t) => {
      await t.write(fe, "");
      await t.setPerms(fe, [`n${domid}`, "r0"]);
      await t.write(be, "");
      await t.setPerms(be, ["n0", `r${domid}`]);
      for (const [k, v] of [
        ["frontend", fe],
        ["frontend-id", String(domid)],
        ["params", image],
        ["mode", "w"],
        ["online", "1"],
        ["state", state(XenbusState.Initialising)],
      ]) {
        await t.write(`${be}/${k}`, v!);
      }
      for (const [k, v] of [
        ["backend", be],
        ["backend-id", "0"],
        ["virtual-device", String(devid)],
        ["state", state(XenbusState.Initialising)],
      ]) {
        await t.write(`${fe}/${k}`, v!);
      }
    });
    const beState = async () => Number(await host.xs.tryRead(`${be}/state`));
    await host.xs.wait(`${be}/state`, async () => (await beState()) === XenbusState.InitWait, {
      signal: AbortSignal.timeout(10_000),
    });
    // A 32-bit guest's ring layout, which this blkback does not translate.
    await host.xs.transaction(async (t) => {
      await t.write(`${fe}/ring-ref`, "8");
      await t.write(`${fe}/event-channel`, "5");
      await t.write(`${fe}/protocol`, "x86_32-abi");
      await t.write(`${fe}/state`, state(XenbusState.Initialised));
    });
    await host.xs.wait(`${be}/state`, async () => (await beState()) === XenbusState.Closing, {
      signal: AbortSignal.timeout(10_000),
    });
    // blkback's error node: error/<nodename>/error in dom0's own home.
    const node = `${domainPath(0)}/${errorPath(BACKEND_BUS.nodename("vbd", domid, devid))}`;
    assert.equal(await host.xs.read(node), "ENOSYS unknown fe protocol x86_32-abi");
    await host.destroyDomain(domid);
  });
});

describe("errnoOf()", () => {
  it("takes an errno name as the errno", () => {
    for (const e of ["ENOSYS", "EINVAL", "ENOENT", "EACCES"]) assert.equal(errnoOf(e), e);
  });

  it("reports EIO for a string that names no errno", () => {
    for (const e of ["no", "", "ERR_INVALID_ARG_TYPE", "EOF"]) assert.equal(errnoOf(e), "EIO");
  });

  it("takes an XsError's errno", () => {
    assert.equal(errnoOf(new XsError("EACCES")), "EACCES");
  });

  it("names a failed hypercall's Xen errno", () => {
    assert.equal(errnoOf(new HypercallError("evtchn_alloc_unbound", 28)), "ENOSPC");
    assert.equal(errnoOf(new HypercallError("evtchn_bind_interdomain", 22)), "EINVAL");
    assert.equal(errnoOf(new HypercallError("mystery", 9999)), "EIO");
  });

  it("takes a Node system error's code when it is an errno", () => {
    let caught: unknown;
    try {
      openSync("/nonexistent/xenlab/disk.img", "r");
    } catch (e) {
      caught = e;
    }
    assert.equal(errnoOf(caught), "ENOENT");
    assert.equal(errnoOf(Object.assign(new Error("bad"), { code: "ERR_INVALID_ARG_TYPE" })), "EIO");
  });

  it("reports EIO for anything else: a plain Error, a grant status, no error at all", () => {
    assert.equal(errnoOf(new Error("ENOSYS")), "EIO");
    assert.equal(errnoOf(new GrantOpError("map of ref 8 of domain 1", GNTST.bad_gntref)), "EIO");
    for (const e of [undefined, null, 38, {}]) assert.equal(errnoOf(e), "EIO");
  });
});
