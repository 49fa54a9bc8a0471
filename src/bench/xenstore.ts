/**
 * `xenlab bench xenstore`: the same loads against xenlab's XenStore daemon and the reference
 * C xenstored (Xen 4.17, ../shared/refxs), started side by side in one run.
 *
 *   a  Xen's `test-xenstore -i N`, daemon and client pinned to CPU 0 (as refxs/bench.sh).
 *      ops/s = requests / wall time, where one iteration of the 12 tests sends 76 requests
 *      and the final cleanup 5 (counted in the reference's request trace, REFXS_TRACE=1);
 *      per-test latency = test-xenstore's own average of the timed part.
 *   b  32 closed-loop clients (loadgen.ts: READ/WRITE/transaction mix, own subtree each,
 *      one request outstanding) in a separate process pinned to CPU 1, daemons on CPU 0.
 *   c  500 idle connections (each has sent one request) held open on each daemon, then
 *      the single-client loads: test-xenstore as in (a), and loadgen with 1 client, on CPU 0.
 *
 * test-xenstore runs alternate between the daemons (xenlab first in runs 1, 3, 5, …); the
 * load generator drives both daemons in alternating windows from one process. Each figure
 * is the median over runs or windows. A ratio > 1 means xenlab is ahead: xenlab/baseline
 * for a rate, baseline/xenlab for a latency or a CPU cost. "daemon cpu per op" is the
 * daemon's user + system time from /proc over the requests it served.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { siblingModule } from "../lib/spawn.ts";
import { inRunOrder, jsonLine, median, type OptionTable, parseOptions, runBench } from "./common.ts";
import { type Daemon, hasTaskset, pin, startCommand, startReference, tail } from "./daemons.ts";
import { type Conn, type LoadConfig, type LoadResult, openIdle, type WindowResult } from "./loadgen.ts";
import { cpuSeconds } from "./procstat.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const FROM_SOURCE = import.meta.url.endsWith(".ts");
/** $XENLAB_SHARED/refxs (set by .ci/run), else ../shared/refxs beside the checkout. */
const REFXS = join(process.env.XENLAB_SHARED ?? join(REPO, "../shared"), "refxs");
const REFXS_CACHE = process.env.REFXS_CACHE ?? "/var/tmp/refxs-cache";
const TEST_XENSTORE = join(REFXS_CACHE, "root/usr/lib/xen-4.17/bin/test-xenstore");
const REFXS_LIB = join(REFXS_CACHE, "root/usr/lib/x86_64-linux-gnu");

/** Requests per `test-xenstore` iteration of all 12 tests, and for its final cleanup. */
const TEST_XENSTORE_REQS_PER_ITER = 76;
const TEST_XENSTORE_REQS_FIXED = 5;

const DAEMON_CPU = 0;
const CLIENT_CPU = 1;
const BASELINE_NAME = "cxenstored";
/** The baseline's name in the output: cxenstored, or xenlab's daemon traced (--trace). */
const TRACED_NAME = "xenlab+trace";

type CaseId = "a" | "b" | "c";
type Side = "xenlab" | "baseline";
type XenlabKind = "dist" | "src" | "ref";

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
  /** xenlab's daemon with `--state DIR` (journal), plus `--state-sync` (sync), or neither. */
  state: "none" | "journal" | "sync";
  /** The baseline is xenlab's own daemon with the live view's recorder on (`--live-trace`). */
  trace: boolean;
  /** xenlab's daemon with `--pcap FILE`: every request and reply captured (docs/capture.md). */
  pcap: boolean;
}

const DEFAULTS: Options = {
  json: false,
  runs: 5,
  windows: 12,
  iterations: 1000,
  idleIterations: 100,
  warmupMs: 1000,
  durationMs: 1000,
  idleDurationMs: 750,
  clients: 32,
  idle: 500,
  cases: new Set<CaseId>(["a", "b", "c"]),
  xenlab: "dist",
  xenlabCmd: null,
  pin: true,
  warmupRun: true,
  state: "none",
  trace: false,
  pcap: false,
};

const QUICK: Partial<Options> = {
  runs: 1,
  windows: 1,
  iterations: 30,
  idleIterations: 10,
  warmupMs: 200,
  durationMs: 300,
  idleDurationMs: 200,
};

export const USAGE = `usage: xenlab bench xenstore [options]

Runs the same loads against xenlab's xenstored and the reference C xenstored
(../shared/refxs) and prints ops/s, latencies and ratios (> 1: xenlab ahead).
  a  test-xenstore -i N, daemon and client pinned to CPU ${DAEMON_CPU}
  b  N clients, read/write/transaction mix, one request outstanding each
  c  the single-client loads with N idle connections open

options:
  --json               one JSON line per case instead of the table
  --quick              smoke run of a few seconds (1 run, short loads)
  --runs N             test-xenstore runs per daemon, medians reported (default ${DEFAULTS.runs})
  --windows N          load-generator windows per daemon, medians reported (default ${DEFAULTS.windows})
  --iterations N       test-xenstore -i for case a (default ${DEFAULTS.iterations})
  --idle-iterations N  test-xenstore -i for case c (default ${DEFAULTS.idleIterations})
  --duration S         seconds per window of case b (default ${DEFAULTS.durationMs / 1000})
  --idle-duration S    seconds per window of the 1-client load of case c (default ${DEFAULTS.idleDurationMs / 1000})
  --warmup S           load-generator warm-up per daemon (default ${DEFAULTS.warmupMs / 1000})
  --clients N          clients in case b (default ${DEFAULTS.clients})
  --idle N             idle connections in case c (default ${DEFAULTS.idle})
  --cases LIST         e.g. a,c (default a,b,c)
  --xenlab KIND        dist: node dist/cli/main.js xenstored (default; npm run build first)
                       src:  the daemon from source through tsx (slower start, same code)
                       ref:  a second reference C xenstored (to check the bench itself)
  --xenlab-cmd CMD     any daemon command; {socket} is replaced by the socket path
  --no-pin             do not pin (pinning needs taskset)
  --no-warmup-run      skip the test-xenstore -i 1000 warm-up of each daemon (for a daemon that
                       cannot pass test-xenstore, e.g. bench/floor-xenstored.mjs with --cases b)
  --state MODE         none (default); journal: xenlab's daemon runs with --state DIR (docs/journal.md);
                       sync: --state DIR --state-sync
  --trace              the baseline becomes xenlab's own daemon with tracing on (--live-trace:
                       the live view's recorder subscribed, as \`xenlab up --http\` with no viewer):
                       ratio = tracing off ÷ on, so 1.00 means tracing costs nothing
  --pcap               xenlab's daemon captures every request and reply (--pcap FILE, docs/capture.md)
`;

function positive(flag: string, v: string | undefined, allowZero = false): number {
  const n = Number(v);
  if (v === undefined || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
    throw new RangeError(
      `Invalid value for ${flag}: '${v ?? ""}'; expected a ${allowZero ? "non-negative" : "positive"} number`,
    );
  }
  return n;
}

const OPTIONS: OptionTable<Options> = {
  "--runs": (o, arg) => {
    o.runs = Math.floor(positive(arg.flag, arg.next()));
  },
  "--windows": (o, arg) => {
    o.windows = Math.floor(positive(arg.flag, arg.next()));
  },
  "--iterations": (o, arg) => {
    o.iterations = Math.floor(positive(arg.flag, arg.next()));
  },
  "--idle-iterations": (o, arg) => {
    o.idleIterations = Math.floor(positive(arg.flag, arg.next()));
  },
  "--duration": (o, arg) => {
    o.durationMs = positive(arg.flag, arg.next()) * 1000;
  },
  "--idle-duration": (o, arg) => {
    o.idleDurationMs = positive(arg.flag, arg.next()) * 1000;
  },
  "--warmup": (o, arg) => {
    o.warmupMs = positive(arg.flag, arg.next(), true) * 1000;
  },
  "--clients": (o, arg) => {
    o.clients = Math.floor(positive(arg.flag, arg.next()));
  },
  "--idle": (o, arg) => {
    o.idle = Math.floor(positive(arg.flag, arg.next(), true));
  },
  "--cases": (o, arg) => {
    const v = arg.next() ?? "";
    const list = v.split(",").filter((s) => s !== "");
    if (list.length === 0 || !list.every((s): s is CaseId => s === "a" || s === "b" || s === "c")) {
      throw new RangeError(`Invalid value for --cases: '${v}'; expected a comma-separated subset of a,b,c`);
    }
    o.cases = new Set(list);
  },
  "--xenlab": (o, arg) => {
    const v = arg.next();
    if (v !== "dist" && v !== "src" && v !== "ref") {
      throw new RangeError(`Invalid value for --xenlab: '${v ?? ""}'; expected dist, src or ref`);
    }
    o.xenlab = v;
  },
  "--xenlab-cmd": (o, arg) => {
    const v = arg.next() ?? "";
    const cmd = v.split(/\s+/).filter((s) => s !== "");
    if (cmd.length === 0) throw new RangeError("Invalid value for --xenlab-cmd: expected a command");
    o.xenlabCmd = cmd;
  },
  "--no-pin": (o) => {
    o.pin = false;
  },
  "--no-warmup-run": (o) => {
    o.warmupRun = false;
  },
  "--trace": (o) => {
    o.trace = true;
  },
  "--state": (o, arg) => {
    const v = arg.next();
    if (v !== "none" && v !== "journal" && v !== "sync") {
      throw new RangeError(`Invalid value for --state: '${v ?? ""}'; expected none, journal or sync`);
    }
    o.state = v;
  },
  "--pcap": (o) => {
    o.pcap = true;
  },
};

/** --quick counts wherever it stands: the other options override its values. */
export function parseArgs(argv: readonly string[]): Options | "help" {
  const quick = argv.includes("--quick");
  const start: Options = { ...DEFAULTS, ...(quick ? QUICK : {}) };
  return parseOptions(
    "xenstore",
    argv.filter((a) => a !== "--quick"),
    start,
    null,
    OPTIONS,
  );
}

// ---------------------------------------------------------------------------------------
// Results: one row per case, one sample per run and side.

type Better = "higher" | "lower";

interface Row {
  name: string;
  unit: string;
  better: Better;
  /** In the --json output (else only in the table, e.g. the generator's own CPU use). */
  json: boolean;
  samples: Record<Side, number[]>;
}

interface Goal {
  name: string;
  min: number;
}

class Results {
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

function ratio(row: Row): number {
  const x = median(row.samples.xenlab);
  const b = median(row.samples.baseline);
  return row.better === "higher" ? x / b : b / x;
}

function round(x: number, digits: number): number | null {
  if (!Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function jsonRow(row: Row, baselineName: string): string {
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

function fmt(x: number, unit: string): string {
  if (!Number.isFinite(x)) return "-";
  if (unit === "ops/s") return x >= 1e4 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
  if (unit === "%") return `${x.toFixed(0)}%`;
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

function cell(xs: readonly number[], unit: string): string {
  const m = fmt(median(xs), unit);
  if (xs.length < 2) return m;
  return `${m} (${fmt(Math.min(...xs), unit)}–${fmt(Math.max(...xs), unit)})`;
}

function table(res: Results, goals: readonly Goal[], xenlabLabel: string, baselineName: string): string {
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
      goal === undefined ? "" : `≥${goal.min} ${r >= goal.min ? "met" : "MISSED"}`,
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

interface TestXenstoreRun {
  seconds: number;
  ops: number;
  /** Average ns of each test's timed part, by test name. */
  tests: Map<string, number>;
}

function runProcess(
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

function pinned(o: Options, cpu: number, argv: string[]): string[] {
  return o.pin ? ["taskset", "-c", String(cpu), ...argv] : argv;
}

/** One `test-xenstore -i n` run against `socket`, timed from spawn to exit. */
async function testXenstore(o: Options, socket: string, n: number): Promise<TestXenstoreRun> {
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
async function loadgen(o: Options, cfg: LoadConfig, cpu: number): Promise<LoadResult> {
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

interface Ctx {
  o: Options;
  daemons: Record<Side, Daemon>;
  res: Results;
  log: (s: string) => void;
  seq: number;
}

/** The order of the two sides in run `r` (0-based): alternate who goes first. */
function order(r: number): Side[] {
  return inRunOrder(SIDES, r);
}

async function measuredCpu<T>(pid: number, f: () => Promise<T>): Promise<{ value: T; cpu: number }> {
  const c0 = cpuSeconds(pid);
  const value = await f();
  return { value, cpu: cpuSeconds(pid) - c0 };
}

function addTestXenstore(
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

const SIDES: readonly Side[] = ["xenlab", "baseline"];
const SETTLE_MS = 150;

function addWindow(
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
async function loadWindows(
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

async function caseA(ctx: Ctx): Promise<void> {
  const { o } = ctx;
  const name = "a/test-xenstore";
  for (let r = 0; r < o.runs; r++) {
    for (const side of order(r)) {
      const d = ctx.daemons[side];
      const { value, cpu } = await measuredCpu(d.pid, () => testXenstore(o, d.socket, o.iterations));
      addTestXenstore(ctx, name, side, value, cpu, true);
      ctx.log(
        `[a ${r + 1}/${o.runs}] ${side}: ${fmt(value.ops / value.seconds, "ops/s")} ops/s (${value.seconds.toFixed(2)} s)`,
      );
    }
  }
}

async function caseB(ctx: Ctx): Promise<void> {
  const { o } = ctx;
  await loadWindows(ctx, `b/${o.clients}-clients`, o.clients, o.durationMs, CLIENT_CPU, [
    "all",
    "read",
    "write",
    "tx",
  ]);
}

async function caseC(ctx: Ctx): Promise<void> {
  const { o } = ctx;
  const prefix = `c/${o.idle}-idle`;
  const idle: Conn[] = [];
  try {
    for (const side of ["xenlab", "baseline"] as const) {
      const t0 = performance.now();
      idle.push(...(await openIdle(ctx.daemons[side].socket, o.idle)));
      ctx.log(
        `[c] ${side}: ${o.idle} idle connections open (${((performance.now() - t0) / 1e3).toFixed(1)} s)`,
      );
    }
    for (let r = 0; r < o.runs; r++) {
      for (const side of order(r)) {
        const d = ctx.daemons[side];
        const tx = await measuredCpu(d.pid, () => testXenstore(o, d.socket, o.idleIterations));
        addTestXenstore(ctx, `${prefix}/test-xenstore`, side, tx.value, tx.cpu, false);
        ctx.log(
          `[c ${r + 1}/${o.runs}] ${side}: test-xenstore ${fmt(tx.value.ops / tx.value.seconds, "ops/s")} ops/s (${tx.value.seconds.toFixed(2)} s)`,
        );
      }
    }
    // The single client runs on the daemons' CPU, as test-xenstore does.
    await loadWindows(ctx, `${prefix}/1-client`, 1, o.idleDurationMs, DAEMON_CPU, ["all"]);
    const dropped = idle.filter((c) => c.closed).length;
    if (dropped > 0)
      ctx.log(`[c] warning: ${dropped} idle connections were closed by a daemon during the runs`);
  } finally {
    for (const c of idle) c.close();
  }
}

// ---------------------------------------------------------------------------------------

function xenlabArgv(o: Options): { argv: string[]; label: string } | null {
  if (o.xenlabCmd !== null) return { argv: o.xenlabCmd, label: "xenlab" };
  if (o.xenlab === "ref") return null;
  if (o.xenlab === "src") {
    return {
      argv: [
        process.execPath,
        "--import",
        "tsx",
        join(REPO, "src/cli/main.ts"),
        "xenstored",
        "--socket",
        "{socket}",
      ],
      label: "xenlab",
    };
  }
  const main = join(REPO, "dist/cli/main.js");
  if (!existsSync(main)) {
    throw new Error(
      `Cannot find xenlab's built daemon '${main}': run 'npm run build' first (or pass --xenlab src)`,
    );
  }
  return { argv: [process.execPath, main, "xenstored", "--socket", "{socket}"], label: "xenlab" };
}

function checkPeers(o: Options): void {
  if (!existsSync(join(REFXS, "start.sh"))) {
    throw new Error(`Cannot find the reference daemon's start.sh in '${REFXS}'`);
  }
  if ((o.cases.has("a") || o.cases.has("c")) && !existsSync(TEST_XENSTORE)) {
    throw new Error(
      `Cannot find '${TEST_XENSTORE}': start the reference once (../shared/refxs/start.sh) to fill its cache`,
    );
  }
  if (o.pin && !hasTaskset())
    throw new Error("Cannot pin without taskset: install util-linux or pass --no-pin");
}

export async function benchXenstore(o: Options): Promise<number> {
  checkPeers(o);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const xl = xenlabArgv(o);
  if (xl === null && o.pcap)
    throw new Error("Cannot capture with --xenlab ref: --pcap is xenlab's daemon's option");
  const dir = mkdtempSync(join(tmpdir(), "xenlab-bench-"));
  const started: Daemon[] = [];
  const cleanup = async () => {
    const stopping = started.splice(0);
    await Promise.all(stopping.map((d) => d.stop().catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    log(`bench: ${sig}, stopping the daemons`);
    // A signal handler cannot be awaited: the exit is the end of this chain, and it comes even
    // if stopping a daemon failed.
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    mkdirSync(join(dir, "ref"));
    mkdirSync(join(dir, "xl"));
    const baselineName = o.trace ? TRACED_NAME : BASELINE_NAME;
    if (o.trace && xl === null) throw new RangeError("--trace needs xenlab's daemon: not with --xenlab ref");
    const baseline =
      o.trace && xl !== null
        ? await startCommand(
            [...xl.argv, "--live-trace"],
            join(dir, "ref/socket"),
            join(dir, "ref/daemon.log"),
            TRACED_NAME,
            REPO,
          )
        : await startReference(REFXS, join(dir, "ref/socket"));
    started.push(baseline);
    const xlArgv =
      xl === null
        ? undefined
        : [
            ...xl.argv,
            ...(o.state === "none" ? [] : ["--state", join(dir, "xl/state")]),
            ...(o.state === "sync" ? ["--state-sync"] : []),
            ...(o.pcap ? ["--pcap", join(dir, "xl/xenstore.pcapng")] : []),
          ];
    const xenlab =
      xl === null || xlArgv === undefined
        ? await startReference(REFXS, join(dir, "xl/socket"), `${BASELINE_NAME} (as xenlab)`)
        : await startCommand(xlArgv, join(dir, "xl/socket"), join(dir, "xl/daemon.log"), xl.label, REPO);
    started.push(xenlab);
    const daemons = { xenlab, baseline };
    log(
      `bench: xenlab side: ${xenlab.label} pid ${xenlab.pid}${o.state === "none" ? "" : ` (--state: ${o.state})`}${o.pcap ? " (--pcap)" : ""}; baseline: ${baselineName} pid ${baseline.pid}`,
    );
    if (o.pin) {
      await pin(baseline.pid, DAEMON_CPU);
      await pin(xenlab.pid, DAEMON_CPU);
    }
    const ctx: Ctx = { o, daemons, res: new Results(), log, seq: 0 };
    const load0 = loadavg()[0]!;
    // Warm-up, not recorded: xenlab's daemon needed ~10% more CPU per request over its first
    // ~150k requests (JIT), so each side gets test-xenstore -i 1000 (76k requests) first.
    for (const side of ["xenlab", "baseline"] as const) {
      if (o.warmupRun) await testXenstore(o, daemons[side].socket, Math.min(1000, o.iterations));
    }
    if (o.cases.has("a")) await caseA(ctx);
    if (o.cases.has("b")) await caseB(ctx);
    if (o.cases.has("c")) await caseC(ctx);
    const goals: Goal[] = [
      { name: "a/test-xenstore", min: 1 },
      { name: `b/${o.clients}-clients`, min: 1 },
      { name: `c/${o.idle}-idle/test-xenstore`, min: 3 },
    ];
    if (o.json) {
      for (const row of ctx.res.rows.values())
        if (row.json) process.stdout.write(`${jsonRow(row, baselineName)}\n`);
    } else {
      process.stdout.write(`\n${table(ctx.res, o.trace ? [] : goals, xenlab.label, baselineName)}\n`);
      if (o.trace) {
        const cost = [...ctx.res.rows.values()]
          .filter((r) => r.unit === "ops/s" || r.name.endsWith("cpu per op"))
          .map((r) => `${r.name} ${((ratio(r) - 1) * 100).toFixed(1)}%`);
        process.stdout.write(`\ntracing on costs (off ÷ on − 1): ${cost.join(", ")}\n`);
      }
      const pinA = o.pin ? ` pinned to CPU ${DAEMON_CPU}` : "";
      const what = [
        o.cases.has("a") ? `a: test-xenstore -i ${o.iterations}${pinA}` : "",
        o.cases.has("b")
          ? `b: ${o.clients} clients, windows of ${o.durationMs / 1000} s alternating between the daemons${o.pin ? `, loadgen on CPU ${CLIENT_CPU}` : ""}`
          : "",
        o.cases.has("c")
          ? `c: ${o.idle} idle connections, test-xenstore -i ${o.idleIterations} and 1 client in windows of ${o.idleDurationMs / 1000} s${pinA}`
          : "",
      ].filter((x) => x !== "");
      process.stdout.write(
        `\nMedian (min–max) of ${o.runs} test-xenstore run(s) or ${o.windows} load window(s) per daemon; ratio > 1: xenlab ahead.\n${what.join("; ")}.\n`,
      );
      process.stdout.write(
        `load average of the VM (1 min) at start ${load0.toFixed(1)}, at end ${loadavg()[0]!.toFixed(1)} (${cpus().length} CPUs; other work on the VM adds noise)\n`,
      );
      const gen = ctx.res.rows.get(`b/${o.clients}-clients/loadgen cpu`);
      const busy = gen ? (["xenlab", "baseline"] as const).filter((s) => median(gen.samples[s]) >= 90) : [];
      if (busy.length > 0) {
        process.stdout.write(
          `note: the load generator used ≥90% of its CPU against ${busy.join(" and ")}: case b measured the generator there, not only the daemon; compare "daemon cpu per op"\n`,
        );
      }
      const a = ctx.res.rows.get("a/test-xenstore");
      const c = ctx.res.rows.get(`c/${o.idle}-idle/test-xenstore`);
      if (a && c) {
        const slow = (s: Side) => (median(a.samples[s]) / median(c.samples[s])).toFixed(1);
        process.stdout.write(
          `slow-down from ${o.idle} idle connections (a ÷ c): xenlab ${slow("xenlab")}×, ${baselineName} ${slow("baseline")}×\n`,
        );
      }
    }
    return 0;
  } catch (e) {
    // The daemon's log is about to be removed with the temporary directory: show its end.
    const xl = started.find((d) => d.label === "xenlab");
    if (xl !== undefined && e instanceof Error) {
      e.message += `\n--- end of xenlab's daemon log (${xl.log}):\n${tail(xl.log)}`;
    }
    throw e;
  } finally {
    await cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

export function run(argv: string[]): Promise<number> {
  return runBench("xenstore", argv, parseArgs, USAGE, benchXenstore);
}
