/**
 * Xen's xenstore-control (xen-utils-4.17, unpacked by ../shared/refxs into its cache)
 * against xenlab: exit codes and output equal to those against the reference C xenstored,
 * and the same effects of `log`, `logfile` and `memreport` on the daemon's files.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connectXenstore } from "../../src/xenstore/transport-socket-client.ts";
import {
  REFXS_BIN,
  REFXS_LIB,
  type RunningDaemon,
  refxsAvailable,
  requirePeer,
  startRefxs,
  tempDir,
} from "../helpers/peers.ts";
import {
  REFERENCE,
  requireDaemon,
  SUBJECT,
  startSubject,
  subjectAvailable,
  subjectName,
} from "../helpers/subject.ts";
import { type Outcome, outcomeDifferences, runTool } from "../helpers/tools.ts";

const XENSTORE_CONTROL = join(REFXS_BIN, "xenstore-control");

const COMMANDS: readonly (readonly string[])[] = [
  ["help"],
  ["check"],
  ["quota"],
  ["quota-soft"],
  ["quota", "0"],
  ["quota", "set", "nodes", "500"],
  ["quota", "set", "nodes"],
  ["quota-soft", "set", "memory", "1000000"],
  ["quota"],
  ["log", "on"],
  ["log", "off"],
  ["print", "hello from xenstore-control"],
  ["bogus"],
  [],
];

async function control(socket: string, args: readonly string[]): Promise<Outcome> {
  const r = await runTool(XENSTORE_CONTROL, args, {
    env: { XENSTORED_PATH: socket, LD_LIBRARY_PATH: REFXS_LIB },
    timeoutMs: 10_000,
  });
  return { command: `xenstore-control ${args.join(" ")}`, code: r.code, stdout: r.stdout, stderr: r.stderr };
}

async function play(socket: string): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const args of COMMANDS) out.push(await control(socket, args));
  return out;
}

describe(`xenstore-control against ${SUBJECT.name}, compared with the reference C xenstored`, () => {
  let ref: RunningDaemon | null = null;
  let sub: RunningDaemon | null = null;
  before(async () => {
    if (REFERENCE.available()) ref = await REFERENCE.start();
    if (SUBJECT.available()) sub = await SUBJECT.start();
  });
  after(async () => {
    await ref?.stop();
    await sub?.stop();
  });

  it("gives the reference's exit codes and output for help, check, quota, quota-soft, log, print", async (t) => {
    if (!requirePeer(t, `xenstore-control (${XENSTORE_CONTROL})`, existsSync(XENSTORE_CONTROL))) return;
    if (!requireDaemon(t, REFERENCE, ref) || !requireDaemon(t, SUBJECT, sub)) return;
    const a = await play(ref.socket);
    const b = await play(sub.socket);
    assert.ok(
      a.some((o) => o.code === 0 && o.stdout.includes("quota-soft")),
      "reference run answered help",
    );
    const diffs = outcomeDifferences(a, b, subjectName());
    assert.equal(diffs.length, 0, `${diffs.length} commands differ:\n${diffs.join("\n")}`);
  });
});

/** The contents of `path`, or "" when it does not exist. */
function contents(path: string): string {
  return existsSync(path) ? readFileSync(path, "latin1") : "";
}

async function write(socket: string, path: string, value: string): Promise<void> {
  const c = await connectXenstore(socket);
  try {
    await c.write(path, value);
  } finally {
    c.close();
  }
}

/** C's request line: direction, connection, local date and time, type, payload (NUL as space). */
const writeLine = (path: string, value: string) =>
  new RegExp(`^IN 0x[0-9a-f]+ \\d{8} \\d{2}:\\d{2}:\\d{2} WRITE \\(${path} ${value}\\)$`, "m");

/** The text the daemon wrote between a `memreport` request line and its reply line. */
function reportInTrace(trace: string): string {
  const m =
    /^IN 0x[0-9a-f]+ [\d: ]+ CONTROL \(memreport \)\n([\s\S]*?)^OUT 0x[0-9a-f]+ [\d: ]+ CONTROL \(OK \)$/m.exec(
      trace,
    );
  return m?.[1] ?? "";
}

/**
 * Plays `log`, `logfile` and `memreport` on a daemon started with `-T <dir>/trace` and checks
 * what each did to the files; returns the tool's outcomes for comparison with the other daemon.
 */
async function playTrace(name: string, socket: string, dir: string): Promise<Outcome[]> {
  const trace = join(dir, "trace");
  const moved = join(dir, "moved");
  const report = join(dir, "report");
  const out: Outcome[] = [];
  const run = async (...args: string[]) => {
    const o = await control(socket, args);
    out.push({ ...o, command: o.command.replaceAll(dir, "DIR") });
  };

  await write(socket, "/xsctl/a", "1");
  assert.match(contents(trace), writeLine("/xsctl/a", "1"), `${name}: a request line in C's format`);

  await run("memreport");
  assert.ok(
    reportInTrace(contents(trace)).length > 0,
    `${name}: memreport without FILE writes into the trace`,
  );
  await run("memreport", report);
  assert.ok(contents(report).length > 0, `${name}: memreport FILE writes the report to FILE`);

  await run("log", "off");
  await write(socket, "/xsctl/b", "2");
  assert.doesNotMatch(contents(trace), /\/xsctl\/b/, `${name}: nothing traced after log off`);
  const before = contents(trace).length;
  await run("memreport");
  assert.ok(
    contents(trace).length > before,
    `${name}: memreport with the trace off appends to the trace file`,
  );

  await run("log", "on");
  await write(socket, "/xsctl/c", "3");
  const on = contents(trace);
  assert.match(on, writeLine("/xsctl/c", "3"), `${name}: traced again after log on`);
  assert.match(on, /\n\*\*\*\n[\s\S]*\/xsctl\/c 3/, `${name}: log on reopens with the *** line`);

  await run("logfile", moved);
  await write(socket, "/xsctl/d", "4");
  assert.ok(contents(moved).startsWith("\n***\n"), `${name}: logfile opens FILE with the *** line`);
  assert.match(contents(moved), writeLine("/xsctl/d", "4"), `${name}: logfile moves the trace to FILE`);
  assert.doesNotMatch(contents(trace), /\/xsctl\/d/, `${name}: the old trace file is left`);
  await run("memreport");
  assert.ok(reportInTrace(contents(moved)).length > 0, `${name}: memreport follows the trace to FILE`);

  // Bad arguments and a file that cannot be opened (C: EBADF, answered EINVAL).
  for (const args of [["log"], ["log", "x"], ["log", "on", "off"], ["logfile"], ["logfile", "a", "b"]])
    await run(...args);
  await run("memreport", "a", "b");
  await run("memreport", join(dir, "missing", "report"));
  assert.ok(!existsSync(join(dir, "missing")), `${name}: no directory is created`);
  return out;
}

/** The same on a daemon started without `-T`: no trace until `logfile` names one. */
async function playNoTrace(name: string, socket: string, dir: string): Promise<Outcome[]> {
  const later = join(dir, "later");
  const out: Outcome[] = [];
  const run = async (...args: string[]) => {
    const o = await control(socket, args);
    out.push({ ...o, command: o.command.replaceAll(dir, "DIR") });
  };
  await run("memreport");
  await run("log", "on");
  await run("log", "off");
  await run("logfile", later);
  await write(socket, "/xsctl/e", "5");
  assert.match(contents(later), writeLine("/xsctl/e", "5"), `${name}: logfile starts a trace`);
  await run("memreport");
  assert.ok(reportInTrace(contents(later)).length > 0, `${name}: then memreport writes into it`);
  return out;
}

describe(`xenstore-control log, logfile and memreport against ${SUBJECT.name}, compared with the reference C xenstored`, () => {
  const dirs: string[] = [];
  const daemons: RunningDaemon[] = [];
  after(async () => {
    for (const d of daemons) await d.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** The reference and the subject, each with its own directory; `trace`: started with -T DIR/trace. */
  async function pair(
    trace: boolean,
  ): Promise<{ ref: RunningDaemon; refDir: string; sub: RunningDaemon; subDir: string }> {
    const refDir = tempDir("xsctl-ref-");
    const subDir = tempDir("xsctl-sub-");
    dirs.push(refDir, subDir);
    const ref = await startRefxs(trace ? ["-T", join(refDir, "trace")] : []);
    daemons.push(ref);
    const sub = await startSubject(trace ? ["-T", join(subDir, "trace")] : []);
    daemons.push(sub);
    return { ref, refDir, sub, subDir };
  }

  it("switches, moves and reports into the trace as the reference does, with its answers", async (t) => {
    if (!requirePeer(t, `xenstore-control (${XENSTORE_CONTROL})`, existsSync(XENSTORE_CONTROL))) return;
    if (
      !requirePeer(t, REFERENCE.name, refxsAvailable()) ||
      !requirePeer(t, SUBJECT.name, subjectAvailable())
    )
      return;
    const { ref, refDir, sub, subDir } = await pair(true);
    const a = await playTrace("reference", ref.socket, refDir);
    const b = await playTrace(subjectName(), sub.socket, subDir);
    const diffs = outcomeDifferences(a, b, subjectName());
    assert.equal(diffs.length, 0, `${diffs.length} commands differ:\n${diffs.join("\n")}`);
  });

  it("answers memreport without a trace file as the reference does, and logfile starts one", async (t) => {
    if (!requirePeer(t, `xenstore-control (${XENSTORE_CONTROL})`, existsSync(XENSTORE_CONTROL))) return;
    if (
      !requirePeer(t, REFERENCE.name, refxsAvailable()) ||
      !requirePeer(t, SUBJECT.name, subjectAvailable())
    )
      return;
    const { ref, refDir, sub, subDir } = await pair(false);
    const a = await playNoTrace("reference", ref.socket, refDir);
    const b = await playNoTrace(subjectName(), sub.socket, subDir);
    assert.equal(a[0]?.code, 3, "the reference refuses memreport without a trace file");
    const diffs = outcomeDifferences(a, b, subjectName());
    assert.equal(diffs.length, 0, `${diffs.length} commands differ:\n${diffs.join("\n")}`);
  });
});
