/**
 * `xenlab vchan` against a running `xenlab up`, as Xen's vchan-node tools are used: a server and
 * a client carry stdin of one to stdout of the other, between two guests and between dom0 and a
 * guest, byte for byte; the mistakes a newcomer makes get one line naming the cause and the fix.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { tempDir } from "../helpers/peers.ts";
import { MAIN, type RunningHost, runIn, startUp, TSX } from "../helpers/up.ts";

describe("xenlab vchan against xenlab up", () => {
  let up: RunningHost | undefined;
  let dir: string;
  let socket: string;
  const xenlab = (stdin: Buffer | undefined, ...args: string[]) =>
    runIn(dir, [MAIN, "vchan", ...args, "--socket", socket], stdin);
  const oneLine = (r: { code: number | null; stderr: string }, re: RegExp, code = 1): void => {
    assert.equal(r.code, code, r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.match(r.stderr.split("\n")[0]!, re);
  };

  before(async () => {
    dir = tempDir("xenlab-vchan-cli-");
    socket = join(dir, "socket");
    up = await startUp(socket);
    const r = await runIn(dir, [MAIN, "create", "g2", "--socket", socket]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await up?.stop();
  });

  it("carries stdin of a client in one guest to stdout of a server in another", async () => {
    const data = randomBytes(2_000_000);
    const server = xenlab(undefined, "server", "read", "g2", "data/vchan/2/5", "--in", "domU");
    const client = await xenlab(data, "client", "write", "domU", "data/vchan/2/5", "--in", "g2");
    const s = await server;
    assert.equal(client.code, 0, client.stderr);
    assert.equal(s.code, 0, s.stderr);
    assert.ok(s.out.equals(data), `got ${s.out.length} bytes of ${data.length}`);
  });

  it("carries a stream from dom0 to a guest, the server in dom0 with multi-page rings", async () => {
    const data = randomBytes(1_500_000);
    const server = xenlab(data, "server", "write", "1", "data/vchan/1/7", "--size", "4096,131072");
    const client = await xenlab(undefined, "client", "read", "0", "data/vchan/1/7", "--in", "1");
    const s = await server;
    assert.equal(s.code, 0, s.stderr);
    assert.equal(client.code, 0, client.stderr);
    assert.ok(client.out.equals(data), `got ${client.out.length} bytes of ${data.length}`);
  });

  it("says in one line when stdout cannot take the stream (a full disk), with no stack trace", async () => {
    const server = xenlab(randomBytes(1_000_000), "server", "write", "1", "data/vchan/1/11");
    // process.stdout on a file writes synchronously: /dev/full makes the write throw ENOSPC.
    const full = openSync("/dev/full", "w");
    const client = spawn(
      process.execPath,
      [
        "--import",
        TSX,
        MAIN,
        "vchan",
        "client",
        "read",
        "0",
        "data/vchan/1/11",
        "--in",
        "1",
        "--socket",
        socket,
      ],
      { cwd: dir, stdio: ["ignore", full, "pipe"] },
    );
    closeSync(full);
    let stderr = "";
    client.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const [code] = (await once(client, "close")) as [number | null];
    oneLine({ code, stderr }, /^xenlab vchan: cannot write '-': no space left on device \(ENOSPC\)$/);
    // The server may have handed all of it over before the client stopped: either way, no trace.
    assert.doesNotMatch((await server).stderr, /\n\s+at /);
  });

  it("says which key a client waited for, and which client a server waited for, after --timeout", async () => {
    oneLine(
      await xenlab(undefined, "client", "read", "1", "data/vchan/2/9", "--in", "2", "--timeout", "0.5"),
      /Cannot connect to vchan \/local\/domain\/1\/data\/vchan\/2\/9 within 500 ms: domain 2 may not read .*ring-ref \(EACCES\).*start the server for peer 2 first/,
    );
    oneLine(
      await xenlab(
        Buffer.from("x"),
        "server",
        "write",
        "2",
        "data/vchan/2/9",
        "--in",
        "1",
        "--timeout",
        "0.5",
      ),
      /No client connected to \/local\/domain\/1\/data\/vchan\/2\/9 within 0.5 s: start 'xenlab vchan client' in domain 2/,
    );
  });

  it("refuses a second server on a path already served, in one line naming the path and the fix", async () => {
    const xs = (...args: string[]) =>
      runIn(dir, [MAIN, "xs", ...args], undefined, { XENSTORED_PATH: socket });
    const first = xenlab(
      Buffer.from("first\n"),
      "server",
      "write",
      "1",
      "data/vchan/1/12",
      "--timeout",
      "20",
    );
    // The first server has the path once its keys are there.
    const key = "/local/domain/0/data/vchan/1/12/ring-ref";
    for (let i = 0; i < 200 && (await xs("exists", key)).code !== 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    oneLine(
      await xenlab(Buffer.from("second\n"), "server", "write", "1", "data/vchan/1/12"),
      /^xenlab vchan: Cannot serve vchan \/local\/domain\/0\/data\/vchan\/1\/12: a server in this domain already serves it; close that one first, or pick another PATH/,
    );
    // The first server still has the path: its client gets its bytes.
    const client = await xenlab(undefined, "client", "read", "0", "data/vchan/1/12", "--in", "1");
    assert.equal(client.code, 0, client.stderr);
    assert.equal(client.out.toString(), "first\n");
    assert.equal((await first).code, 0);
    // Keys left by another writer are named too, with the command that removes them.
    const w = await xs("write", "/local/domain/0/data/vchan/1/13/ring-ref", "7");
    assert.equal(w.code, 0, w.stderr);
    oneLine(
      await xenlab(Buffer.from("x"), "server", "write", "1", "data/vchan/1/13"),
      /ring-ref is already there, left by another writer; remove it \(xenstore-rm \/local\/domain\/0\/data\/vchan\/1\/13\) or pick another PATH/,
    );
  });

  it("names the memory a server lacks, and refuses what cannot work before asking the host", async () => {
    oneLine(
      await xenlab(Buffer.from("x"), "server", "write", "1", "data/vchan/1/8", "--size", "0,1048576"),
      /domain 0 is out of memory \(ENOMEM, 256 pages\); give it more memory or ask for smaller rings/,
    );
    oneLine(
      await xenlab(undefined, "client", "read", "nosuch", "p"),
      /nosuch is an invalid domain identifier/,
    );
    oneLine(await xenlab(undefined, "server", "read", "0", "p"), /PEER 0 is the domain the end runs in/, 2);
    oneLine(await xenlab(undefined, "server", "listen", "1", "p"), /'listen' is neither read nor write/, 2);
    oneLine(await xenlab(undefined, "server", "read", "1", "p", "--size", "2000000,0"), /at most 1048576/, 2);
    for (const bad of ["", "data/x y", "/abs//p"])
      oneLine(
        await xenlab(undefined, "client", "read", "1", bad),
        /PATH '.*' is not a XenStore path: .*e\.g\. data\/vchan\/1\/5/,
        2,
      );
    // Past Node's longest timer, the wait would end at once with "within 1000000000 s".
    oneLine(
      await xenlab(undefined, "server", "read", "1", "p", "--timeout", "1e9"),
      /--timeout needs a number of seconds above 0 and at most 2147483/,
      2,
    );
    const none = await runIn(dir, [
      MAIN,
      "vchan",
      "client",
      "read",
      "1",
      "p",
      "--socket",
      join(dir, "nothing"),
    ]);
    oneLine(none, /No xenlab host at .*nothing\.ctl: start one with 'xenlab up'/);
  });
});
