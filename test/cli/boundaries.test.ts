/**
 * The command line at its edges, as a user meets it: every command's `--help`, a reader that
 * closes the pipe early, and the log lines on a terminal and off one.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { logFormat } from "../../src/lib/log.ts";
import { hasCommand, requirePeer, tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { MAIN, startUp } from "../helpers/up.ts";

function xenlab(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runTool(process.execPath, ["--import", "tsx", MAIN, ...args], { env, timeoutMs: 60_000 });
}

/** A shell line with `xenlab` standing for the command from source. */
function sh(line: string, env: NodeJS.ProcessEnv = {}) {
  const xenlab = `'${process.execPath}' --import tsx '${MAIN}'`;
  return runTool("bash", ["-c", line.replaceAll("xenlab ", `${xenlab} `)], { env, timeoutMs: 90_000 });
}

describe("xenlab <command> --help", () => {
  it("prints each command's usage on stdout and exits 0", { timeout: 120_000 }, async () => {
    const top = await xenlab(["--help"]);
    assert.equal(top.code, 0);
    const names = [...top.stdout.matchAll(/^ {2}(\S+) {2,}/gm)].map((m) => m[1]!);
    assert.ok(names.includes("xs") && names.includes("console"), top.stdout);
    for (const name of names) {
      const r = await xenlab([name, "--help"]);
      assert.equal(r.code, 0, `xenlab ${name} --help: ${r.stderr}`);
      assert.equal(r.stderr, "", `xenlab ${name} --help`);
      assert.match(r.stdout, new RegExp(`^usage: xenlab ${name} `), `xenlab ${name} --help`);
    }
  });

  it("xs --help lists the modes; a mode's -h stays the Xen tool's", async () => {
    const r = await xenlab(["xs", "--help"]);
    assert.equal(r.code, 0);
    for (const mode of ["read", "write", "ls", "rm", "chmod", "list", "exists", "watch", "mkdir"])
      assert.match(r.stdout, new RegExp(`^ {2}${mode} +\\[-h\\]`, "m"));
    const h = await xenlab(["xs", "read", "-h"]);
    assert.equal(h.code, 1);
    assert.match(h.stderr, /^xenstore-read: Usage: /);
  });
});

describe("a reader that closes the pipe", () => {
  it("xenlab demo | head -5 ends with 141 (SIGPIPE's status), quietly", { timeout: 90_000 }, async () => {
    const r = await sh(`xenlab demo | head -5; echo "status \${PIPESTATUS[0]}" >&2`);
    assert.equal(r.stdout.split("\n").length, 6, r.stdout);
    // 141 when the demo still writes after head has gone (SIGPIPE's status, as yes | head); 0
    // when it has written its last line into the pipe's buffer first, as any Unix tool. Either
    // way nothing else on stderr: no EPIPE stack trace. (It finished first once in CI.)
    assert.match(r.stderr, /^status (141|0)\n$/);
  });
});

/**
 * `xenlab up --no-domu` until it runs, then SIGTERM; what it wrote on stderr. With `pty`, under
 * script(1): stdout and stderr are one terminal, and that is what comes back.
 */
function upLog(args: string[], env: NodeJS.ProcessEnv, pty: boolean): Promise<string> {
  const socket = join(tempDir(), "socket");
  const cmd = [process.execPath, "--import", "tsx", MAIN, "up", "--socket", socket, "--no-domu", ...args];
  const child = pty
    ? spawn("script", ["-qec", cmd.map((a) => `'${a}'`).join(" "), "/dev/null"], {
        env: { ...process.env, ...env },
        stdio: ["pipe", "pipe", "pipe"],
      })
    : spawn(cmd[0]!, cmd.slice(1), { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  return new Promise((resolve) => {
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("running (pid")) child.kill("SIGTERM");
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.once("close", () => resolve(pty ? out : err));
  });
}

/** A log line's keys in order, duplicates kept (JSON.parse would keep only the last). */
function keys(line: string): string[] {
  return [...line.matchAll(/[{,]"([^"]+)":/g)].map((m) => m[1]!);
}

describe("logs", () => {
  it("logFormat(): the caller's choice, else XENLAB_LOG_FORMAT, else pretty on a terminal only", () => {
    assert.equal(logFormat(undefined, {}, true), "pretty");
    assert.equal(logFormat(undefined, {}, false), "json");
    assert.equal(logFormat(undefined, { XENLAB_LOG_FORMAT: "json" }, true), "json");
    assert.equal(logFormat(undefined, { XENLAB_LOG_FORMAT: "pretty" }, false), "pretty");
    assert.equal(logFormat("pretty", { XENLAB_LOG_FORMAT: "json" }, false), "pretty");
    assert.throws(() => logFormat("xml", {}, true), {
      name: "RangeError",
      message: "Unknown log format 'xml': use pretty or json",
    });
    assert.throws(() => logFormat(undefined, { XENLAB_LOG_FORMAT: "yaml" }, true), {
      message: "Unknown log format 'yaml' in XENLAB_LOG_FORMAT: use pretty or json",
    });
  });

  it("an unknown level or format is one line naming the ones there are", async () => {
    const level = await xenlab(["up", "--log-level", "loud"]);
    assert.equal(level.code, 2);
    assert.equal(
      level.stderr,
      "xenlab up: Unknown log level 'loud': use one of trace, debug, info, warn, error, fatal, silent\n",
    );
    const format = await xenlab(["xenstored", "--socket", join(tempDir(), "socket")], {
      XENLAB_LOG_FORMAT: "xml",
    });
    assert.equal(format.code, 2);
    assert.equal(
      format.stderr,
      "xenlab xenstored: Unknown log format 'xml' in XENLAB_LOG_FORMAT: use pretty or json\n",
    );
  });

  it("off a terminal: JSON lines, no key twice", { timeout: 60_000 }, async () => {
    const lines = (await upLog([], { XENLAB_LOG_FORMAT: "" }, false)).trim().split("\n");
    const created = lines.map((l) => JSON.parse(l)).find((r) => r.msg === "domain 0 (Domain-0) created");
    assert.deepEqual(
      { name: created?.name, domid: created?.domid, domain: created?.domain },
      { name: "xenlab-up", domid: 0, domain: "Domain-0" },
    );
    for (const l of lines) assert.equal(new Set(keys(l)).size, keys(l).length, l);
  });

  it("on a terminal: one readable line a record; --log-format json still JSON", {
    timeout: 60_000,
  }, async (t) => {
    if (!requirePeer(t, "script(1) from util-linux", hasCommand("script"))) return;
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's colour codes
    const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "").replaceAll("\r", "");
    const pretty = plain(await upLog([], { XENLAB_LOG_FORMAT: "" }, true));
    assert.match(
      pretty,
      /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(xenlab-up\): domain 0 \(Domain-0\) created {"domid":0,"domain":"Domain-0"}$/m,
    );
    const json = plain(await upLog(["--log-format", "json"], {}, true));
    assert.match(json, /^{"level":30,"time":\d+,"name":"xenlab-up","domid":0,"domain":"Domain-0",/m);
  });

  it("block-attach logs no error for a driver already loaded", { timeout: 90_000 }, async () => {
    const dir = tempDir();
    const socket = join(dir, "socket");
    writeFileSync(join(dir, "a.img"), Buffer.alloc(1 << 20));
    writeFileSync(join(dir, "b.img"), Buffer.alloc(1 << 20));
    const up = await startUp(socket);
    try {
      for (const [img, vdev] of [
        ["a.img", "xvda"],
        ["b.img", "xvdb"],
      ]) {
        const r = await xenlab([
          "block-attach",
          "1",
          `${join(dir, img!)},raw,${vdev},rw`,
          "--socket",
          socket,
        ]);
        assert.equal(r.code, 0, r.stderr);
      }
      for (const d of ["0", "1"]) {
        const r = await xenlab(["dmesg", "-d", d, "--socket", socket]);
        assert.doesNotMatch(r.stdout, /Cannot load|already loaded/);
      }
      assert.doesNotMatch(up.stdout(), /Cannot load|already loaded/);
    } finally {
      await up.stop();
    }
  });
});
