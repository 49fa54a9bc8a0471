/**
 * `xenlab create -f` with an xl config through a running host, and the domain commands by name:
 * the config's disk attached and its module loaded, KEY=VALUE overrides, xl's messages for a bad
 * config, a duplicate or empty name and an unknown domain, `list` as xl prints it, `lsmod`,
 * `dmesg -f` following a log until the domain goes, and on_crash.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { REPO, tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { until } from "../helpers/until.ts";
import { MAIN, type RunningHost, startUp } from "../helpers/up.ts";

/** tsx by its path: the commands run in the config's directory, outside the repository. */
const TSX = pathToFileURL(join(REPO, "node_modules/tsx/dist/loader.mjs")).href;

describe("xenlab create -f and the domain commands by name", () => {
  let up: RunningHost | undefined;
  let socket: string;
  let dir: string;
  const xenlab = (...args: string[]) =>
    runTool(process.execPath, ["--import", TSX, MAIN, ...args, "--socket", socket], {
      cwd: dir,
      timeoutMs: 60_000,
    });

  before(async () => {
    dir = tempDir("xenlab-create-");
    socket = join(dir, "socket");
    writeFileSync(join(dir, "disk.img"), Buffer.alloc(1 << 20));
    mkdirSync(join(dir, "mods"));
    copyFileSync(join(REPO, "test/cli/fixtures/crash.mjs"), join(dir, "mods/crash.mjs"));
    writeFileSync(
      join(dir, "guest.cfg"),
      [
        "# xl.cfg(5), as a newcomer writes it",
        'name = "dave"',
        "memory = 64; vcpus = 1",
        "disk = [ 'disk.img,raw,xvda,rw',",
        "       ]",
        'on_crash = "preserve"',
        `xenlab_modules = [ "${join(REPO, "examples/alice/alice_front.ts")} greeting=hi" ]`,
        'builder = "generic"   # a key xenlab does not know: ignored, as xl ignores it',
        "",
      ].join("\n"),
    );
    up = await startUp(socket);
  });
  after(async () => {
    await up?.stop();
  });

  it("creates a guest from its config, its disk attached and its module loaded", {
    timeout: 90_000,
  }, async () => {
    const c = await xenlab("create", "-f", "guest.cfg");
    assert.equal(c.code, 0, c.stderr);
    assert.equal(c.stderr, "Parsing config from guest.cfg\n");
    assert.match(c.stdout, /^dave created as domain \d+\n$/);
    const bl = await xenlab("block-list", "dave");
    assert.match(bl.stdout, /^51712 +0 +\d+ +4 /m, bl.stdout);
    const ls = await xenlab("lsmod", "-d", "dave");
    assert.equal(ls.stdout, "xen_blkfront\nalice_front\n");
    const d = await xenlab("dmesg", "-d", "dave");
    assert.match(d.stdout, /DomU: Alice_front inited!/);
  });

  it("lists the domains with xl's columns, Mem from memory=", async () => {
    const r = await xenlab("list");
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], "Name                                        ID   Mem VCPUs\tState\tTime(s)");
    assert.match(lines[1]!, /^Domain-0 {32} {5}0 +\d+ {5}2 {5}r----- {2} +\d+\.\d$/);
    const dave = lines.find((l) => l.startsWith("dave "));
    assert.match(dave ?? "", /^dave {36} +\d+ {4}64 {5}1 {5}r----- {2} +\d+\.\d$/);
    const one = await xenlab("list", "dave");
    assert.equal(one.stdout.split("\n").length, 3, one.stdout);
  });

  it("takes KEY=VALUE lines after the file, and refuses a duplicate or empty name as xl does", async () => {
    const dup = await xenlab("create", "guest.cfg", "disk=[]", "xenlab_modules=[]");
    assert.equal(dup.code, 3);
    assert.match(dup.stderr, /Domain with name "dave" already exists\.\n$/);
    const empty = await xenlab("create", "guest.cfg", 'name=""');
    assert.equal(empty.code, 1);
    assert.equal(empty.stderr, "Parsing config from guest.cfg\nDomain name must be specified.\n");
    const erin = await xenlab("create", "-q", "guest.cfg", "name='erin'", "disk=[]", "xenlab_modules=[]");
    assert.equal(erin.code, 0, erin.stderr);
    assert.match(erin.stdout, /^erin created as domain \d+\n$/);
  });

  it("prints libxlutil's message for a syntax error and xl's for a bad action, exit 1", async () => {
    writeFileSync(join(dir, "bad.cfg"), 'name = "x"\nmemory = 8\nvcpus x\n');
    const bad = await xenlab("create", "bad.cfg");
    assert.equal(bad.code, 1);
    assert.equal(
      bad.stderr,
      "Parsing config from bad.cfg\n" +
        "bad.cfg:3: config parsing error near `x': syntax error, unexpected IDENT, expecting += or '='\n" +
        "Failed to parse config: Invalid argument\n",
    );
    const act = await xenlab("create", "guest.cfg", 'on_crash="explode"');
    assert.equal(act.code, 1);
    assert.match(act.stderr, /^Unknown on_crash action "explode" specified$/m);
    const none = await xenlab("create", "-f", "none.cfg");
    assert.equal(none.code, 3);
    assert.equal(none.stderr, "Failed to read config file: none.cfg: No such file or directory\n");
  });

  it("follows a domain's log with dmesg -f until the domain is destroyed, by name", {
    timeout: 60_000,
  }, async () => {
    const follow = spawn(
      process.execPath,
      ["--import", TSX, MAIN, "dmesg", "-f", "-d", "erin", "--socket", socket],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    follow.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    const exited = new Promise<number | null>((r) => follow.once("exit", r));
    await until("the log so far", () => out.includes("Booting domain"), { ms: 30_000, every: 50 });
    const ins = await xenlab("insmod", "-d", "erin", join(REPO, "examples/alice/alice_front.ts"));
    assert.equal(ins.code, 0, ins.stderr);
    await until("the new line", () => out.includes("Alice_front inited!"), { ms: 30_000, every: 50 });
    assert.equal((await xenlab("destroy", "erin")).code, 0);
    assert.equal(await exited, 0);
  });

  it("names an unknown domain as xl does", async () => {
    for (const args of [
      ["destroy", "nobody"],
      ["dmesg", "-d", "nobody"],
      ["lsmod", "-d", "nobody"],
    ]) {
      const r = await xenlab(...args);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, "nobody is an invalid domain identifier (rc=-6)\n");
    }
    const usage = await xenlab("destroy");
    assert.equal(usage.code, 2);
  });

  it("keeps a crashed guest with on_crash=preserve and destroys it by default", {
    timeout: 60_000,
  }, async () => {
    const mods = 'xenlab_modules=["mods/crash.mjs"]';
    assert.equal((await xenlab("create", "-q", "guest.cfg", "name='kept'", "disk=[]", mods)).code, 0);
    assert.equal(
      (await xenlab("create", "-q", "guest.cfg", "name='gone'", "disk=[]", 'on_crash="destroy"', mods)).code,
      0,
    );
    let list = "";
    await until(
      "kept crashed and gone destroyed",
      async () => {
        list = (await xenlab("list")).stdout;
        return /^kept +\d+ +\d+ +1 +----c- /m.test(list) && !/^gone /m.test(list);
      },
      { ms: 30_000, every: 100, detail: () => list },
    );
    assert.equal((await xenlab("destroy", "kept")).code, 0);
  });
});
