/**
 * `xenlab console` end to end, from source: a `xenlab up` host and the console command with a
 * pipe as its stdin (keystrokes in, the guest's answers out, Ctrl-] to detach, or the end of
 * input once the answers are out), by domid and by name, the log file in the default directory,
 * and the errors.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { MAIN, type RunningHost, startUp } from "../helpers/up.ts";

/** Polls `pred`; the limit only stops a hung test. */
async function waitFor(pred: () => boolean, what: string, limitMs = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > limitMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `xenlab console ARGS` with a pipe for stdin; its stdout and stderr as they come. */
function consoleCmd(args: string[]) {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, "console", ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const io = { out: "", err: "" };
  child.stdout!.on("data", (d: Buffer) => {
    io.out += d.toString("latin1");
  });
  child.stderr!.on("data", (d: Buffer) => {
    io.err += d.toString();
  });
  const exit = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, io, exit };
}

describe("xenlab console against xenlab up", () => {
  let up: RunningHost | undefined;
  let dir: string;
  let socket: string;

  before(async () => {
    dir = tempDir("xenlab-console-cli-");
    socket = join(dir, "socket");
    up = await startUp(socket);
  });
  after(async () => {
    await up?.stop();
  });

  it("attaches by domid: input reaches the guest's shell, its answer comes out, Ctrl-] detaches with 0", async () => {
    const c = consoleCmd(["1", "--socket", socket]);
    await waitFor(() => c.io.out.includes("root@domU:~# "), "the prompt");
    c.child.stdin!.write("echo console works\r");
    await waitFor(() => c.io.out.includes("echo console works\r\nconsole works\r\n"), "the answer");
    c.child.stdin!.write("\x1d");
    assert.equal(await c.exit, 0, c.io.err);
  });

  it("sends what comes before Ctrl-] in the same read, and the next client gets the answer it missed", async () => {
    const c = consoleCmd(["domU", "--socket", socket]);
    // Attached to a console already shown: Enter gets a fresh prompt.
    c.child.stdin!.write("\r");
    await waitFor(() => c.io.out.includes("root@domU:~# "), "the prompt");
    c.child.stdin!.write("xenstore-read domid\r\x1d");
    assert.equal(await c.exit, 0, c.io.err);
    const d = consoleCmd(["domU", "--socket", socket]);
    await waitFor(() => /xenstore-read domid\r\n1\r\n/.test(c.io.out + d.io.out), "the answer");
    d.child.stdin!.end();
    assert.equal(await d.exit, 0, d.io.err);
  });

  it("from a pipe, prints the answer to the last line before it detaches on the end of input", async () => {
    const made = await runTool(process.execPath, [
      "--import",
      "tsx",
      MAIN,
      "create",
      "carol",
      "--socket",
      socket,
    ]);
    assert.equal(made.code, 0, made.stderr);
    // As a user types it: echo 'uname -n' | xenlab console carol
    const r = await runTool(
      process.execPath,
      ["--import", "tsx", MAIN, "console", "carol", "--socket", socket],
      {
        input: "uname -n\n",
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /root@carol:~# uname -n\r\ncarol\r\n/);
    const gone = await runTool(process.execPath, [
      "--import",
      "tsx",
      MAIN,
      "destroy",
      "2",
      "--socket",
      socket,
    ]);
    assert.equal(gone.code, 0, gone.stderr);
  });

  it("logs the guest's console to <socket dir>/console/guest-domU.log", async () => {
    const log = join(dir, "console", "guest-domU.log");
    await waitFor(
      () => existsSync(log) && readFileSync(log, "latin1").includes("console works\r\n"),
      "the log",
    );
    assert.match(readFileSync(log, "latin1"), /^\[ *\d+\.\d{6}\] Booting domain 1 \(domU\)/);
  });

  it("says which domain it cannot attach to", async () => {
    for (const [args, msg] of [
      [["9"], /^xenlab console: No domain 9\n$/],
      [["nosuch"], /^xenlab console: No domain named 'nosuch'\n$/],
      [["0"], /^xenlab console: Domain 0's console is the host's log/],
    ] as const) {
      const c = consoleCmd([...args, "--socket", socket]);
      c.child.stdin!.end();
      assert.equal(await c.exit, 1, `${args}: ${c.io.err}`);
      assert.match(c.io.err, msg);
    }
    const none = consoleCmd(["1", "--socket", join(dir, "none")]);
    none.child.stdin!.end();
    assert.equal(await none.exit, 1);
    assert.match(none.io.err, /No xenlab host at .*: start one with 'xenlab up'/);
  });
});
