/**
 * What the `xenlab bench …` commands share: the command line (-h/--help, --json, --quick, unknown
 * options, whole-number values; exit code 2 on a bad option), the run order that alternates
 * between runs, the busy neighbours of --busy, medians, the rate format of the tables, column
 * alignment, and the `--json` line every benchmark prints.
 */
import { Worker } from "node:worker_threads";
import { errorMessage } from "../lib/errors.ts";

/** The option being read and the arguments after it. */
export interface OptionArgs {
  /** The option itself, e.g. `--runs`. */
  readonly flag: string;
  /** Takes the next argument, the option's value (undefined past the end). */
  next(): string | undefined;
  /** Takes the next argument as a whole number of at least `min`. */
  int(min: 0 | 1): number;
}

/** What each option of a benchmark does to its options, by option name. */
export type OptionTable<O> = Readonly<Record<string, (o: O, arg: OptionArgs) => void>>;

/**
 * Reads a benchmark's command line from `start`: -h/--help (at once), --json, --quick (`quick`
 * applied where it stands; null when the benchmark handles --quick itself) and the options of
 * `table`, in order. Throws a RangeError on an option it does not know or a bad value.
 */
export function parseOptions<O extends { json: boolean }>(
  bench: string,
  argv: readonly string[],
  start: O,
  quick: Partial<O> | null,
  table: OptionTable<O>,
): O | "help" {
  const o: O = { ...start };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const arg: OptionArgs = {
      flag: a,
      next: () => argv[++i],
      int: (min) => {
        const v = Number(argv[++i]);
        if (!Number.isInteger(v) || v < min) {
          throw new RangeError(`Option '${a}' needs a ${min === 1 ? "positive " : ""}whole number`);
        }
        return v;
      },
    };
    if (a === "-h" || a === "--help") return "help";
    if (a === "--json") o.json = true;
    else if (a === "--quick" && quick !== null) Object.assign(o, quick);
    else if (Object.hasOwn(table, a)) table[a]!(o, arg);
    else throw new RangeError(`Unknown option '${a}'; see 'xenlab bench ${bench} --help'`);
  }
  return o;
}

/** Options of a benchmark that times `rounds` after `warmup` untimed ones, `runs` times. */
export interface TimedRounds {
  runs: number;
  warmup: number;
  rounds: number;
}

/** --runs N and --rounds N (at least 1 each), --warmup N. */
export const TIMED_ROUNDS: OptionTable<TimedRounds> = {
  "--runs": (o, arg) => {
    o.runs = Math.max(1, arg.int(0));
  },
  "--rounds": (o, arg) => {
    o.rounds = Math.max(1, arg.int(0));
  },
  "--warmup": (o, arg) => {
    o.warmup = arg.int(0);
  },
};

/** Options of a benchmark that can run beside busy neighbours (--busy N). */
export interface BusyOption {
  busy: number;
}

/** --busy N: that many CPU-bound threads beside the measurement (withBusy). */
export const BUSY_OPTION: OptionTable<BusyOption> = {
  "--busy": (o, arg) => {
    o.busy = arg.int(0);
  },
};

/** The --busy line of a benchmark's --help. */
export const BUSY_HELP = `  --busy N       N CPU-bound threads spin beside both sides' measurement, as busy
                 neighbours on a shared machine (default 0)
`;

/**
 * What a busy neighbour runs: it says it has started, then spins on integer arithmetic for good.
 * A dynamic import, which both a script and a module may use (an eval'd worker is a module when
 * the process runs with --input-type=module).
 */
const SPIN = `
import("node:worker_threads").then(({ parentPort }) => {
  parentPort.postMessage("spinning");
  let x = 1;
  for (;;) x = (Math.imul(x, 1103515245) + 12345) | 0;
});
`;

/**
 * Runs `fn` beside `n` busy neighbours: plain worker threads spinning on arithmetic, as another
 * job's threads on a shared CI machine. They are all spinning before `fn` starts (so the xenlab
 * side and its baseline both run beside them, from the first measurement to the last) and are
 * terminated when it ends, however it ends (terminate() stops a worker even in an endless loop).
 * Once started they are unref'd, so they never keep the process alive; on SIGINT they end with
 * it, being its threads. n = 0 runs `fn` alone.
 */
export async function withBusy<T>(n: number, fn: () => Promise<T>): Promise<T> {
  const workers: Worker[] = [];
  let failed: Error | undefined;
  try {
    const started: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      // No execArgv: a plain thread, without the loaders (tsx) the process may run with.
      const w = new Worker(SPIN, { eval: true, execArgv: [] });
      workers.push(w);
      started.push(
        new Promise((resolve, reject) => {
          w.once("message", () => resolve());
          w.once("error", reject);
        }),
      );
      // A neighbour that fails after it started would leave the figures without their load.
      w.on("error", (e) => {
        failed ??= e;
      });
    }
    await Promise.all(started);
    // Held until they have started (else the process might leave while it waits for them), then
    // let go: they are no reason for the process to stay.
    for (const w of workers) w.unref();
    const r = await fn();
    if (failed !== undefined) throw new Error(`A busy neighbour failed: ${errorMessage(failed)}`);
    return r;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** The header line that says a benchmark ran beside busy neighbours; none without them. */
export function busyHeader(n: number): string[] {
  return n > 0 ? [`busy neighbours: ${n}`] : [];
}

/**
 * A benchmark's `run`: its options from `argv` (exit code 2 and the message on stderr if they are
 * wrong), `help` on stdout for -h/--help, else `main`.
 */
export async function runBench<O>(
  bench: string,
  argv: readonly string[],
  parse: (argv: readonly string[]) => O | "help",
  help: string,
  main: (o: O) => Promise<number>,
): Promise<number> {
  let o: O | "help";
  try {
    o = parse(argv);
  } catch (e) {
    process.stderr.write(`xenlab bench ${bench}: ${errorMessage(e)}\n`);
    return 2;
  }
  if (o === "help") {
    process.stdout.write(help);
    return 0;
  }
  return main(o);
}

/** The order of `items` in run `r` (0-based): as given in even runs, reversed in odd ones. */
export function inRunOrder<T>(items: readonly T[], r: number): T[] {
  return r % 2 === 0 ? [...items] : [...items].reverse();
}

/**
 * `o.runs` runs of `measure` over `items` in alternating order, with a progress line on stderr
 * after each run unless the output is JSON.
 */
export async function eachRun<T>(
  o: { runs: number; json: boolean },
  items: readonly T[],
  measure: (item: T) => Promise<void>,
): Promise<void> {
  for (let r = 0; r < o.runs; r++) {
    for (const item of inRunOrder(items, r)) await measure(item);
    if (!o.json) process.stderr.write(`run ${r + 1}/${o.runs} done\n`);
  }
}

/** The median; NaN for none. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The median of each run's ratio xenlab / baseline, runs paired by index (each xenlab run sits
 * next to its baseline): steadier than the ratio of the medians when the machine's speed drifts.
 */
export function pairedRatio(xenlab: readonly number[], baseline: readonly number[]): number {
  return median(xenlab.map((x, r) => x / baseline[r]!));
}

/** A rate for the tables: `1.23 M` or `45.6 k`. */
export function fmtRate(x: number): string {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${(x / 1e3).toFixed(1)} k`;
}

/** The rate of each run, short: `1.23M 45.6k …`. */
export function fmtRuns(rates: readonly number[]): string {
  return rates.map((r) => fmtRate(r).replace(" ", "")).join(" ");
}

/**
 * Table rows as lines of columns two spaces apart, each as wide as its widest cell; column `i` of
 * `n` is padded on the right where `left(i, n)`, else on the left.
 */
export function alignColumns(rows: readonly string[][], left: (i: number, n: number) => boolean): string[] {
  const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r.map((c, i) => (left(i, r.length) ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join("  "),
  );
}

/**
 * One `--json` line of a benchmark; every benchmark prints these keys in this order, then `busy`
 * (the number of busy neighbours) only when it ran beside some, so that a plain run's lines stay
 * as they were.
 */
export interface BenchLine {
  bench: string;
  case: string;
  unit: string;
  xenlab: number | null;
  baseline: number | null;
  baseline_name: string;
  ratio: number | null;
  busy?: number;
}

export function jsonLine(l: BenchLine): string {
  return JSON.stringify({
    bench: l.bench,
    case: l.case,
    unit: l.unit,
    xenlab: l.xenlab,
    baseline: l.baseline,
    baseline_name: l.baseline_name,
    ratio: l.ratio,
    ...(l.busy !== undefined && l.busy > 0 ? { busy: l.busy } : {}),
  });
}

/** A value of a `--json` line to 3 decimal places. */
const places3 = (v: number): number => Number(v.toFixed(3));

/** The `--json` line of a case, its figures rounded as they are to be printed. */
function caseLine(
  bench: string,
  name: string,
  unit: string,
  baselineName: string,
  xenlab: number,
  baseline: number,
  ratio: number,
  busy = 0,
): string {
  return jsonLine({ bench, case: name, unit, xenlab, baseline, baseline_name: baselineName, ratio, busy });
}

/**
 * The `--json` line of a rate (higher is better): whole rates, ratio to 3 places: xenlab / baseline,
 * unless the bench gives its own (`bench blk`: the median of each run's ratio); `busy`: the busy
 * neighbours it ran beside.
 */
export function rateLine(
  bench: string,
  name: string,
  unit: string,
  x: number,
  b: number,
  baselineName: string,
  ratio: number = x / b,
  busy = 0,
): string {
  return caseLine(bench, name, unit, baselineName, Math.round(x), Math.round(b), places3(ratio), busy);
}

/**
 * The `--json` line of a time per operation (lower is better), to 3 places; the ratio is
 * baseline / xenlab, so that > 1 still means xenlab is ahead.
 */
export function timeLine(
  bench: string,
  name: string,
  unit: string,
  x: number,
  b: number,
  baselineName: string,
): string {
  return caseLine(bench, name, unit, baselineName, places3(x), places3(b), places3(b / x));
}
