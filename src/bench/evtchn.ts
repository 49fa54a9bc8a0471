/**
 * `xenlab bench evtchn`: notify round trips between two domains through xenlab's event channels,
 * against a bare Atomics.wait/notify ping-pong between two plain workers in the same run.
 *
 *   block  both domains wait in EventChannelUpcall.block() (SCHEDOP_block: Atomics.wait on the
 *          wake word, then the upcall); each send is EventChannelUpcall.send from the worker.
 *   async  both domains run the async upcall loop (Atomics.waitAsync).
 *
 * The baseline of both cases is the same bare ping-pong: two counters in one Int32Array, each side
 * stores its count and notifies, then Atomics.wait's for the other's (spec/platform.md §1 (a)).
 * A bare waitAsync ping-pong is also measured, for information: it shows what the async case
 * costs in Node itself.
 *
 * Every run spawns fresh workers for each variant; the order within a run flips between runs and
 * each figure is the median over the runs. ratio = xenlab / baseline (> 1: xenlab is ahead) of the
 * medians. This VM moves between a fast and a slow wake-up regime from one second to the next
 * (spec/platform.md), so the table also gives the median of the per-run ratios, each taken between
 * measurements made a second apart.
 */
import { type MessagePort, Worker } from "node:worker_threads";
import { DOMID_SELF, EventChannels } from "../hv/evtchn.ts";
import type { PeerConfig, PeerReply, PeerSide } from "./evtchn-peer.ts";

export interface Options {
  json: boolean;
  runs: number;
  warmup: number;
  rounds: number;
}

const DEFAULTS: Options = { json: false, runs: 9, warmup: 1000, rounds: 10000 };
const QUICK: Partial<Options> = { runs: 3, warmup: 500, rounds: 3000 };
const TIMEOUT_MS = 10_000;

type VariantId = "xenlab-block" | "xenlab-async" | "atomics" | "atomics-waitasync";
/** The order within a run; odd runs go in reverse. Both xenlab variants sit next to the baseline. */
const VARIANTS: readonly VariantId[] = ["xenlab-async", "atomics", "xenlab-block", "atomics-waitasync"];

/** The JSON cases: xenlab variant against the baseline variant. */
const CASES = [
  { name: "block", xenlab: "xenlab-block", baseline: "atomics" },
  { name: "async", xenlab: "xenlab-async", baseline: "atomics" },
] as const;

const HELP = `usage: xenlab bench evtchn [options]

Notify round trips between two domains (worker threads) through xenlab's event channels,
against a bare Atomics.wait/notify ping-pong between two plain workers, in the same run.

  --json         one JSON line per case instead of the table
  --runs N       runs, medians reported (default ${DEFAULTS.runs})
  --rounds N     timed round trips per run and variant (default ${DEFAULTS.rounds})
  --warmup N     untimed round trips first (default ${DEFAULTS.warmup})
  --quick        --runs ${QUICK.runs} --rounds ${QUICK.rounds} --warmup ${QUICK.warmup}
`;

export function parseArgs(argv: readonly string[]): Options | "help" {
  const o: Options = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const int = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`Option '${a}' needs a whole number`);
      return v;
    };
    switch (a) {
      case "-h":
      case "--help":
        return "help";
      case "--json":
        o.json = true;
        break;
      case "--quick":
        Object.assign(o, QUICK);
        break;
      case "--runs":
        o.runs = Math.max(1, int());
        break;
      case "--rounds":
        o.rounds = Math.max(1, int());
        break;
      case "--warmup":
        o.warmup = int();
        break;
      default:
        throw new RangeError(`Unknown option '${a}'; see 'xenlab bench evtchn --help'`);
    }
  }
  return o;
}

/** A worker of the benchmark, from source (tsx registered in the worker) or from dist/. */
function spawnPeer(cfg: PeerConfig, transfer: MessagePort[]): Worker {
  const fromSource = import.meta.url.endsWith(".ts");
  const entry = new URL(`./evtchn-peer.${fromSource ? "ts" : "js"}`, import.meta.url);
  if (!fromSource) return new Worker(entry, { workerData: cfg, transferList: transfer });
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(boot, { eval: true, workerData: cfg, transferList: transfer });
}

function nextMessage(w: Worker): Promise<PeerReply> {
  return new Promise((res, rej) => {
    const onError = (err: Error): void => {
      w.off("message", onMessage);
      rej(err);
    };
    const onMessage = (m: PeerReply): void => {
      w.off("error", onError);
      res(m);
    };
    w.once("message", onMessage);
    w.once("error", onError);
  });
}

/** One round of one variant in two fresh workers: round trips per second. */
async function measure(v: VariantId, o: Options): Promise<number> {
  const common = { warmup: o.warmup, rounds: o.rounds, timeoutMs: TIMEOUT_MS };
  let ping: PeerSide;
  let pong: PeerSide;
  const wait = v === "xenlab-async" || v === "atomics-waitasync" ? "async" : "block";
  if (v === "xenlab-block" || v === "xenlab-async") {
    const ev = new EventChannels();
    const a = ev.addDomain(1);
    const b = ev.addDomain(2);
    const pa = ev.allocUnbound(1, DOMID_SELF, 2);
    const pb = ev.bindInterdomain(2, 1, pa);
    if (pa < 0 || pb < 0) throw new Error(`Cannot connect the domains: ${pa}, ${pb}`);
    ping = { kind: "xenlab", boot: a, port: pa };
    pong = { kind: "xenlab", boot: b, port: pb };
  } else {
    const words = new SharedArrayBuffer(8);
    ping = { kind: "atomics", words };
    pong = { kind: "atomics", words };
  }
  const transfer = (s: PeerSide): MessagePort[] => (s.kind === "xenlab" ? [s.boot.peers] : []);
  const wPing = spawnPeer({ ...ping, ...common, role: "ping", wait }, transfer(ping));
  const wPong = spawnPeer({ ...pong, ...common, role: "pong", wait }, transfer(pong));
  try {
    const r = await Promise.all([nextMessage(wPing), nextMessage(wPong)]);
    for (const m of r) if (!("ready" in m)) throw new Error(`A peer did not start: ${JSON.stringify(m)}`);
    const done = Promise.all([nextMessage(wPing), nextMessage(wPong)]);
    wPong.postMessage("go");
    wPing.postMessage("go");
    const [rp, rq] = await done;
    for (const m of [rp, rq]) {
      if ("ok" in m && !m.ok) throw new Error(`${v}: ${m.error}`);
    }
    if (!("ok" in rp) || !rp.ok) throw new Error(`${v}: no timing from the pinger`);
    return o.rounds / rp.seconds;
  } finally {
    await Promise.all([wPing.terminate(), wPong.terminate()]);
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function fmtRate(x: number): string {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${(x / 1e3).toFixed(1)} k`;
}

function table(samples: Map<VariantId, number[]>): string {
  const rows: string[][] = [
    ["case", "xenlab rt/s", "µs/rt", "baseline rt/s", "µs/rt", "ratio", "paired", "runs (xenlab)"],
  ];
  for (const c of CASES) {
    const x = median(samples.get(c.xenlab)!);
    const b = median(samples.get(c.baseline)!);
    const runs = samples
      .get(c.xenlab)!
      .map((r) => fmtRate(r).replace(" ", ""))
      .join(" ");
    rows.push([
      c.name,
      fmtRate(x),
      (1e6 / x).toFixed(1),
      fmtRate(b),
      (1e6 / b).toFixed(1),
      (x / b).toFixed(2),
      median(samples.get(c.xenlab)!.map((xr, r) => xr / samples.get(c.baseline)![r]!)).toFixed(2),
      runs,
    ]);
  }
  const wa = median(samples.get("atomics-waitasync")!);
  rows.push(["(bare waitAsync, informative)", "", "", fmtRate(wa), (1e6 / wa).toFixed(1), "", "", ""]);
  const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join("  ");
  const base = median(samples.get("atomics")!);
  return [
    "evtchn: notify round trips between two workers; baseline: bare Atomics.wait/notify ping-pong",
    ...rows.map(line),
    `baseline runs: ${samples
      .get("atomics")!
      .map((r) => fmtRate(r).replace(" ", ""))
      .join(" ")} (median ${fmtRate(base)})`,
    "goal: ratio ≥ 0.77 (within 1.3× of the baseline)",
  ].join("\n");
}

export async function run(argv: string[]): Promise<number> {
  let o: Options | "help";
  try {
    o = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`xenlab bench evtchn: ${(err as Error).message}\n`);
    return 2;
  }
  if (o === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  const samples = new Map<VariantId, number[]>(VARIANTS.map((v) => [v, []]));
  for (let r = 0; r < o.runs; r++) {
    for (const v of r % 2 === 0 ? VARIANTS : [...VARIANTS].reverse())
      samples.get(v)!.push(await measure(v, o));
    if (!o.json) process.stderr.write(`run ${r + 1}/${o.runs} done\n`);
  }
  if (o.json) {
    for (const c of CASES) {
      const x = median(samples.get(c.xenlab)!);
      const b = median(samples.get(c.baseline)!);
      const line = {
        bench: "evtchn",
        case: c.name,
        unit: "rt/s",
        xenlab: Math.round(x),
        baseline: Math.round(b),
        baseline_name: "atomics",
        ratio: Number((x / b).toFixed(3)),
      };
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
  } else {
    process.stdout.write(`${table(samples)}\n`);
  }
  return 0;
}
