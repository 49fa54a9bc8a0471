/**
 * Debian's xenstore-* tools (package xenstore-utils) against xenlab: every command's exit
 * code, stdout and stderr must equal those of the same command against the reference C
 * xenstored. The commands run in order, one table per concern; both daemons start empty.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { hasCommand, type RunningDaemon, requirePeer } from "../helpers/peers.ts";
import { REFERENCE, requireDaemon, SUBJECT, subjectName } from "../helpers/subject.ts";
import { type Outcome, outcomeDifferences, runTool } from "../helpers/tools.ts";
import { until } from "../helpers/until.ts";

/** `xenstore-<tool> args...`, run to completion. */
type Command = readonly [tool: string, ...args: string[]];

/** `xenstore-watch args...` in the background; `during` runs once it printed its first event. */
interface WatchCommand {
  watch: readonly string[];
  during: readonly Command[];
}

type Row = Command | WatchCommand;

const TOOLS = ["write", "read", "ls", "chmod", "rm", "list", "exists", "watch"];

const GROUPS: ReadonlyArray<readonly [string, readonly Row[]]> = [
  [
    "xenstore-write and xenstore-read",
    [
      ["write", "/t/a", "1", "/t/b/c", "hello world", "/t/empty", ""],
      ["write", "rel", "relative value"],
      ["write", "/t/esc", "tab\there\\x01"],
      ["write", "-R", "/t/raw", "tab\there\\x01"],
      ["read", "/t/a", "/t/b/c", "/t/empty"],
      ["read", "-p", "/t/a", "/t/b/c"],
      ["read", "/t/esc"],
      ["read", "-R", "/t/raw"],
      ["read", "rel", "/local/domain/0/rel"],
      ["read", "/t/b"],
      ["read", "/t/missing"],
      ["read", "/t/a", "/t/missing", "/t/b/c"],
      ["read", "/t/bad path"],
      ["write", "/t/bad path", "x"],
      ["write", "/t/odd"],
    ],
  ],
  [
    "xenstore-ls -f -p",
    [
      ["ls", "-f", "-p", "/t"],
      ["ls", "/t"],
      ["ls", "-f", "/t"],
      ["ls", "-p", "/t/b"],
      ["ls", "/t/missing"],
      ["ls", "-f", "-p"],
    ],
  ],
  [
    "xenstore-chmod (and -r)",
    [
      ["chmod", "/t/a", "n5", "r0", "w7", "b9"],
      ["ls", "-f", "-p", "/t"],
      ["chmod", "-r", "/t/b", "r3", "w4"],
      ["ls", "-f", "-p", "/t"],
      ["chmod", "/t/missing", "n0"],
      ["chmod", "/t/a", "x1"],
      ["write", "/t/b/new", "inherits"],
      ["ls", "-p", "/t/b"],
      ["chmod", "-u", "/t/b/c", "n0"],
      ["ls", "-f", "-p", "/t"],
    ],
  ],
  [
    "xenstore-list and xenstore-exists",
    [
      ["list", "/t"],
      ["list", "-p", "/t"],
      ["list", "/t/b", "/t"],
      ["list", "/t/a"],
      ["list", "/t/missing"],
      ["list", "/"],
      ["exists", "/t/a"],
      ["exists", "/t/missing"],
      ["exists", "/t/a", "/t/b/c"],
      ["exists", "-p", "/t/a"],
    ],
  ],
  [
    "xenstore-watch -n",
    [
      { watch: ["-n", "1", "/w"], during: [] },
      {
        watch: ["-n", "4", "/w"],
        during: [
          ["write", "/w/a", "1"],
          ["write", "/w/b/c", "2"],
          ["rm", "/w"],
        ],
      },
      {
        watch: ["-n", "3", "/t/b"],
        during: [
          ["chmod", "/t/b", "n0"],
          ["write", "/t/b/c", "v2"],
        ],
      },
      { watch: ["-n", "2", "relw"], during: [["write", "/local/domain/0/relw/x", "1"]] },
      { watch: ["-n", "1", "@introduceDomain"], during: [] },
      { watch: ["-n", "1", "@releaseDomain"], during: [] },
    ],
  ],
  [
    "xenstore-rm (and -t)",
    [
      ["rm", "/t/missing"],
      ["rm", "/t/missing/deeper"],
      ["rm", "/t/b/c"],
      ["ls", "-f", "-p", "/t"],
      ["write", "/t/tidy/x/y", "1"],
      ["rm", "-t", "/t/tidy/x/y"],
      ["exists", "/t/tidy"],
      ["rm", "/t/a", "/t/empty"],
      ["rm", "/"],
      ["rm", "/t"],
      ["ls", "-f", "-p"],
    ],
  ],
];

function toolEnv(socket: string): NodeJS.ProcessEnv {
  return { XENSTORED_PATH: socket };
}

async function runCommand(socket: string, [tool, ...args]: Command): Promise<Outcome> {
  const r = await runTool(`xenstore-${tool}`, args, { env: toolEnv(socket), timeoutMs: 10_000 });
  return { command: `xenstore-${tool} ${args.join(" ")}`, code: r.code, stdout: r.stdout, stderr: r.stderr };
}

/** Starts xenstore-watch, waits for its first line, runs `during`, waits for it to exit. */
function runWatch(socket: string, w: WatchCommand): Promise<Outcome[]> {
  return new Promise((resolve, reject) => {
    const child = spawn("xenstore-watch", w.watch, {
      env: { ...process.env, ...toolEnv(socket) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let started = false;
    const outcomes: Outcome[] = [];
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const startThen = async () => {
      for (const c of w.during) outcomes.push(await runCommand(socket, c));
    };
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (!started && stdout.includes("\n")) {
        started = true;
        startThen().catch(reject);
      }
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const watched: Outcome = {
        command: `xenstore-watch ${w.watch.join(" ")}`,
        code: signal === null ? code : null,
        stdout,
        stderr: signal === null ? stderr : `${stderr}<killed by ${signal}: did not exit>`,
      };
      // Let the commands started by the first line finish before reporting.
      void until(
        "the commands started by the first line",
        () => outcomes.length === w.during.length || !started,
      ).then(() => resolve([watched, ...outcomes]), reject);
    });
  });
}

async function play(socket: string, rows: readonly Row[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const row of rows) {
    if ("watch" in row) out.push(...(await runWatch(socket, row)));
    else out.push(await runCommand(socket, row));
  }
  return out;
}

describe(`Debian's xenstore-* tools against ${SUBJECT.name}, compared with the reference C xenstored`, () => {
  let ref: RunningDaemon | null = null;
  let sub: RunningDaemon | null = null;
  const toolsPresent = TOOLS.every((t) => hasCommand(`xenstore-${t}`));
  before(async () => {
    if (REFERENCE.available()) ref = await REFERENCE.start();
    if (SUBJECT.available()) sub = await SUBJECT.start();
  });
  after(async () => {
    await ref?.stop();
    await sub?.stop();
  });

  for (const [name, rows] of GROUPS) {
    it(`gives the reference's exit codes and output: ${name}`, async (t) => {
      if (!requirePeer(t, "Debian's xenstore-* tools (xenstore-utils)", toolsPresent)) return;
      if (!requireDaemon(t, REFERENCE, ref) || !requireDaemon(t, SUBJECT, sub)) return;
      const a = await play(ref.socket, rows);
      const b = await play(sub.socket, rows);
      const diffs = outcomeDifferences(a, b, subjectName());
      assert.equal(diffs.length, 0, `${diffs.length} commands differ:\n${diffs.join("\n")}`);
    });
  }

  it('makes xenstore-read of a missing node exit 1 with "couldn\'t read path"', async (t) => {
    if (!requirePeer(t, "xenstore-read", hasCommand("xenstore-read"))) return;
    if (!requireDaemon(t, SUBJECT, sub)) return;
    const r = await runCommand(sub.socket, ["read", "/no/such/node"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /couldn't read path \/no\/such\/node/);
  });
});
