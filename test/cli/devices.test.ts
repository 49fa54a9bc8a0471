/**
 * `xenlab devices`: a running `xenlab up`, the seed's device described by its script, and the
 * line under it following the handshake as drivers arrive: no driver at either end, then the
 * frontend's missing, then the seed's backend that probes and stays Initialising; and
 * alice-connected's pair Connected. DOMAIN keeps the devices it is an end of, by name or domid.
 */
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { hasCommand, REPO, requirePeer, tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { until } from "../helpers/until.ts";
import { MAIN, type RunningHost, startUp } from "../helpers/up.ts";

const ACTIVATE = join(REPO, "examples/alice/activate.sh");

describe("xenlab devices", () => {
  let dir: string;
  let socket: string;
  let up: RunningHost;
  const xenlab = (...args: string[]) =>
    runTool(process.execPath, ["--import", "tsx", MAIN, ...args, "--socket", socket]);
  const devices = async (...args: string[]) => {
    const r = await xenlab("devices", ...args);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  /** The why-stuck line of the alice_dev device. */
  const aliceWhy = async () => {
    const lines = (await devices("domU")).split("\n");
    const row = lines.findIndex((l) => / alice_dev /.test(l));
    return row < 0 ? undefined : lines[row + 1]?.trim();
  };

  before(async () => {
    dir = tempDir("xenlab-devices-");
    socket = join(dir, "socket");
    up = await startUp(socket);
  });
  after(async () => {
    await up?.stop();
  });

  it("lists the primary console, which has no XenBus handshake", async () => {
    const out = await devices();
    assert.match(out, /^Frontend +Backend +Type +Dev +Frontend state +Backend state$/m);
    assert.match(out, /^domU \(1\) +Domain-0 \(0\) +console +0 +missing +Initialising \(1\)$/m);
    assert.match(
      out,
      /^ {2}the primary console: no XenBus handshake, xenconsoled serves ring-ref \d+, port \d+$/m,
    );
  });

  it("follows the seed's device as its drivers arrive", async (t) => {
    if (
      !requirePeer(t, "Debian's xenstore-utils", hasCommand("xenstore-write") && hasCommand("xenstore-chmod"))
    )
      return;
    const r = await runTool("sh", [ACTIVATE], { env: { DOMU_ID: "1", XENSTORED_PATH: socket } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      await aliceWhy(),
      "both Initialising: no driver for alice_dev in domain 0 (backend) nor in domain 1 (frontend)",
    );
    assert.equal((await xenlab("insmod", "-d", "0", resolve(REPO, "examples/alice/alice_back.ts"))).code, 0);
    assert.equal(await aliceWhy(), "frontend Initialising: no driver for alice_dev in domain 1");
    assert.equal((await xenlab("insmod", "-d", "1", resolve(REPO, "examples/alice/alice_front.ts"))).code, 0);
    // The seed's probes only log: both ends stay Initialising, and the line says whose move it is.
    assert.equal(
      await aliceWhy(),
      "backend Initialising: domain 0's alice_dev driver has not gone to InitWait (see its dmesg)",
    );
    assert.match(
      await devices("1"),
      /^domU \(1\) +Domain-0 \(0\) +alice_dev +0 +Initialising \(1\) +Initialising \(1\)$/m,
    );
  });

  it("says connected once alice-connected's pair has connected", async (t) => {
    if (
      !requirePeer(t, "Debian's xenstore-utils", hasCommand("xenstore-write") && hasCommand("xenstore-chmod"))
    )
      return;
    // dom0's alice_dev driver becomes alice-connected's backend; a second guest gets its frontend.
    assert.equal((await xenlab("rmmod", "-d", "0", "alice_back")).code, 0);
    assert.equal((await xenlab("create", "carol")).code, 0);
    const domid = /^carol +(\d+) /m.exec((await xenlab("list")).stdout)?.[1];
    assert.ok(domid !== undefined);
    for (const [d, f] of [
      ["0", "examples/alice-connected/alice_back.ts"],
      [domid, "examples/alice-connected/alice_front.ts"],
    ] as const) {
      const r = await xenlab("insmod", "-d", d, resolve(REPO, f));
      assert.equal(r.code, 0, r.stderr);
    }
    // The seed's script leaves the frontend directory dom0's, so a frontend that publishes a ring
    // gets EACCES; libxl gives the guest its directory first (n<domid>, r0), and so does this.
    const fe = `/local/domain/${domid}/device/alice_dev/0`;
    const env = { XENSTORED_PATH: socket };
    assert.equal((await runTool("xenstore-write", [fe, ""], { env })).code, 0);
    assert.equal((await runTool("xenstore-chmod", [fe, `n${domid}`, "r0"], { env })).code, 0);
    const r = await runTool("sh", [ACTIVATE], { env: { DOMU_ID: domid, ...env } });
    assert.equal(r.code, 0, r.stderr);
    let out = "";
    await until(
      "carol's alice_dev to connect",
      async () => {
        out = await devices("carol");
        return /\n {2}connected\n/.test(out);
      },
      { detail: () => out },
    );
    assert.match(
      out,
      new RegExp(
        `^carol \\(${domid}\\) +Domain-0 \\(0\\) +alice_dev +0 +Connected \\(4\\) +Connected \\(4\\)$`,
        "m",
      ),
    );
  });

  it("refuses an unknown domain in one line", async () => {
    const r = await xenlab("devices", "nosuch");
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "nosuch is an invalid domain identifier (rc=-6)\n");
  });
});
