/**
 * `xenlab xenstored dump FILE` and `xenlab xenstored --load FILE` as a user meets them: a dump
 * of a running daemon starts another that reads the same, and every mistake is one line that
 * names the cause and the fix, with no stack trace.
 */
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { connectXenstore } from "../../src/xenstore/transport-socket-client.ts";
import { startXenlab, tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { MAIN, startUp } from "../helpers/up.ts";

function xenlab(args: string[]) {
  return runTool(process.execPath, ["--import", "tsx", MAIN, ...args], { timeoutMs: 60_000 });
}

function oneLine(r: { code: number | null; stderr: string }, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
}

describe("xenlab xenstored dump / --load", () => {
  it("a dump of a running daemon starts another that reads the same", async () => {
    const dir = tempDir("xenlab-xsmig-cli-");
    const a = await startXenlab();
    try {
      const c = await connectXenstore(a.socket);
      await c.introduce(7, 0x1007, 9);
      await c.write("/local/domain/7/name", "guest7");
      await c.setPerms("/local/domain/7", ["n7", "r0"]);
      c.close();
      const file = join(dir, "dump");
      const r = await xenlab(["xenstored", "dump", "--socket", a.socket, file]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), file);
      const b = await startXenlab(["--load", file]);
      try {
        const bc = await connectXenstore(b.socket);
        assert.equal(await bc.read("/local/domain/7/name"), "guest7");
        assert.deepEqual(
          (await bc.getPerms("/local/domain/7")).map((p) => [p.id, p.read, p.write]),
          [
            [7, false, false],
            [0, true, false],
          ],
        );
        assert.equal(await bc.isDomainIntroduced(7), true);
        bc.close();
        assert.match(b.stderr(), /loaded 7 nodes, 1 domains and 0 watches/);
      } finally {
        await b.stop();
      }
    } finally {
      await a.stop();
    }
  });

  it("says in one line what is wrong with the file given to --load", async () => {
    const dir = tempDir("xenlab-xsmig-cli-");
    const socket = join(dir, "socket");
    oneLine(
      await xenlab(["xenstored", "--socket", socket, "--load", join(dir, "missing")]),
      1,
      /^xenlab xenstored: cannot load .*missing: no such file; give --load a dump written by 'xenlab xenstored dump'/,
    );
    const text = join(dir, "text");
    writeFileSync(text, "hello, world\n");
    oneLine(
      await xenlab(["xenstored", "--socket", socket, "--load", text]),
      1,
      /cannot load .*text: Not a XenStore migration stream: it starts with "hello, w", not "xenstore"; give/,
    );
    const cut = join(dir, "cut");
    writeFileSync(cut, Buffer.concat([Buffer.from("xenstore"), Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 1, 0])]));
    oneLine(
      await xenlab(["xenstored", "--socket", socket, "--load", cut]),
      1,
      /Truncated stream: record 1 at byte 16/,
    );
  });

  it("xenlab up's xenstored dumps too: the guest's nodes load into a lone daemon", async () => {
    const dir = tempDir("xenlab-xsmig-up-");
    const up = await startUp(join(dir, "socket"));
    const file = join(dir, "dump");
    try {
      const r = await xenlab(["xenstored", "dump", "--socket", join(dir, "socket"), file]);
      assert.equal(r.code, 0, r.stderr);
    } finally {
      await up.stop();
    }
    const b = await startXenlab(["--load", file]);
    try {
      const bc = await connectXenstore(b.socket);
      assert.equal(await bc.read("/local/domain/1/name"), "domU");
      assert.equal(await bc.isDomainIntroduced(1), true);
      bc.close();
    } finally {
      await b.stop();
    }
  });

  it("says in one line why the daemon cannot write FILE, and leaves no FILE.tmp behind", async () => {
    const dir = tempDir("xenlab-xsmig-cli-");
    const a = await startXenlab();
    try {
      // A directory: the temporary file was written, then the rename onto the directory failed.
      oneLine(
        await xenlab(["xenstored", "dump", "--socket", a.socket, dir]),
        1,
        /^xenlab xenstored dump: Cannot write the state to .*: it is a directory; name a new file in a directory the daemon can write$/,
      );
      assert.equal(existsSync(`${dir}.tmp`), false);
      oneLine(
        await xenlab(["xenstored", "dump", "--socket", a.socket, join(dir, "nodir", "dump")]),
        1,
        /^xenlab xenstored dump: Cannot write the state to .*nodir\/dump: its directory does not exist; name a new file/,
      );
    } finally {
      await a.stop();
    }
  });

  it("points from xenlab up's control socket to xenstored's at once, instead of waiting for a reply", async () => {
    const dir = tempDir("xenlab-xsmig-cli-");
    // Like the control socket: takes the connection, answers nothing to a XenStore packet.
    const silent = createServer(() => {});
    await new Promise<void>((done) => silent.listen(join(dir, "socket.ctl"), done));
    try {
      oneLine(
        await xenlab(["xenstored", "dump", "--socket", join(dir, "socket.ctl"), join(dir, "dump")]),
        2,
        /^xenlab xenstored dump: .*socket\.ctl is xenlab up's control socket, not xenstored's; pass --socket .*\/socket$/,
      );
    } finally {
      silent.close();
    }
  });

  it("says in one line when no daemon answers a dump request", async () => {
    const dir = tempDir("xenlab-xsmig-cli-");
    oneLine(
      await xenlab(["xenstored", "dump", "--socket", join(dir, "socket"), join(dir, "dump")]),
      1,
      /^xenlab xenstored dump: no xenstored answers on .*socket .*; start one or pass --socket$/,
    );
  });
});
