/**
 * `xenlab bench domains`: what one idle domain costs, and how many fit in one machine.
 *
 * Each variant runs in a fresh child process, so neither inherits the other's heap:
 *
 *   xenlab  a host (hypervisor, xenstored, dom0) is started; after it settles its RSS is read;
 *           then N guests are created (built, described in XenStore, introduced, booted: each a
 *           worker with its kernel, XenStore ring and event channels) and left idle; after they
 *           settle the RSS is read again. Cost per domain = growth / N.
 *   bare    the same with N plain worker threads that only keep themselves alive: the floor of
 *           any design that gives each domain its own thread, as isolation needs (a domain's
 *           pages are reachable only from its own worker; README "Domains and isolation").
 *
 * ratio = bare / xenlab (> 1 would mean a domain is cheaper than a bare worker; the closer to 1,
 * the less xenlab adds). Domains per machine = 24 GiB / per-domain RSS, the host's own base left
 * out. A process also runs out of memory maps (vm.max_map_count) before it runs out of RAM, so the
 * bench also reports the domains one process holds by that limit. Run after `npm run build`: from source each domain's worker also loads tsx.
 */
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { pino } from "pino";
import { type BenchLine, jsonLine, type OptionTable, parseOptions, runBench } from "./common.ts";
import { type StormResult, storm, stormJson, stormTable } from "./storm.ts";

interface Options {
  json: boolean;
  domains: number;
  settleMs: number;
  /** --storm N: the boot storm (storm.ts) instead, N guests, `runs` times. */
  storm?: number;
  runs: number;
}

const DEFAULTS: Options = { json: false, domains: 32, settleMs: 1500, runs: 1 };
const QUICK: Partial<Options> = { domains: 4, settleMs: 300 };
const MACHINE_BYTES = 24 * 1024 ** 3;
const MIB = 1024 * 1024;

const HELP = `usage: xenlab bench domains [options]

RSS per idle domain (host with N guests booted vs the host alone), against N bare worker
threads, each variant in a fresh process; and how many domains 24 GiB holds.

  --json         one JSON line per case instead of the table
  --domains N    guests (and bare workers) per run (default ${DEFAULTS.domains})
  --settle MS    wait before each RSS reading (default ${DEFAULTS.settleMs})
  --quick        --domains ${QUICK.domains} --settle ${QUICK.settleMs}

  --storm N      a boot storm instead: N guests created at once, each with a console and
                 a disk; the time until every device is Connected (against N bare workers
                 started at once), XenStore requests per guest and the slowest step
  --runs R       with --storm: R storms, each in a fresh process (default 1)
`;

const OPTIONS: OptionTable<Options> = {
  "--domains": (o, arg) => {
    o.domains = arg.int(1);
  },
  "--settle": (o, arg) => {
    o.settleMs = arg.int(1);
  },
  "--storm": (o, arg) => {
    o.storm = arg.int(1);
  },
  "--runs": (o, arg) => {
    o.runs = arg.int(1);
  },
};

function parseArgs(argv: readonly string[]): Options | "help" {
  return parseOptions("domains", argv, DEFAULTS, QUICK, OPTIONS);
}

interface ChildResult {
  base: number;
  loaded: number;
  /** Memory maps of the process (/proc/self/maps lines), before and after. */
  mapsBase: number;
  mapsLoaded: number;
}

function maps(): number {
  try {
    return readFileSync("/proc/self/maps", "latin1").split("\n").length - 1;
  } catch {
    return 0;
  }
}

function maxMapCount(): number {
  try {
    return Number(readFileSync("/proc/sys/vm/max_map_count", "latin1").trim());
  } catch {
    return 0;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** In the child: one variant, RSS before and after N domains (or workers). */
async function child(variant: string, n: number, settleMs: number): Promise<ChildResult> {
  if (variant === "bare") {
    await sleep(settleMs);
    const base = process.memoryUsage().rss;
    const mapsBase = maps();
    const workers: Worker[] = [];
    for (let i = 0; i < n; i++) {
      const w = new Worker(
        "require('node:worker_threads').parentPort.postMessage(0); setInterval(() => {}, 1e9);",
        {
          eval: true,
        },
      );
      await new Promise((r) => w.once("message", r));
      workers.push(w);
    }
    await sleep(settleMs);
    const loaded = process.memoryUsage().rss;
    const mapsLoaded = maps();
    await Promise.all(workers.map((w) => w.terminate()));
    return { base, loaded, mapsBase, mapsLoaded };
  }
  const { Host } = await import("../host/host.ts");
  const host = await Host.start({ log: pino({ level: "silent" }) });
  await sleep(settleMs);
  const base = process.memoryUsage().rss;
  const mapsBase = maps();
  for (let i = 0; i < n; i++) await host.createDomain({ name: `idle${i}` });
  await sleep(settleMs);
  const loaded = process.memoryUsage().rss;
  const mapsLoaded = maps();
  await host.stop();
  return { base, loaded, mapsBase, mapsLoaded };
}

function runChild<R = ChildResult>(variant: string, o: Options, n = o.domains): Promise<R> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const c = fork(self, ["--child", variant, String(n), String(o.settleMs)], {
      stdio: ["ignore", "pipe", "inherit", "ipc"],
    });
    let out = "";
    c.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    c.on("error", reject);
    c.on("exit", (code) => {
      if (code !== 0) reject(new Error(`bench domains: the ${variant} child exited with ${code}`));
      else resolve(JSON.parse(out) as R);
    });
  });
}

export function run(argv: string[]): Promise<number> {
  return runBench("domains", argv, parseArgs, HELP, bench);
}

async function stormBench(o: Options, n: number): Promise<number> {
  const all: StormResult[] = [];
  for (let i = 0; i < o.runs; i++) {
    const r = await runChild<StormResult>("storm", o, n);
    all.push(r);
    process.stdout.write(
      `${o.json ? stormJson(r) : `${o.runs > 1 ? `run ${i + 1}/${o.runs}: ` : ""}${stormTable(r)}\n`}\n`,
    );
  }
  if (o.runs > 1 && !o.json) {
    const ms = all.map((r) => r.allMs.toFixed(0)).join(" ");
    const bare = all.map((r) => r.bareMs.toFixed(0)).join(" ");
    process.stdout.write(
      `all ${o.runs} runs, ms until every device was Connected: ${ms}; bare workers: ${bare}\n`,
    );
  }
  return 0;
}

async function bench(o: Options): Promise<number> {
  if (o.storm !== undefined) return stormBench(o, o.storm);
  const x = await runChild("xenlab", o);
  const b = await runChild("bare", o);
  const perDomain = (x.loaded - x.base) / o.domains;
  const perWorker = (b.loaded - b.base) / o.domains;
  const rows: BenchLine[] = [
    {
      bench: "domains",
      case: "rss-per-idle-domain",
      unit: "MiB",
      xenlab: round(perDomain / MIB),
      baseline: round(perWorker / MIB),
      baseline_name: "bare-worker",
      ratio: round(perWorker / perDomain),
    },
    {
      bench: "domains",
      case: "domains-per-24GiB",
      unit: "domains",
      xenlab: Math.floor(MACHINE_BYTES / perDomain),
      baseline: Math.floor(MACHINE_BYTES / perWorker),
      baseline_name: "bare-worker",
      ratio: round(perWorker / perDomain),
    },
    {
      bench: "domains",
      case: "domains-per-process",
      unit: "domains",
      xenlab: ceiling(x, o.domains),
      baseline: ceiling(b, o.domains),
      baseline_name: "bare-worker",
      ratio: round(ceiling(x, o.domains) / ceiling(b, o.domains)),
    },
  ];
  if (o.json) {
    for (const r of rows) process.stdout.write(`${jsonLine(r)}\n`);
    return 0;
  }
  process.stdout.write(`case                    unit        xenlab   bare worker   ratio\n`);
  for (const r of rows) {
    process.stdout.write(
      `${r.case.padEnd(23)} ${r.unit.padEnd(8)} ${String(r.xenlab).padStart(9)} ${String(r.baseline).padStart(13)} ${String(r.ratio).padStart(7)}\n`,
    );
  }
  process.stdout.write(
    `\n${o.domains} idle guests (and ${o.domains} bare workers), each variant in a fresh process; host base RSS ${round(x.base / MIB)} MiB.\n` +
      `domains-per-process: the memory maps each domain adds, against vm.max_map_count (${maxMapCount()}):\n` +
      "V8 aborts the process when they run out, long before RAM does (docs/platform.md, worker limits).\n",
  );
  return 0;
}

/** How many domains one process holds before its memory maps reach vm.max_map_count. */
function ceiling(r: ChildResult, n: number): number {
  const perDomain = (r.mapsLoaded - r.mapsBase) / n;
  return perDomain > 0 ? Math.floor((maxMapCount() - r.mapsBase) / perDomain) : 0;
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

if (process.argv[2] === "--child") {
  const [, , , variant, n, settle] = process.argv;
  (variant === "storm" ? storm(Number(n)) : child(variant!, Number(n), Number(settle))).then(
    (r) => {
      process.stdout.write(JSON.stringify(r));
      process.exit(0);
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
