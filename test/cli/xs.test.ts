/**
 * `xenlab xs` against Debian's xenstore-* tools (Xen 4.17): each case runs the real tool and
 * ours on the same fresh tree and compares stdout (bytes), stderr, exit code and the tree
 * they leave behind. Every case runs against the reference C xenstored and xenlab's.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, describe, it, type TestContext } from "node:test";
import { run } from "../../src/cli/xs.ts";
import { sanitiseValue, unsanitiseValue } from "../../src/cli/xs-clib.ts";
import type { XsClient } from "../../src/xenstore/client.ts";
import { connectXenstore } from "../../src/xenstore/transport-socket-client.ts";
import { splitStrings, utf8, XsType } from "../../src/xenstore/wire.ts";
import { hasCommand, REPO, type RunningDaemon, requirePeer } from "../helpers/peers.ts";
import { REFERENCE, requireDaemon, SUBJECT, type Target } from "../helpers/subject.ts";

/** The daemons every case runs against; drop SUBJECT to compare on the reference alone. */
const TARGETS: readonly Target[] = [REFERENCE, SUBJECT];

const PYTHON = "/usr/bin/python3";

interface Outcome {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** A step run through the client before each side of a case. */
type Setup =
  | readonly [op: "write", path: string, value: string | Uint8Array]
  | readonly [op: "chmod", path: string, ...perms: string[]];

/** What every case starts from (below /t), on top of the daemon's own /tool/xenstored. */
const BASE: readonly Setup[] = [
  ["write", "/t/a", "1"],
  ["write", "/t/b/c", "2"],
  ["write", "/t/bin", Uint8Array.from([0x61, 0, 1, 7, 8, 9, 10, 13, 0x5c, 0x22, 0x7f, 0x80, 0xff, 0x7a])],
  ["write", "/t/long", "x".repeat(100)],
  ["write", "/t/mid", "m".repeat(55)],
  ["write", "/t/utf", "h\u00e9llo"],
  ["write", `/t/${"n".repeat(75)}`, "v"],
  ["write", "/t/deep/er/and/deeper/still", "bottom"],
  ["chmod", "/t/a", "n5", "r0", "w7"],
  ["chmod", "/t/b", "b3"],
];

/** Removes everything the cases may have made, then builds `setup`. */
async function reset(xs: XsClient, setup: readonly Setup[]): Promise<void> {
  for (const name of await xs.directory("/")) if (name !== "tool") await xs.rm(`/${name}`);
  for (const step of setup) {
    if (step[0] === "write") await xs.write(step[1], step[2]);
    else await xs.setPerms(step[1], step.slice(2) as string[]);
  }
}

/** The whole tree with values and permissions, for comparing what two runs left behind. */
async function dump(xs: XsClient, path = "/"): Promise<string> {
  let out = "";
  for (const name of await xs.directory(path)) {
    const p = path === "/" ? `/${name}` : `${path}/${name}`;
    const v = sanitiseValue(await xs.readBytes(p));
    // Raw strings: a daemon's odd permission ("r-5") must show up in the diff, not throw.
    const perms = splitStrings(await xs.request(XsType.GET_PERMS, 0, utf8(`${p}\0`))).parts.join(",");
    out += `${p} = "${v}" (${perms})\n${await dump(xs, p)}`;
  }
  return out;
}

/** Runs a real tool to completion, keeping stdout as bytes. */
function runReal(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  onFirstLine?: () => Promise<void>,
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    let err = "";
    let triggered = false;
    child.stdout.on("data", (d: Buffer) => {
      out.push(d);
      if (!triggered && onFirstLine !== undefined && Buffer.concat(out).includes(10)) {
        triggered = true;
        onFirstLine().catch(reject);
      }
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** Runs `xenlab xs` in this process. */
async function runOurs(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  columns?: number,
  onFirstLine?: () => Promise<void>,
): Promise<Outcome> {
  const out: Buffer[] = [];
  let err = "";
  let triggered: Promise<void> | null = null;
  const code = await run([...argv], {
    stdout: (b) => {
      out.push(Buffer.from(b));
      if (triggered === null && onFirstLine !== undefined && Buffer.concat(out).includes(10))
        triggered = onFirstLine();
    },
    stderr: (s) => {
      err += s;
    },
    env,
    columns,
  });
  await triggered;
  return { code, stdout: Buffer.concat(out), stderr: err };
}

interface Case {
  it: string;
  mode: string;
  args: readonly string[];
  setup?: readonly Setup[];
  /** Run once the tool printed its first line (watch). */
  after?: (xs: XsClient) => Promise<void>;
  env?: NodeJS.ProcessEnv;
}

const CASES: readonly Case[] = [
  // read
  { it: "read prints a value and a newline", mode: "read", args: ["/t/a"] },
  { it: "read prints several values, in one transaction", mode: "read", args: ["/t/a", "/t/b/c", "/t/b"] },
  { it: "read escapes binary bytes (\\000, \\t, \\x7f, \\\\ ...)", mode: "read", args: ["/t/bin", "/t/utf"] },
  { it: "read -p prefixes each value with its path", mode: "read", args: ["-p", "/t/a", "/t/b/c"] },
  { it: "read -R prints raw bytes with no newline", mode: "read", args: ["-R", "/t/bin", "/t/a"] },
  { it: "read -p -R combines the prefix with raw bytes", mode: "read", args: ["-pR", "/t/bin"] },
  { it: "read of a missing node fails with 1 and says so", mode: "read", args: ["/t/nope"] },
  {
    it: "read stops at the first missing node but prints what it read",
    mode: "read",
    args: ["/t/a", "/t/nope", "/t/b/c"],
  },
  { it: "read of an invalid path fails", mode: "read", args: ["/t/bad..path"] },
  { it: "read of a relative path looks under /local/domain/0", mode: "read", args: ["t/a"] },
  { it: "read with no key prints the usage and exits 1", mode: "read", args: [] },
  { it: "read -h prints the usage and exits 1", mode: "read", args: ["-h", "/t/a"] },
  { it: "read complains about an unknown option and goes on", mode: "read", args: ["-x", "/t/a", "-s"] },
  { it: "read takes options after the keys (getopt permutes)", mode: "read", args: ["/t/a", "-p"] },
  { it: "read treats everything after -- as keys", mode: "read", args: ["--", "/t/a"] },
  { it: "read takes unique prefixes of long options", mode: "read", args: ["--pre", "--raw", "/t/a"] },
  { it: "read names both candidates of an ambiguous long option", mode: "read", args: ["--r", "/t/a"] },
  { it: "read rejects an argument to a flag", mode: "read", args: ["--prefix=1", "--bogus=2", "/t/a"] },
  { it: "read rejects a flag of another mode with the usage", mode: "read", args: ["-t", "/t/a"] },
  { it: "read rejects -n without its number", mode: "read", args: ["/t/a", "-n"] },
  // write
  { it: "write creates a node and its parents", mode: "write", args: ["/t/new/deep/k", "v"] },
  {
    it: "write writes several pairs in one transaction",
    mode: "write",
    args: ["/t/k1", "v1", "/t/k2", "v2"],
  },
  {
    it: "write unescapes \\t \\n \\\\ \\x41 \\101 and odd escapes as the C tool does",
    mode: "write",
    args: ["/t/e", "a\\tb\\nc\\\\d\\x41\\101\\x4g\\x 5\\x-1\\xzz\\08\\777\\q\\"],
  },
  { it: "write -R writes the value unescaped", mode: "write", args: ["-R", "/t/e", "a\\tb\\x41"] },
  { it: "write writes an empty value", mode: "write", args: ["/t/a", ""] },
  { it: "write with a key but no value prints the usage", mode: "write", args: ["/t/a"] },
  { it: "write with three arguments prints the usage", mode: "write", args: ["/t/a", "1", "/t/b"] },
  {
    it: "write to an invalid path fails and writes nothing",
    mode: "write",
    args: ["/t/ok", "1", "/t/bad/", "2"],
  },
  // ls
  { it: "ls with no path lists the whole tree", mode: "ls", args: [] },
  { it: "ls indents by depth and cuts names and values to 80 columns", mode: "ls", args: ["/t"] },
  { it: "ls -p adds dots and the permissions", mode: "ls", args: ["-p", "/t"] },
  { it: "ls -f prints full paths and never cuts", mode: "ls", args: ["-f", "/t"] },
  { it: "ls -f -p prints full paths with permissions", mode: "ls", args: ["-f", "-p", "/t"] },
  { it: "ls of a leaf prints nothing", mode: "ls", args: ["/t/a"] },
  { it: "ls of several paths lists each", mode: "ls", args: ["/t/b", "/t/deep"] },
  { it: "ls of a missing path fails with the errno text", mode: "ls", args: ["/t/nope"] },
  { it: "ls of a path with a trailing slash fails (EINVAL)", mode: "ls", args: ["/t/"] },
  { it: "ls -s is accepted and ignored", mode: "ls", args: ["-s", "/t/b"] },
  { it: "ls complains about -w (no such option in 4.17) and lists", mode: "ls", args: ["-w", "/t/b"] },
  // list
  { it: "list prints child names", mode: "list", args: ["/t"] },
  { it: "list -p prints full child paths", mode: "list", args: ["-p", "/t", "/t/b"] },
  { it: "list -p / doubles the slash, as 4.17 does", mode: "list", args: ["-p", "/"] },
  { it: "list of a missing node fails", mode: "list", args: ["/t/nope"] },
  // exists
  { it: "exists exits 0 for existing nodes", mode: "exists", args: ["/t/a", "/t/b"] },
  { it: "exists exits 1 silently for a missing node", mode: "exists", args: ["/t/a", "/t/nope"] },
  // rm
  { it: "rm removes a node and its subtree", mode: "rm", args: ["/t/b", "/t/a"] },
  { it: "rm of a missing node whose parent exists succeeds", mode: "rm", args: ["/t/nope"] },
  { it: "rm of a node whose parent is missing fails", mode: "rm", args: ["/t/nope/x"] },
  {
    it: "rm -t also removes parents left empty and without value",
    mode: "rm",
    args: ["-t", "/t/deep/er/and/deeper/still"],
  },
  {
    it: "rm -t keeps a parent that has a value",
    mode: "rm",
    args: ["-t", "/t/b/c"],
    setup: [["write", "/t/b", "v"]],
  },
  { it: "rm / fails (EINVAL)", mode: "rm", args: ["/"] },
  // chmod
  { it: "chmod sets the permissions of one node", mode: "chmod", args: ["/t/b", "n1", "r2", "w3", "b4"] },
  { it: "chmod -r also sets every node below", mode: "chmod", args: ["-r", "/t/deep", "b9"] },
  { it: "chmod -u also sets every parent", mode: "chmod", args: ["-u", "/t/deep/er/and", "r2"] },
  { it: "chmod -u -r sets parents and children", mode: "chmod", args: ["-ur", "/t/b", "w1"] },
  {
    it: "chmod reads domids as atoi does",
    mode: "chmod",
    args: ["/t/b", "r-5", "w 7", "bx", "n99999999999999999999"],
  },
  { it: "chmod rejects a bad letter", mode: "chmod", args: ["/t/b", "r1", "x2"] },
  { it: "chmod with no mode fails (EINVAL)", mode: "chmod", args: ["/t/b"] },
  { it: "chmod of a missing node fails (ENOENT)", mode: "chmod", args: ["/t/nope", "r1"] },
  {
    it: "chmod -u of a relative path without a slash stops with an error",
    mode: "chmod",
    args: ["-u", "t", "r1"],
  },
  // watch
  { it: "watch -n 1 prints the initial event", mode: "watch", args: ["-n", "1", "/t/b"] },
  {
    it: "watch prints each changed path, including removals",
    mode: "watch",
    args: ["-n4", "/t/b"],
    after: async (xs) => {
      await xs.write("/t/b/new", "1");
      await xs.write("/t/a", "unrelated");
      await xs.rm("/t/b/c");
      await xs.setPerms("/t/b", ["n0"]);
    },
  },
  { it: "watch watches several paths", mode: "watch", args: ["--number=2", "/t/a", "/t/b"] },
  { it: "watch -n 0 exits at once", mode: "watch", args: ["-n", "0", "/t/a"] },
  { it: "watch of an invalid path fails", mode: "watch", args: ["-n", "1", "/t/bad..p"] },
  { it: "watch of the same path twice fails (EEXIST)", mode: "watch", args: ["-n", "1", "/t/a", "/t/a"] },
  { it: "watch with no path prints the usage", mode: "watch", args: ["-n", "1"] },
];

/** A terminal `cols` wide for the real tool: ls cuts lines to its width. */
const PTY_RUN = `
import os, pty, sys, fcntl, termios, struct, subprocess
cols = int(sys.argv[1]); argv = sys.argv[2:]
m, s = pty.openpty()
fcntl.ioctl(s, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
a = termios.tcgetattr(s); a[1] &= ~termios.OPOST; termios.tcsetattr(s, termios.TCSANOW, a)
p = subprocess.Popen(argv, stdout=s)
os.close(s)
out = b""
while True:
    try:
        b = os.read(m, 65536)
    except OSError:
        break
    if not b:
        break
    out += b
sys.stdout.buffer.write(out)
sys.exit(p.wait())
`;

describe("sanitiseValue() and unsanitiseValue()", () => {
  it("escapes what is not printable ASCII, and backslash", () => {
    assert.equal(
      sanitiseValue(Uint8Array.from([0x61, 0, 7, 8, 9, 10, 13, 0x5c, 0x7f, 0xff])),
      "a\\000\\007\\x08\\t\\n\\r\\\\\\x7f\\xff",
    );
  });

  it("reads back what it escapes", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.deepEqual([...unsanitiseValue(sanitiseValue(all))], [...all]);
  });

  it("follows sscanf for odd escapes: \\x with a blank, a sign or 0x, a bad \\x, a final backslash", () => {
    assert.deepEqual([...unsanitiseValue("\\x 41")], [0x41]);
    assert.deepEqual([...unsanitiseValue("\\x-1")], [0xff]);
    assert.deepEqual([...unsanitiseValue("\\x0x5")], [0, 0x35]);
    assert.deepEqual([...unsanitiseValue("\\xzz")], [...Buffer.from("xzz")]);
    assert.deepEqual([...unsanitiseValue("\\0089")], [0, 0x38, 0x39]);
    assert.deepEqual([...unsanitiseValue("a\\")], [0x61, 0]);
  });
});

for (const target of TARGETS) {
  describe(`xenlab xs against Debian's xenstore-* tools on ${target.name}`, () => {
    let daemon: RunningDaemon | null = null;
    let xs: XsClient;
    let env: NodeJS.ProcessEnv;

    before(async () => {
      if (!target.available()) return;
      daemon = await target.start();
      xs = await connectXenstore(daemon.socket);
      env = { XENSTORED_PATH: daemon.socket };
    });

    after(async () => {
      xs?.close();
      await daemon?.stop();
    });

    const ready = (t: TestContext): boolean =>
      requireDaemon(t, target, daemon) &&
      requirePeer(t, "Debian xenstore-utils", hasCommand("xenstore-read"));

    /** Runs the real tool and ours from the same tree; both must print and leave the same. */
    async function compare(c: Case, columns?: number): Promise<void> {
      const setup = [...BASE, ...(c.setup ?? [])];
      const e = { ...env, ...c.env };
      const trigger = c.after === undefined ? undefined : () => c.after!(xs);
      await reset(xs, setup);
      const realArgv = [`xenstore-${c.mode}`, ...c.args];
      const real =
        columns === undefined
          ? await runReal(realArgv, e, trigger)
          : await runReal([PYTHON, "-c", PTY_RUN, String(columns), ...realArgv], e);
      const realTree = await dump(xs);
      await reset(xs, setup);
      const ours = await runOurs([c.mode, ...c.args], e, columns, trigger);
      const ourTree = await dump(xs);
      assert.equal(ours.stdout.toString("latin1"), real.stdout.toString("latin1"), "stdout");
      assert.equal(ours.stderr, real.stderr, "stderr");
      assert.equal(ours.code, real.code, "exit code");
      assert.equal(ourTree, realTree, "tree left behind");
    }

    for (const c of CASES) {
      it(`${c.it} (xenstore-${c.mode} ${c.args.join(" ")})`, async (t) => {
        if (!ready(t)) return;
        await compare(c);
      });
    }

    it("ls cuts lines to the terminal width when stdout is a terminal", async (t) => {
      if (!ready(t) || !requirePeer(t, PYTHON, existsSync(PYTHON))) return;
      await compare({ it: "", mode: "ls", args: ["/t"] }, 40);
      await compare({ it: "", mode: "ls", args: ["-p", "/t"] }, 70);
      await compare({ it: "", mode: "ls", args: ["-f", "-p", "/t"] }, 30);
    });

    it("mkdir (no Xen tool) creates empty nodes, keeps existing ones, and fails like write", async (t) => {
      if (!ready(t)) return;
      await reset(xs, BASE);
      const ok = await runOurs(["mkdir", "/t/m1", "/t/a", "/t/m2/sub"], env);
      assert.deepEqual([ok.code, ok.stdout.toString(), ok.stderr], [0, "", ""]);
      assert.equal(await xs.read("/t/m1"), "");
      assert.equal(await xs.read("/t/a"), "1");
      assert.equal(await xs.read("/t/m2/sub"), "");
      const bad = await runOurs(["mkdir", "/t/m3", "/t/bad/"], env);
      assert.deepEqual([bad.code, bad.stderr], [1, "xenstore-mkdir: could not create path /t/bad/\n"]);
      assert.equal(await xs.tryRead("/t/m3"), undefined, "the transaction was aborted");
    });

    it("watch stops when the daemon goes away: 0 once -n is used up, else 1 (the C tool spins)", async (t) => {
      if (!ready(t)) return;
      for (const [args, code, stderr] of [
        [["-n", "3", "/w"], 0, ""],
        [["/w"], 1, "xenstore-watch: xs_read_watch: Bad file descriptor\n"],
      ] as const) {
        const d = await target.start();
        const ours = await runOurs(["watch", ...args], { XENSTORED_PATH: d.socket }, undefined, () =>
          d.stop(),
        );
        assert.deepEqual([ours.code, ours.stdout.toString(), ours.stderr], [code, "/w\n", stderr]);
      }
    });

    it("runs as `xenlab xs` from the command line with the tool's exit code", async (t) => {
      if (!ready(t)) return;
      await reset(xs, BASE);
      const main = [process.execPath, "--import", "tsx", `${REPO}/src/cli/main.ts`, "xs"];
      for (const args of [
        ["read", "/t/a", "/t/bin"],
        ["read", "/t/nope"],
      ]) {
        const real = await runReal([`xenstore-${args[0]}`, ...args.slice(1)], env);
        const ours = await runReal([...main, ...args], env);
        assert.deepEqual(ours, real);
      }
    });
  });
}

describe("xenlab xs without a daemon", () => {
  it("fails like xs_open when nothing listens at XENSTORED_PATH", async (t) => {
    if (!requirePeer(t, "Debian xenstore-utils", hasCommand("xenstore-read"))) return;
    const env = { XENSTORED_PATH: "/nonexistent/socket" };
    const real = await runReal(["xenstore-read", "/a"], env);
    const ours = await runOurs(["read", "/a"], env);
    assert.deepEqual(ours, real);
  });

  it("finds the socket under XENSTORED_RUNDIR, and fails like xs_open when there is none", async (t) => {
    if (!requirePeer(t, "Debian xenstore-utils", hasCommand("xenstore-read"))) return;
    const env = { XENSTORED_PATH: undefined, XENSTORED_RUNDIR: "/nonexistent" };
    const real = await runReal(["xenstore-read", "/a"], env);
    const ours = await runOurs(["read", "/a"], env);
    assert.deepEqual(ours, real);
  });

  it("names an unknown mode, and prints the usage without one, as /usr/bin/xenstore does", async (t) => {
    if (!requirePeer(t, "Debian xenstore-utils", hasCommand("xenstore"))) return;
    for (const argv of [["frob"], []]) {
      const real = await runReal(["xenstore", ...argv], {});
      const ours = await runOurs(argv, {});
      assert.deepEqual(ours, real);
    }
  });
});
