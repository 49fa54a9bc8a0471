/**
 * `xenlab save`, `restore` and `migrate` from the command line, as a newcomer types them, between
 * two `xenlab up` hosts (one taking migrations on a TCP port too): each success says what it did
 * in one line, each mistake or failure is one line naming the cause (no stack), with xl's exit
 * codes (1 a failure, 2 a usage error).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { MAIN, type RunningHost, startUp } from "../helpers/up.ts";

function xenlab(args: string[]) {
  return runTool(process.execPath, ["--import", "tsx", MAIN, ...args], { timeoutMs: 90_000 });
}

/** A TCP port free now on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function oneLine(stderr: string, re: RegExp): void {
  assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
  assert.match(stderr.trimEnd(), re);
}

describe("xenlab save, restore and migrate", { timeout: 240_000 }, () => {
  const dir = tempDir("xenlab-save-cli-");
  const a = join(dir, "a.sock");
  const b = join(dir, "b.sock");
  let port = 0;
  let upA: RunningHost | undefined;
  let upB: RunningHost | undefined;

  before(async () => {
    port = await freePort();
    upA = await startUp(a);
    upB = await startUp(b, ["--no-domu", "--migrate-listen", `127.0.0.1:${port}`]);
  });
  after(async () => {
    await upA?.stop();
    await upB?.stop();
  });

  it("saves a guest to a file, and restores it under a new domid", async () => {
    const file = join(dir, "domU.save");
    let r = await xenlab(["save", "domU", file, "--socket", a]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Saved domU \(1\) to .*domU\.save: \d+ bytes; destroyed\n$/);
    r = await xenlab(["list", "--socket", a]);
    assert.doesNotMatch(r.stdout, /domU/);
    r = await xenlab(["restore", file, "--socket", a]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "Restored domU as domain 2; its devices are Connected\n");
    r = await xenlab(["restore", file, "--socket", a]);
    assert.equal(r.code, 1);
    oneLine(
      r.stderr,
      /^xenlab restore: Cannot restore domU: Domain with name "domU" already exists\. \(xenlab destroy it first\)$/,
    );
  });

  it("checkpoints with -c: the guest keeps running", async () => {
    const r = await xenlab(["save", "-c", "domU", join(dir, "ckpt.save"), "--socket", a]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Saved domU \(2\) to .*: \d+ bytes; paused [\d.]+ ms, still running\n$/);
    const l = await xenlab(["list", "domU", "--socket", a]);
    assert.match(l.stdout, /^domU +2 .* r-----/m);
  });

  it("answers a newcomer's mistakes in one line", async () => {
    let r = await xenlab(["save", "domU", "--socket", a]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^xenlab save: wrong number of arguments\nusage: xenlab save \[-c\]/);
    r = await xenlab(["save", "nosuch", join(dir, "x.save"), "--socket", a]);
    assert.equal(r.code, 1);
    oneLine(r.stderr, /^nosuch is an invalid domain identifier \(rc=-6\)$/);
    r = await xenlab(["save", "domU", join(dir, "no", "such", "dir.save"), "--socket", a]);
    assert.equal(r.code, 1);
    oneLine(r.stderr, /^xenlab save: Cannot save domU \(2\): cannot write in .*no\/such: ENOENT$/);
    r = await xenlab(["save", "0", join(dir, "dom0.save"), "--socket", a]);
    oneLine(r.stderr, /^xenlab save: Cannot save dom0$/);
    const junk = join(dir, "junk.save");
    writeFileSync(junk, "hello\n");
    r = await xenlab(["restore", junk, "--socket", a]);
    assert.equal(r.code, 1);
    oneLine(r.stderr, /^xenlab restore: Cannot restore: not a xenlab save file/);
    r = await xenlab(["restore", join(dir, "missing.save"), "--socket", a]);
    assert.equal(r.code, 1);
    oneLine(r.stderr, /^xenlab restore: .*missing\.save: no such file; give the file 'xenlab save' wrote$/);
    // The file is named before the host: without one, a missing file is still the mistake.
    r = await xenlab(["restore", join(dir, "missing.save"), "--socket", join(dir, "nohost", "socket")]);
    oneLine(r.stderr, /^xenlab restore: .*missing\.save: no such file/);
    r = await xenlab(["restore", dir, "--socket", a]);
    oneLine(r.stderr, /^xenlab restore: .* is a directory; give the file 'xenlab save' wrote$/);
    r = await xenlab(["migrate", "domU", "127.0.0.1:1", "--socket", a]);
    assert.equal(r.code, 1);
    oneLine(
      r.stderr,
      /^xenlab migrate: Cannot migrate domU \(2\) to 127\.0\.0\.1:1: no xenlab host answers at 127\.0\.0\.1:1/,
    );
    r = await xenlab(["migrate", "domU", join(dir, "nohost.sock"), "--socket", a]);
    oneLine(
      r.stderr,
      /^xenlab migrate: Cannot migrate domU \(2\) to .*nohost\.sock: no xenlab host answers at .*nohost\.sock\.ctl/,
    );
    // Still there, still running, after all of it.
    const l = await xenlab(["list", "domU", "--socket", a]);
    assert.match(l.stdout, /^domU +2 .* r-----/m);
  });

  it("migrates over TCP and back over the Unix socket, printing the downtime", async () => {
    let r = await xenlab(["migrate", "domU", `127.0.0.1:${port}`, "--socket", a]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^Migrated domU to 127\.0\.0\.1:\d+ as domain 1: \d+ bytes, downtime [\d.]+ ms\n$/,
    );
    assert.doesNotMatch((await xenlab(["list", "--socket", a])).stdout, /domU/);
    assert.match((await xenlab(["list", "--socket", b])).stdout, /^domU +1 /m);
    r = await xenlab(["migrate", "domU", a, "--socket", b]);
    assert.equal(r.code, 0, r.stderr);
    assert.match((await xenlab(["list", "--socket", a])).stdout, /^domU +\d+ .* r-----/m);
  });
});
