/**
 * The host's commands from the command line, from source: `xenlab demo` (what `npm start` runs)
 * and `xenlab up` driven by create/list/insmod/dmesg/rmmod/destroy, with Debian's xenstore-ls
 * on the host's xenstored socket.
 */
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { hasCommand, REPO, requirePeer, tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { MAIN, type RunningHost, startUp } from "../helpers/up.ts";

function xenlab(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runTool(process.execPath, ["--import", "tsx", MAIN, ...args], { env, timeoutMs: 60_000 });
}

describe("xenlab demo", () => {
  it("runs the alice_dev pair end to end and exits 0", { timeout: 90_000 }, async () => {
    const r = await xenlab(["demo", "--pings", "16"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /connected; 16 pings answered over the ring/);
    for (const line of [
      "Dom0: Alice_back inited!",
      "Dom0: Probe called.",
      "DomU: Alice_front inited!",
      "DomU: Probe called.",
      "DomU: Connected.",
      "DomU: 16 pings answered.",
    ]) {
      assert.match(r.stdout, new RegExp(`^\\[ *\\d+\\.\\d{6}\\] ${line.replace(/[.!]/g, "\\$&")}$`, "m"));
    }
    assert.match(r.stdout, /^\/local\/domain\/1\/device\/alice_dev\/0\/state = "4"$/m);
    assert.match(r.stdout, /^\/local\/domain\/0\/backend\/alice_dev\/1\/0\/state = "4"$/m);
  });
});

describe("xenlab up and the domain commands", () => {
  let up: RunningHost | undefined;
  let socket: string;

  before(async () => {
    socket = join(tempDir(), "socket");
    up = await startUp(socket);
  });
  after(async () => {
    await up?.stop();
  });

  it("lists dom0 and the default guest as xl list does", async () => {
    const r = await xenlab(["list", "--socket", socket]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], "Name                                        ID   Mem VCPUs\tState\tTime(s)");
    assert.match(lines[1]!, /^Domain-0 +0 +\d+ +2 +r----- +\d+\.\d$/);
    assert.match(lines[2]!, /^domU +1 +\d+ +1 +r----- +\d+\.\d$/);
  });

  it("insmod, dmesg -n, rmmod, create and destroy", async () => {
    const front = join(REPO, "examples/alice/alice_front.ts");
    assert.equal((await xenlab(["insmod", "-d", "1", front, "--socket", socket])).code, 0);
    const d = await xenlab(["dmesg", "-d", "1", "-n", "1", "--socket", socket]);
    assert.match(d.stdout, /^\[ *\d+\.\d{6}\] DomU: Alice_front inited!\n$/);
    assert.equal((await xenlab(["rmmod", "-d", "1", "alice_front", "--socket", socket])).code, 0);
    const c = await xenlab(["create", "extra", "--socket", socket]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /^extra created as domain 2\n$/);
    assert.equal((await xenlab(["destroy", "2", "--socket", socket])).code, 0);
    const bad = await xenlab(["destroy", "2", "--socket", socket]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /No domain 2/);
  });

  it("serves Debian's xenstore-ls on its xenstored socket", async (t) => {
    if (!requirePeer(t, "Debian's xenstore-utils", hasCommand("xenstore-ls"))) return;
    const r = await runTool("xenstore-ls", ["-f", "/local/domain/1"], { env: { XENSTORED_PATH: socket } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\/local\/domain\/1\/name = "domU"$/m);
  });

  it("insmod loads a TypeScript module from a folder without a package.json, or says in one line why not", async () => {
    const dir = tempDir("xenlab-bob-");
    const front = join(dir, "bob_front.ts");
    writeFileSync(
      front,
      `export function init(k: { printk(s: string): void }): void { k.printk("Bob_front inited!"); }\n`,
    );
    const ok = await xenlab(["insmod", "-d", "1", front, "--socket", socket]);
    assert.equal(ok.code, 0, ok.stderr);
    const d = await xenlab(["dmesg", "-d", "1", "-n", "1", "--socket", socket]);
    assert.match(d.stdout, /\] Bob_front inited!\n$/);
    const broken = join(dir, "broken.ts");
    writeFileSync(broken, `export const x: number = ;\nexport function init() {}\n`);
    const bad = await xenlab(["insmod", "-d", "1", broken, "--socket", socket]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, `xenlab insmod: Cannot load ${broken}: ${broken}:1:25: Unexpected ";"\n`);
    rmSync(dir, { recursive: true, force: true });
  });

  it("a command without a host says so", async () => {
    const r = await xenlab(["list", "--socket", join(tempDir(), "none")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /No xenlab host at .*: start one with 'xenlab up'/);
  });

  it("a --socket naming the control socket says which socket to pass", async () => {
    const dir = tempDir();
    for (const cmd of [["list"], ["vchan", "client", "read", "1", "p"]]) {
      const r = await xenlab([...cmd, "--socket", join(dir, "sock.ctl")]);
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr.split("\n")[0],
        `xenlab ${cmd[0]}: No xenlab host at ${join(dir, "sock.ctl.ctl")}: --socket is xenstored's socket, not the control socket; pass --socket ${join(dir, "sock")}`,
      );
    }
  });
});
