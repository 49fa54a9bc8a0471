/**
 * The block tools end to end, from the command line against `xenlab up` (from source): xl's
 * `block-attach` (the disk appears in the guest, in `xenstore-ls` with libxl's keys, in
 * `block-list`), `blk-cp` in and out (byte-exact round trip, the image holds the bytes at the
 * sector given, a partial last sector keeps the disk's bytes after it; several MiB through stdin
 * and stdout), xl's error messages, and `block-detach` leaving no XenStore node behind (libxl's
 * path clean-up). A user's mistake or a guest's failure is one line on stderr and exit 1, at once:
 * a guest too small for a disk (blkfront's ENOMEM), a missing or unwritable file, a directory, a
 * disk or domain that is not there. blk-cp prints nothing on success unless on a terminal, where
 * it shows a progress bar (run under script(1) for a pseudo-terminal).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { hasCommand, requirePeer, tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { MAIN, type RunningHost, runIn, startUp, TSX } from "../helpers/up.ts";

const MiB = 1 << 20;

describe("xenlab block-attach, blk-cp, block-list, block-detach against xenlab up", () => {
  let up: RunningHost | undefined;
  let dir: string;
  let socket: string;
  let image: string;
  let disk: Buffer;
  /** A xenlab command run in `dir` (relative paths resolve there). */
  const xenlab = (...args: string[]) => runIn(dir, [MAIN, ...args, "--socket", socket]);
  const xenlabIn = (stdin: Buffer, ...args: string[]) =>
    runIn(dir, [MAIN, ...args, "--socket", socket], stdin);
  /** One line on stderr, no stack trace, exit 1. */
  const oneLine = (r: { code: number | null; stderr: string }, re: RegExp): void => {
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.split("\n").length, 2, r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.match(r.stderr, re);
  };
  const xsls = (path: string) => runTool("xenstore-ls", ["-f", path], { env: { XENSTORED_PATH: socket } });

  before(async () => {
    dir = tempDir("xenlab-blk-tools-");
    socket = join(dir, "socket");
    image = join(dir, "disk.img");
    disk = randomBytes(2 * MiB);
    writeFileSync(image, disk);
    up = await startUp(socket);
  });
  after(async () => {
    await up?.stop();
  });

  it("refuses a spec as xl does, with xl's message and exit code 1", async () => {
    const r = await xenlab("block-attach", "1", "vdev=xvda");
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "command line: config parsing error in disk specification: no target specified (and device not removable) in `vdev=xvda'\n",
    );
    const q = await xenlab("block-attach", "1", "disk.img,qcow2,xvda");
    assert.equal(q.code, 1);
    assert.match(q.stderr, /format qcow2 is not served/);
    const n = await xenlab("block-attach", "nosuch", "vdev=xvda,target=disk.img");
    assert.equal(n.code, 1);
    assert.equal(n.stderr, "nosuch is an invalid domain identifier (rc=-6)\n");
  });

  it("attaches a relative target by domain name; the guest and XenStore see it", async () => {
    // Target first: xl would refuse it (target= takes the rest); block-attach moves it last.
    const r = await xenlab("block-attach", "domU", "target=disk.img,vdev=xvda,access=rw");
    assert.equal(r.code, 0, r.stderr);
    const info = await xenlab("dmesg", "-d", "1");
    assert.match(info.stdout, /xen-blkfront: xvda: 4096 sectors of 512 bytes/);
    const list = await xenlab("block-list", "1");
    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.split("\n");
    assert.equal(lines[0], "Vdev  BE  handle state evt-ch ring-ref BE-path                       ");
    assert.match(
      lines[1]!,
      /^51712 0 {3}1 {6}4 {5}\d+ +-?\d+ +\/local\/domain\/0\/backend\/vbd\/1\/51712 *$/,
    );
  });

  it("shows libxl's keys in xenstore-ls", async (t) => {
    if (!requirePeer(t, "Debian's xenstore-utils", hasCommand("xenstore-ls"))) return;
    const be = await xsls("/local/domain/0/backend/vbd/1/51712");
    assert.equal(be.code, 0, be.stderr);
    for (const [k, v] of [
      ["params", image],
      ["frontend", "/local/domain/1/device/vbd/51712"],
      ["frontend-id", "1"],
      ["online", "1"],
      ["dev", "xvda"],
      ["type", "phy"],
      ["mode", "w"],
      ["device-type", "disk"],
      ["state", "4"],
      ["sectors", "4096"],
    ]) {
      assert.match(be.stdout, new RegExp(`^/local/domain/0/backend/vbd/1/51712/${k} = "${v}"$`, "m"), k);
    }
    const fe = await xsls("/local/domain/1/device/vbd/51712");
    for (const [k, v] of [
      ["backend", "/local/domain/0/backend/vbd/1/51712"],
      ["backend-id", "0"],
      ["virtual-device", "51712"],
      ["device-type", "disk"],
      ["state", "4"],
    ]) {
      assert.match(fe.stdout, new RegExp(`^/local/domain/1/device/vbd/51712/${k} = "${v}"$`, "m"), k);
    }
  });

  it("blk-cp copies a file in and out byte-exact, and the image holds it", async () => {
    const file = randomBytes(MiB + 3 * 512 + 100); // 1 MiB chunk, whole sectors, a partial one
    writeFileSync(join(dir, "in.bin"), file);
    const cpIn = await xenlab("blk-cp", "in.bin", "1:xvda:16");
    assert.equal(cpIn.code, 0, cpIn.stderr);
    const cpOut = await xenlab("blk-cp", "--bytes", String(file.length), "1:xvda:16", "out.bin");
    assert.equal(cpOut.code, 0, cpOut.stderr);
    assert.ok(readFileSync(join(dir, "out.bin")).equals(file), "round trip differs");
    const img = readFileSync(image);
    const at = 16 * 512;
    assert.ok(img.subarray(at, at + file.length).equals(file), "the image does not hold the file");
    // What the copy did not cover is untouched: before it, and the rest of its last sector.
    assert.ok(img.subarray(0, at).equals(disk.subarray(0, at)));
    const end = at + file.length;
    const sectorEnd = Math.ceil(end / 512) * 512;
    assert.ok(img.subarray(end, sectorEnd).equals(disk.subarray(end, sectorEnd)));
    // Whole sectors out, by count: 3 sectors from sector 16.
    const three = await xenlab("blk-cp", "1:xvda:16+3", "three.bin");
    assert.equal(three.code, 0, three.stderr);
    assert.ok(readFileSync(join(dir, "three.bin")).equals(file.subarray(0, 3 * 512)));
  });

  it("blk-cp out to a stdout its reader closed ends with 141 (SIGPIPE's status), quietly", async () => {
    const cmd = `"${process.execPath}" --import "${TSX}" "${MAIN}" blk-cp 1:xvda - --socket "${socket}" | head -c 100 >/dev/null; echo "status \${PIPESTATUS[0]}" >&2`;
    const r = await runTool("bash", ["-c", cmd]);
    assert.equal(r.stderr, "status 141\n");
  });

  it("blk-cp --sync ends the copy with the guest's flush and holds the same bytes", async () => {
    const file = randomBytes(64 * 1024 + 7);
    writeFileSync(join(dir, "sync.bin"), file);
    const r = await xenlab("blk-cp", "--sync", "sync.bin", "1:xvda:3000");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      readFileSync(image)
        .subarray(3000 * 512, 3000 * 512 + file.length)
        .equals(file),
    );
  });

  it("blk-cp prints nothing off a terminal, and moves several MiB through stdin and stdout", async () => {
    // A guest of its own: blkfront's pool keeps the pages a copy took, and domU's 1 MiB has none
    // left for a second disk after the copies above.
    assert.equal((await xenlab("create", "big", "--memory", "4096")).code, 0);
    writeFileSync(join(dir, "big.img"), Buffer.alloc(8 * MiB));
    const a = await xenlab("block-attach", "big", "vdev=xvdc,target=big.img");
    assert.equal(a.code, 0, a.stderr);
    const file = randomBytes(5 * MiB + 100);
    const cpIn = await xenlabIn(file, "blk-cp", "-", "big:xvdc:1");
    assert.equal(cpIn.code, 0, cpIn.stderr);
    assert.equal(cpIn.stdout + cpIn.stderr, "");
    assert.ok(
      readFileSync(join(dir, "big.img"))
        .subarray(512, 512 + file.length)
        .equals(file),
    );
    const cpOut = await xenlab("blk-cp", "--bytes", String(file.length), "big:xvdc:1", "-");
    assert.equal(cpOut.code, 0, cpOut.stderr);
    assert.equal(cpOut.stderr, "");
    assert.ok(cpOut.out.equals(file), "round trip through stdout differs");
    const toFile = await xenlab("blk-cp", "big:xvdc", "all.bin");
    assert.equal(toFile.code, 0, toFile.stderr);
    assert.equal(toFile.stdout + toFile.stderr, "");
    assert.ok(readFileSync(join(dir, "all.bin")).equals(readFileSync(join(dir, "big.img"))));
  });

  it("blk-cp shows a progress bar on a terminal", async (t) => {
    if (!requirePeer(t, "script(1) from util-linux", hasCommand("script"))) return;
    const cmd = [process.execPath, "--import", TSX, MAIN, "blk-cp", "big:xvdc", "tty.bin", "--socket", socket]
      .map((a) => `'${a}'`)
      .join(" ");
    const r = await runTool("script", ["-qec", `cd '${dir}' && ${cmd}`, "/dev/null"]);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /100% \| 8\.0\/8\.0 MiB \| \d+ MB\/s/);
  });

  it("block-detach and destroy of the second guest leave domU's disk alone", async () => {
    assert.equal((await xenlab("block-detach", "big", "xvdc")).code, 0);
    const list = await xenlab("list");
    const id = /^big +(\d+) /m.exec(list.stdout)?.[1];
    assert.ok(id !== undefined, list.stdout);
    assert.equal((await xenlab("destroy", id)).code, 0);
    assert.match((await xenlab("block-list", "domU")).stdout, /^51712 /m);
  });

  it("blk-cp says what is wrong in one line: files, directories, domains, disks", async () => {
    oneLine(
      await xenlab("blk-cp", "domU:xvda", "/nonexistent/dir/x"),
      /^xenlab blk-cp: cannot create '\/nonexistent\/dir\/x': no such file or directory \(ENOENT\)$/m,
    );
    oneLine(await xenlab("blk-cp", "domU:xvda", dir), /^xenlab blk-cp: cannot create '.*': .* \(EISDIR\)$/m);
    oneLine(
      await xenlab("blk-cp", "no-such-file", "domU:xvda"),
      /^xenlab blk-cp: cannot open 'no-such-file': no such file or directory \(ENOENT\)$/m,
    );
    oneLine(
      await xenlab("blk-cp", dir, "domU:xvda"),
      /^xenlab blk-cp: '.*' is a directory: blk-cp copies a file$/m,
    );
    oneLine(
      await xenlab("blk-cp", "nosuch:xvda", "x.bin"),
      /^xenlab blk-cp: nosuch is an invalid domain identifier \(rc=-6\)$/m,
    );
    oneLine(await xenlab("blk-cp", "99:xvda", "x.bin"), /^xenlab blk-cp: No domain 99$/m);
    oneLine(
      await xenlab("blk-cp", "domU:xvdz", "x.bin"),
      /^xenlab blk-cp: domain domU \(1\): No disk xvdz connected$/m,
    );
    const usage = await xenlab("blk-cp", "domU:", "x.bin");
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^xenlab blk-cp: exactly one of SRC and DST must be DOMAIN:VDEV/);
  });

  it("block-attach to a guest too small for the disk fails at once with the guest's ENOMEM", async () => {
    const c = await xenlab("create", "tiny", "--memory", "8");
    assert.equal(c.code, 0, c.stderr);
    const r = await xenlab("block-attach", "tiny", "vdev=xvda,target=disk.img");
    oneLine(
      r,
      /^xenlab block-attach: Cannot attach disk xvda to domain tiny \(\d+\): the guest's blkfront failed: ENOMEM .*'xenlab create NAME --memory 1024'\)$/m,
    );
    assert.doesNotMatch(r.stderr, /timeout|not connected after/);
    const id = /^tiny +(\d+) /m.exec((await xenlab("list")).stdout)?.[1];
    assert.equal((await xenlab("destroy", id!)).code, 0);
  });

  it("blk-cp to a guest with a ring but no page for the pool fails with ENOMEM and the fix", async () => {
    // Three pages: the store page, the console's and the ring's; none left for blkfront's pool.
    assert.equal((await xenlab("create", "small", "--memory", "12")).code, 0);
    const a = await xenlab("block-attach", "small", "vdev=xvda,target=disk.img");
    assert.equal(a.code, 0, a.stderr);
    oneLine(
      await xenlab("blk-cp", "--bytes", "512", "small:xvda", "small.bin"),
      /^xenlab blk-cp: domain small \(\d+\): xvda: no memory for 1 pages \(ENOMEM\).*'xenlab create NAME --memory 1024'$/m,
    );
    assert.equal((await xenlab("block-detach", "small", "xvda")).code, 0);
    const id = /^small +(\d+) /m.exec((await xenlab("list")).stdout)?.[1];
    assert.equal((await xenlab("destroy", id!)).code, 0);
  });

  it("blk-cp refuses a copy past the end of the disk", async () => {
    writeFileSync(join(dir, "big.bin"), Buffer.alloc(4096));
    const r = await xenlab("blk-cp", "big.bin", "1:xvda:4095");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /does not fit in xvda/);
  });

  it("block-detach leaves no XenStore node, and says so for a disk that is not there", async () => {
    const r = await xenlab("block-detach", "1", "xvda");
    assert.equal(r.code, 0, r.stderr);
    const ls = await runTool(process.execPath, ["--import", "tsx", MAIN, "xs", "ls", "-f", "/"], {
      env: { XENSTORED_PATH: socket },
    });
    assert.equal(ls.code, 0, ls.stderr);
    assert.doesNotMatch(ls.stdout, /vbd/);
    const list = await xenlab("block-list", "1");
    assert.equal(list.stdout.split("\n").length, 2, list.stdout);
    const again = await xenlab("block-detach", "1", "xvda");
    assert.equal(again.code, 1);
    assert.equal(again.stderr, "Error: Device xvda not connected.\n");
  });

  it("block-detach -f removes a connected disk at once; the same vdev attaches again", async () => {
    assert.equal((await xenlab("block-attach", "1", "vdev=xvdb,target=disk.img")).code, 0);
    const f = await xenlab("block-detach", "-f", "1", "xvdb");
    assert.equal(f.code, 0, f.stderr);
    const ls = await runTool(process.execPath, ["--import", "tsx", MAIN, "xs", "ls", "-f", "/"], {
      env: { XENSTORED_PATH: socket },
    });
    assert.doesNotMatch(ls.stdout, /vbd/);
    const back = await xenlab("block-attach", "1", "vdev=xvdb,target=disk.img");
    assert.equal(back.code, 0, back.stderr);
    assert.equal((await xenlab("block-detach", "1", "xvdb")).code, 0);
  });
});
