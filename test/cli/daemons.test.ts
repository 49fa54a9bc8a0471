/**
 * Two daemons, one socket path: a second `xenlab xenstored` or `xenlab up` on a path a live daemon
 * serves refuses in one line and leaves the first serving; a stale socket file (nobody listens) is
 * replaced; a daemon that stops removes its socket file only if the file is still its own.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { MAIN, startUp } from "../helpers/up.ts";

function xenlab(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runTool(process.execPath, ["--import", "tsx", MAIN, ...args], { env, timeoutMs: 60_000 });
}

interface Daemon {
  readonly child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<Daemon>();
after(async () => {
  for (const d of running) await d.stop("SIGKILL");
});

/** `xenlab xenstored --socket SOCKET`, once it says it listens. */
async function xenstored(socket: string): Promise<Daemon> {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, "xenstored", "--socket", socket], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("listening on")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`xenstored exited with ${code}:\n${err}`)));
  });
  const d: Daemon = {
    child,
    stop: async (signal = "SIGTERM") => {
      running.delete(d);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill(signal);
      await exited;
    },
  };
  running.add(d);
  return d;
}

/** What `xenlab xs read KEY` on `socket` prints. */
async function read(socket: string, key: string): Promise<string> {
  const r = await xenlab(["xs", "read", key], { XENSTORED_PATH: socket });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

async function write(socket: string, key: string, value: string): Promise<void> {
  const r = await xenlab(["xs", "write", key, value], { XENSTORED_PATH: socket });
  assert.equal(r.code, 0, r.stderr);
}

/** The refusal: one line naming the path, that a daemon answers there, and the fix. */
function assertRefused(r: { code: number | null; stderr: string }, prog: string, path: string): void {
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr,
    `xenlab ${prog}: A daemon already answers on ${path}: stop it, or pass another --socket\n`,
  );
}

describe("xenlab xenstored on a socket path", () => {
  it("refuses a path a live daemon serves, and the first serves on", async () => {
    const socket = join(tempDir(), "socket");
    const first = await xenstored(socket);
    await write(socket, "/first", "alive");
    assertRefused(await xenlab(["xenstored", "--socket", socket]), "xenstored", socket);
    assert.equal(await read(socket, "/first"), "alive\n");
    await first.stop();
    assert.equal(existsSync(socket), false, "the first removes its own socket file");
  });

  it("xenlab demo --socket refuses it too", async () => {
    const socket = join(tempDir(), "socket");
    const first = await xenstored(socket);
    assertRefused(await xenlab(["demo", "--socket", socket]), "demo", socket);
    await write(socket, "/first", "alive");
    await first.stop();
  });

  it("replaces a stale socket file nobody listens on", async () => {
    const socket = join(tempDir(), "socket");
    const crashed = await xenstored(socket);
    await crashed.stop("SIGKILL");
    assert.equal(existsSync(socket), true, "a killed daemon leaves its socket file");
    const next = await xenstored(socket);
    await write(socket, "/next", "serving");
    assert.equal(await read(socket, "/next"), "serving\n");
    await next.stop();
  });

  it("leaves alone a path that is not a socket", async () => {
    const socket = join(tempDir(), "socket");
    writeFileSync(socket, "precious");
    const r = await xenlab(["xenstored", "--socket", socket]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `xenlab xenstored: Cannot listen on ${socket}: it exists and is not a socket\n`);
    assert.equal(existsSync(socket), true);
  });

  it("on exit removes only the socket file it created", async () => {
    const dir = tempDir();
    const socket = join(dir, "socket");
    const first = await xenstored(socket);
    // Someone moves the first's socket aside and a second daemon takes the path.
    renameSync(socket, join(dir, "moved"));
    const second = await xenstored(socket);
    await write(socket, "/second", "here");
    await first.stop();
    assert.equal(existsSync(socket), true, "the first leaves the second's socket file");
    assert.equal(existsSync(join(dir, "moved")), true, "and the file it no longer owns by its path");
    assert.equal(await read(socket, "/second"), "here\n");
    await second.stop();
    assert.equal(existsSync(socket), false);
  });
});

describe("xenlab up on a socket path", () => {
  it("refuses a host's socket, and the first host runs on", { timeout: 90_000 }, async () => {
    const socket = join(tempDir(), "socket");
    const first = await startUp(socket, ["--no-domu"]);
    try {
      assertRefused(await xenlab(["up", "--socket", socket, "--no-domu"]), "up", socket);
      const l = await xenlab(["list", "--socket", socket]);
      assert.equal(l.code, 0, l.stderr);
      assert.match(l.stdout, /^Domain-0 +0 /m);
      assert.equal(await read(socket, "/local/domain/0/name"), "Domain-0\n");
    } finally {
      await first.stop();
    }
    assert.equal(existsSync(socket), false);
    assert.equal(existsSync(`${socket}.ctl`), false);
  });

  it("refuses a control socket a daemon answers on, and creates nothing", async () => {
    const socket = join(tempDir(), "socket");
    const ctl = createServer((s) => s.end());
    await new Promise<void>((r) => ctl.listen(`${socket}.ctl`, r));
    try {
      assertRefused(await xenlab(["up", "--socket", socket, "--no-domu"]), "up", `${socket}.ctl`);
      assert.equal(existsSync(socket), false);
    } finally {
      await new Promise((r) => ctl.close(r));
    }
  });

  for (const [flag, what] of [
    ["--http", "listen"],
    ["--migrate-listen", "take migrations"],
  ] as const) {
    it(`names a taken ${flag} port in one line, before it boots anything`, async () => {
      const socket = join(tempDir(), "socket");
      const taken = createServer();
      await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
      const port = (taken.address() as { port: number }).port;
      try {
        const r = await xenlab(["up", "--socket", socket, flag, String(port)]);
        assert.equal(r.code, 1);
        assert.equal(
          r.stderr,
          `xenlab up: Cannot ${what} on 127.0.0.1:${port}: the port is in use; pick another with ${flag} PORT\n`,
        );
        assert.equal(r.stdout, "");
        assert.equal(existsSync(socket), false);
        assert.equal(existsSync(`${socket}.ctl`), false);
      } finally {
        await new Promise((r) => taken.close(r));
      }
    });
  }
});
