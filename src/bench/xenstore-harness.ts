/**
 * The harness of `xenlab bench xenstore` (xenstore.ts): its options, where the reference's
 * tools are, the results table, and the loads each case is made of (test-xenstore runs and
 * load-generator windows against both daemons).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { siblingModule } from "../lib/spawn.ts";
import { inRunOrder, jsonLine, median } from "./common.ts";
import type { Daemon } from "./daemons.ts";
import type { LoadConfig, LoadResult, WindowResult } from "./loadgen.ts";
import { cpuSeconds } from "./procstat.ts";
export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const FROM_SOURCE = import.meta.url.endsWith(".ts");
/** $XENLAB_SHARED/refxs (set by .ci/run), else ../shared/refxs beside the checkout. */
export const REFXS = join(process.env.XENLAB_SHARED ?? join(REPO, "../shared"), "refxs");
export const REFXS_CACHE = process.env.REFXS_CACHE ?? "/var/tmp/refxs-cache";
export const TEST_XENSTORE = join(REFXS_CACHE, "root/usr/lib/xen-4.17/bin/test-xenstore");
export const REFXS_LIB = join(REFXS_CACHE, "root/usr/lib/x86_64-linux-gnu");

/** Requests per `test-xenstore` iteration of all 12 tests, and for its final cleanup. */
export const TEST_XENSTORE_REQS_PER_ITER = 76;
export const TEST_XENSTORE_REQS_FIXED = 5;

export const DAEMON_CPU = 0;
export const CLIENT_CPU = 1;
export const BASELINE_NAME = "cxenstored";
/** The baseline's name in the output: cxenstored, or xenlab's daemon traced (--trace). */
export const TRACED_NAME = "xenlab+trace";

export type CaseId = "a" | "b" | "c" | "d" | "e" | "f";
export type Side = "xenlab" | "baseline";
export type XenlabKind = "dist" | "src" | "ref";

export interface Options {
  json: boolean;
  runs: number;
  /** Load-generator windows per daemon (cases b and c). */
  windows: number;
  /** test-xenstore -i for case a. */
  iterations: number;
  /** test-xenstore -i for case c. */
  idleIterations: number;
  warmupMs: number;
  durationMs: number;
  /** 1-client load of case c. */
  idleDurationMs: number;
  clients: number;
  idle: number;
  cases: ReadonlySet<CaseId>;
  xenlab: XenlabKind;
  xenlabCmd: string[] | null;
  pin: boolean;
  /** The unrecorded test-xenstore -i 1000 warm-up on each side (JIT) before the cases. */
  warmupRun: boolean;
  /** Guests written in case d. */
  guests: number;
  /** Children of the one directory in case e. */
  wide: number;
  /** Store sizes (nodes) at which case f reads the resident set. */
  memNodes: number[];
  /** Case f stops filling a daemon after this many seconds. */
  memSeconds: number;
  /** xenlab's daemon with `--state DIR` (journal), plus `--state-sync` (sync), or neither. */
  state: "none" | "journal" | "sync";
  /** The baseline is xenlab's own daemon with the live view's recorder on (`--live-trace`). */
  trace: boolean;
  /** xenlab's daemon with `--pcap FILE`: every request and reply captured (docs/capture.md). */
  pcap: boolean;
}

// ---------------------------------------------------------------------------------------
// Results: one row per case, one sample per run and side.

export type Better = "higher" | "lower";

export interface Row {
  name: string;
  unit: string;
  better: Better;
  /** In the --json output (else only in the table, e.g. the generator's own CPU use). */
  json: boolean;
  samples: Record<Side, number[]>;
}

export interface Goal {
  name: string;
  min: number;
}

export class Results {
  readonly rows = new Map<string, Row>();

  add(name: string, unit: string, better: Better, side: Side, value: number, json = true): void {
    let row = this.rows.get(name);
    if (row === undefined) {
      row = { name, unit, better, json, samples: { xenlab: [], baseline: [] } };
      this.rows.set(name, row);
    }
    row.samples[side].push(value);
  }
}

export function ratio(row: Row): number {
  const x = median(row.samples.xenlab);
  const b = median(row.samples.baseline);
  return row.better === "higher" ? x / b : b / x;
}

function round(x: number, digits: number): number | null {
  if (!Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function jsonRow(row: Row, baselineName: string): string {
  const x = median(row.samples.xenlab);
  const b = median(row.samples.baseline);
  const digits = row.unit === "ops/s" ? 0 : 2;
  return jsonLine({
    bench: "xenstore",
    case: row.name,
    unit: row.unit,
    xenlab: round(x, digits),
    baseline: round(b, digits),
    baseline_name: baselineName,
    ratio: round(ratio(row), 3),
  });
}

export function fmt(x: number, unit: string): string {
  if (!Number.isFinite(x)) return "-";
  if (unit === "ops/s") return x >= 1e4 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
  if (unit === "%") return `${x.toFixed(0)}%`;
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

export function cell(xs: readonly number[], unit: string): string {
  const m = fmt(median(xs), unit);
  if (xs.length < 2) return m;
  return `${m} (${fmt(Math.min(...xs), unit)}–${fmt(Math.max(...xs), unit)})`;
}

/**
 * The goal column: met or MISSED, or, where one side has no figure (C xenstored stopped before 1M
 * nodes in case f, as its memory ran out), which side, since there is nothing to compare.
 */
export function goalCell(goal: Goal, r: number, row: Row): string {
  if (Number.isFinite(r)) return `≥${goal.min} ${r >= goal.min ? "met" : "MISSED"}`;
  const none = row.samples.baseline.length === 0 ? "baseline" : "xenlab";
  return `≥${goal.min}: no ${none} figure`;
}

export function table(
  res: Results,
  goals: readonly Goal[],
  xenlabLabel: string,
  baselineName: string,
): string {
  const head = ["case", "unit", xenlabLabel, baselineName, "ratio", "goal"];
  const lines = [...res.rows.values()].map((row) => {
    const r = ratio(row);
    const goal = goals.find((g) => g.name === row.name);
    const informative = !row.json;
    return [
      row.name,
      row.unit,
      cell(row.samples.xenlab, row.unit),
      cell(row.samples.baseline, row.unit),
      informative || !Number.isFinite(r) ? "" : r.toFixed(2),
      goal === undefined ? "" : goalCell(goal, r, row),
    ];
  });
  const all = [head, ...lines];
  const width = head.map((_, i) => Math.max(...all.map((l) => l[i]!.length)));
  const fmtLine = (l: string[]) =>
    l
      .map((c, i) => (i === 0 || i === 1 ? c.padEnd(width[i]!) : c.padStart(width[i]!)))
      .join("  ")
      .trimEnd();
  return [fmtLine(head), width.map((w) => "-".repeat(w)).join("  "), ...lines.map(fmtLine)].join("\n");
}

// ---------------------------------------------------------------------------------------
// Loads.

export interface TestXenstoreRun {
  seconds: number;
  ops: number;
  /** Average ns of each test's timed part, by test name. */
  tests: Map<string, number>;
}

export function runProcess(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((res, rej) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) {
      rej(new RangeError("Cannot run an empty command"));
      return;
    }
    const child = spawn(cmd, args, { env, cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("error", rej);
    child.on("close", (code, signal) => res({ code: code ?? (signal ? 128 : 1), out, err }));
  });
}

export function pinned(o: Options, cpu: number, argv: string[]): string[] {
  return o.pin ? ["taskset", "-c", String(cpu), ...argv] : argv;
}

/** One `test-xenstore -i n` run against `socket`, timed from spawn to exit. */
export async function testXenstore(o: Options, socket: string, n: number): Promise<TestXenstoreRun> {
  const env = { ...process.env, LD_LIBRARY_PATH: REFXS_LIB, XENSTORED_PATH: socket };
  const t0 = performance.now();
  const r = await runProcess(pinned(o, DAEMON_CPU, [TEST_XENSTORE, "-i", String(n)]), env);
  const seconds = (performance.now() - t0) / 1e3;
  if (r.code !== 0 || r.out.includes("failed")) {
    throw new Error(`test-xenstore -i ${n} on '${socket}' failed (exit code ${r.code}):\n${r.out}${r.err}`);
  }
  const tests = new Map<string, number>();
  for (const line of r.out.split("\n")) {
    // "read 1    : avg: 28106 ns (26011 ns .. 97019 ns)", or "read 1    : 28106 ns" for -i 1.
    const m = /^(.{10}): (?:avg: )?(\d+) ns/.exec(line);
    if (m) tests.set(m[1]!.trim(), Number(m[2]));
  }
  return { seconds, ops: TEST_XENSTORE_REQS_PER_ITER * n + TEST_XENSTORE_REQS_FIXED, tests };
}

/** One loadgen run in its own process, pinned to `cpu`. */
export async function loadgen(o: Options, cfg: LoadConfig, cpu: number): Promise<LoadResult> {
  const child = fileURLToPath(siblingModule(import.meta.url, "loadgen-child"));
  const node = [process.execPath, ...(FROM_SOURCE ? ["--import", "tsx"] : []), child, JSON.stringify(cfg)];
  const r = await runProcess(pinned(o, cpu, node), process.env);
  const line = r.out.trim().split("\n").pop() ?? "";
  if (r.code !== 0 || !line.startsWith("{")) {
    const on = cfg.targets.map((t) => `'${t.socket}'`).join(", ");
    throw new Error(`Load generator failed on ${on} (exit code ${r.code}):\n${r.err}${r.out}`);
  }
  return JSON.parse(line) as LoadResult;
}

// ---------------------------------------------------------------------------------------

export interface Ctx {
  o: Options;
  daemons: Record<Side, Daemon>;
  res: Results;
  log: (s: string) => void;
  seq: number;
}

/** The order of the two sides in run `r` (0-based): alternate who goes first. */
export function order(r: number): Side[] {
  return inRunOrder(SIDES, r);
}

export async function measuredCpu<T>(pid: number, f: () => Promise<T>): Promise<{ value: T; cpu: number }> {
  const c0 = cpuSeconds(pid);
  const value = await f();
  return { value, cpu: cpuSeconds(pid) - c0 };
}

export function addTestXenstore(
  ctx: Ctx,
  prefix: string,
  side: Side,
  run: TestXenstoreRun,
  cpu: number,
  perTest: boolean,
): void {
  ctx.res.add(prefix, "ops/s", "higher", side, run.ops / run.seconds);
  if (perTest) {
    for (const [test, ns] of run.tests) ctx.res.add(`${prefix}/${test} avg`, "us", "lower", side, ns / 1e3);
  }
  ctx.res.add(`${prefix}/daemon cpu per op`, "us", "lower", side, (cpu / run.ops) * 1e6);
}

export const SIDES: readonly Side[] = ["xenlab", "baseline"];
export const SETTLE_MS = 150;

export function addWindow(
  ctx: Ctx,
  prefix: string,
  side: Side,
  r: WindowResult,
  kinds: readonly ("all" | "read" | "write" | "tx")[],
): void {
  ctx.res.add(prefix, "ops/s", "higher", side, r.opsPerSec);
  for (const k of kinds) {
    ctx.res.add(`${prefix}/${k} p50`, "us", "lower", side, r.latency[k].p50Us);
    ctx.res.add(`${prefix}/${k} p99`, "us", "lower", side, r.latency[k].p99Us);
  }
  ctx.res.add(`${prefix}/daemon cpu per op`, "us", "lower", side, (r.daemonCpu / r.ops) * 1e6);
  ctx.res.add(`${prefix}/loadgen cpu`, "%", "lower", side, r.cpu * 100, false);
  if (r.conflicts > 0) ctx.log(`[${prefix}] ${side}: ${r.conflicts} transactions retried after EAGAIN`);
}

/**
 * One load-generator process driving both daemons in alternating windows (loadgen.ts),
 * pinned to `cpu`; each window becomes one sample.
 */
export async function loadWindows(
  ctx: Ctx,
  prefix: string,
  clients: number,
  windowMs: number,
  cpu: number,
  kinds: readonly ("all" | "read" | "write" | "tx")[],
): Promise<void> {
  const { o } = ctx;
  ctx.seq++;
  const cfg: LoadConfig = {
    targets: SIDES.map((side) => ({ socket: ctx.daemons[side].socket, daemonPid: ctx.daemons[side].pid })),
    clients,
    warmupMs: o.warmupMs,
    settleMs: SETTLE_MS,
    windowMs,
    windows: o.windows,
    tag: `r${process.pid}x${ctx.seq}`,
    seed: 12345,
  };
  const result = await loadgen(o, cfg, cpu);
  for (const w of result.windows) {
    const side = SIDES[w.target]!;
    addWindow(ctx, prefix, side, w, kinds);
  }
  for (const side of SIDES) {
    const ws = result.windows.filter((w) => SIDES[w.target] === side);
    const rates = ws.map((w) => fmt(w.opsPerSec, "ops/s")).join(" ");
    const gen = median(ws.map((w) => w.cpu * 100)).toFixed(0);
    ctx.log(`[${prefix}] ${side}: ${rates} ops/s; loadgen cpu ${gen}%`);
  }
}
