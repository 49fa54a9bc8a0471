/**
 * `xenlab bench ring`: requests and responses through a one-page io/ring.h ring between two
 * domains, against a bare SharedArrayBuffer single-producer single-consumer queue pair between two
 * plain workers in the same run.
 *
 *   xenlab    a frontend and a backend domain (two workers) share one 4096-byte page laid out by
 *             src/ring/ring.ts and kick each other through an event channel (alloc_unbound +
 *             bind_interdomain here, EventChannelUpcall send/block in the workers). Kicks are
 *             suppressed as Xen's are: RING_PUSH_*_AND_CHECK_NOTIFY, RING_FINAL_CHECK_FOR_*.
 *   sab-spsc  a request queue and a response queue, each a SharedArrayBuffer with head/tail int32
 *             indexes and as many slots of the same size as the ring has; the producer stores the
 *             tail and calls Atomics.notify, a consumer Atomics.wait's only when it finds its queue
 *             empty.
 *
 * Cases: 64-byte and 112-byte entries (112 is blkif_request on x86_64; a page holds 32 of either),
 * each in synchronous batches of B: the frontend writes B requests, publishes them once, and waits
 * for their B responses (B = 1 is a ping-pong; B = 32 fills the ring). Both sides do the same
 * per-entry work (ring-peer.ts). Figures are requests completed per second.
 *
 * Every run spawns fresh workers for each variant; each xenlab variant runs next to its baseline
 * and the order within a run flips between runs. Each figure is the median over the runs; ratio =
 * xenlab / baseline (> 1: xenlab is ahead) of the medians, and the table also gives the median of
 * the per-run ratios (docs/platform.md §0: this VM moves between a fast and a slow wake-up regime).
 */

import { ioRing } from "../host/live-rings.ts";
import { newPage } from "../hv/page.ts";
import { ringSize } from "../ring/ring.ts";
import { XEN_PAGE_SIZE } from "../xen/xen.ts";
import {
  alignColumns,
  BUSY_HELP,
  BUSY_OPTION,
  type BusyOption,
  busyHeader,
  eachRun,
  fmtRate,
  fmtRuns,
  median,
  type OptionTable,
  pairedRatio,
  parseOptions,
  rateLine,
  runBench,
  TIMED_ROUNDS,
  type TimedRounds,
  withBusy,
} from "./common.ts";
import { connectedDomains, runPeers } from "./pair.ts";
import type { RingPeerConfig, RingPeerReply, RingPeerSide } from "./ring-peer.ts";

export interface Options extends TimedRounds, BusyOption {
  json: boolean;
  batches: number[];
  /**
   * The baseline is xenlab's ring with tracing on (off ÷ on): `no-viewer` as `--http` with nobody
   * on the page, `viewer` with the live view reading the ring every tick.
   */
  trace: "no-viewer" | "viewer" | null;
}

const DEFAULTS: Options = {
  json: false,
  runs: 9,
  warmup: 500,
  rounds: 5000,
  batches: [1, 8, 32],
  busy: 0,
  trace: null,
};
/** How often the live view reads a ring while a viewer is connected (src/host/live-server.ts). */
const LIVE_TICK_MS = 100;
const QUICK: Partial<Options> = { runs: 1, warmup: 50, rounds: 300 };
const TIMEOUT_MS = 10_000;
const SIZES = [64, 112] as const;
/** Header bytes of a baseline queue (ring-peer.ts: head @0, tail @64, entries @128). */
const SPSC_HEADER = 128;

type Variant = "xenlab" | "sab-spsc" | "xenlab+trace" | "xenlab+viewer";

interface Case {
  name: string;
  entrySize: number;
  batch: number;
}

const HELP = `usage: xenlab bench ring [options]

Requests and responses (64 and 112 bytes) through a one-page ring between two domains, with
event channels and notification suppression, against a bare SharedArrayBuffer SPSC queue pair
between two plain workers, in the same run. Synchronous batches: B requests, then their responses.

  --json         one JSON line per case instead of the table
  --runs N       runs, medians reported (default ${DEFAULTS.runs})
  --rounds N     timed batches per run and variant (default ${DEFAULTS.rounds})
  --warmup N     untimed batches first (default ${DEFAULTS.warmup})
  --batches LIST batch sizes, comma-separated, each 1 to the ring's 32 slots (default ${DEFAULTS.batches.join(",")})
  --trace        the baseline becomes the same xenlab ring with tracing on and no viewer
                 (xenlab+trace), as \`--http\` with nobody on the page: nothing on a ring's path
                 is traced, so this measures the method's noise floor; ratio = off ÷ on
  --trace-viewer the baseline is the same ring read by the live view every ${LIVE_TICK_MS} ms, as
                 with a viewer connected (xenlab+viewer)
${BUSY_HELP}  --quick        --runs ${QUICK.runs} --rounds ${QUICK.rounds} --warmup ${QUICK.warmup}
`;

const OPTIONS: OptionTable<Options> = {
  ...TIMED_ROUNDS,
  ...BUSY_OPTION,
  "--trace-viewer": (o) => {
    o.trace = "viewer";
  },
  "--trace": (o) => {
    o.trace = "no-viewer";
  },
  "--batches": (o, arg) => {
    const list = (arg.next() ?? "").split(",").map(Number);
    const slots = Math.min(...SIZES.map((s) => ringSize(XEN_PAGE_SIZE, s)));
    if (list.some((b) => !Number.isInteger(b) || b < 1 || b > slots)) {
      throw new RangeError(`Option '--batches' needs whole numbers from 1 to ${slots}, comma-separated`);
    }
    o.batches = [...new Set(list)];
  },
};

export function parseArgs(argv: readonly string[]): Options | "help" {
  return parseOptions("ring", argv, DEFAULTS, QUICK, OPTIONS);
}

function cases(o: Options): Case[] {
  return SIZES.flatMap((entrySize) =>
    o.batches.map((batch) => ({ name: `${entrySize}B/batch${batch}`, entrySize, batch })),
  );
}

/** One run of one variant: requests completed per second, and kicks and sleeps per request. */
interface Sample {
  rate: number;
  kicks: number;
  sleeps: number;
  /** CPU µs per request, both peer threads (their own CPU: steadier than the rate under load). */
  cpu: number;
}

/** One run of one variant of one case in two fresh workers. */
async function measure(c: Case, v: Variant, o: Options): Promise<Sample> {
  const slots = ringSize(XEN_PAGE_SIZE, c.entrySize);
  let front: RingPeerSide;
  let back: RingPeerSide;
  let reader: NodeJS.Timeout | null = null;
  if (v !== "sab-spsc") {
    // The toolstack's part: two domains, the ring page, and an event channel between them (the
    // frontend offers a port, the backend binds it, as the XenBus handshake does).
    const [f, b] = connectedDomains();
    const page = newPage(); // a domain's page, as the hypervisor populates it
    front = { kind: "xenlab", ...f, page };
    back = { kind: "xenlab", ...b, page };
    // The live view's work for this ring with a viewer connected: its indexes and last slots.
    // Tracing with no viewer adds nothing here: a ring and its event channel live in the two
    // workers' shared memory (EVTCHNOP_send does not go through the hypervisor), and no tracer
    // is on that path; the live view reads a ring only while a viewer is connected.
    if (v === "xenlab+viewer")
      reader = setInterval(() => ioRing(page, "ring", "bench", 1, "bench page", "ring-ref"), LIVE_TICK_MS);
  } else {
    const bytes = SPSC_HEADER + slots * c.entrySize;
    const req = new SharedArrayBuffer(bytes);
    const rsp = new SharedArrayBuffer(bytes);
    front = { kind: "sab-spsc", req, rsp };
    back = { kind: "sab-spsc", req, rsp };
  }
  const common = {
    entrySize: c.entrySize,
    slots,
    batch: c.batch,
    warmup: o.warmup,
    rounds: o.rounds,
    timeoutMs: TIMEOUT_MS,
  };
  const [rf, rb] = await runPeers<RingPeerReply, RingPeerConfig>(
    "ring-peer",
    { ...front, ...common, role: "front" },
    { ...back, ...common, role: "back" },
    `${c.name} ${v}`,
  ).finally(() => {
    if (reader !== null) clearInterval(reader);
  });
  if (!("ok" in rf && rf.ok && "ok" in rb && rb.ok)) throw new Error(`${c.name} ${v}: no result`);
  const requests = (o.warmup + o.rounds) * c.batch;
  return {
    rate: (o.rounds * c.batch) / rf.seconds,
    kicks: (rf.kicks + rb.kicks) / requests,
    sleeps: (rf.sleeps + rb.sleeps) / requests,
    cpu: (rf.cpuNs + rb.cpuNs) / 1000 / requests,
  };
}

type Samples = Map<string, { xenlab: Sample[]; base: Sample[] }>;

const rates = (xs: readonly Sample[]): number[] => xs.map((x) => x.rate);
const cpus = (xs: readonly Sample[]): number[] => xs.map((x) => x.cpu);

function table(cs: readonly Case[], samples: Samples, busy: number, trace: Options["trace"]): string {
  const rows: string[][] = [
    [
      "case",
      "xenlab ops/s",
      "baseline ops/s",
      "ratio",
      "paired",
      "kicks/req x|b",
      "sleeps/req x|b",
      "cpu µs/req x|b",
      "cpu paired",
      "runs (xenlab)",
      "runs (baseline)",
    ],
  ];
  const per = (xs: Sample[], k: "kicks" | "sleeps"): string => median(xs.map((x) => x[k])).toFixed(3);
  for (const c of cs) {
    const s = samples.get(c.name)!;
    const x = median(rates(s.xenlab));
    const b = median(rates(s.base));
    rows.push([
      c.name,
      fmtRate(x),
      fmtRate(b),
      (x / b).toFixed(2),
      pairedRatio(rates(s.xenlab), rates(s.base)).toFixed(2),
      `${per(s.xenlab, "kicks")}|${per(s.base, "kicks")}`,
      `${per(s.xenlab, "sleeps")}|${per(s.base, "sleeps")}`,
      `${median(cpus(s.xenlab)).toFixed(2)}|${median(cpus(s.base)).toFixed(2)}`,
      pairedRatio(cpus(s.base), cpus(s.xenlab)).toFixed(2),
      fmtRuns(rates(s.xenlab)),
      fmtRuns(rates(s.base)),
    ]);
  }
  return [
    trace === "viewer"
      ? "ring: requests + responses through a one-page ring between two domains; baseline: the same, read by the live view every 100 ms (ratio = off ÷ on)"
      : trace === "no-viewer"
        ? "ring: requests + responses through a one-page ring between two domains; baseline: the same with tracing on and no viewer (ratio = off ÷ on; nothing on the ring's path is traced)"
        : "ring: requests + responses through a one-page ring between two domains; baseline: bare SAB SPSC queues",
    ...busyHeader(busy),
    "ops/s = requests completed per second; batchB = B requests published at once, then their B responses",
    "kicks, sleeps, cpu (each peer thread's own CPU time): per request, both sides, xenlab|baseline (medians;",
    "  paired = median of per-run ratios; cpu paired = baseline cpu ÷ xenlab cpu, so > 1 when the baseline costs more)",
    ...alignColumns(rows, (i, n) => i === 0 || i >= n - 2).map((l) => l.trimEnd()),
    trace !== null
      ? "goal: paired (off ÷ on rate) and cpu paired (on ÷ off CPU) ≤ 1.02: tracing costs at most 2%; off and on alternate run by run (ABBA)"
      : "goal: ratio ≥ 0.5",
  ].join("\n");
}

export function run(argv: string[]): Promise<number> {
  return runBench("ring", argv, parseArgs, HELP, bench);
}

async function bench(o: Options): Promise<number> {
  const cs = cases(o);
  const samples: Samples = new Map(cs.map((c) => [c.name, { xenlab: [], base: [] }]));
  // Within a run each case's xenlab variant sits next to its baseline; odd runs go in reverse.
  const base: Variant =
    o.trace === "viewer" ? "xenlab+viewer" : o.trace === "no-viewer" ? "xenlab+trace" : "sab-spsc";
  const order: [Case, Variant][] = cs.flatMap((c) => [
    [c, "xenlab"],
    [c, base],
  ]);
  await withBusy(o.busy, () =>
    eachRun(o, order, async ([c, v]) => {
      const s = samples.get(c.name)!;
      (v === "xenlab" ? s.xenlab : s.base).push(await measure(c, v, o));
    }),
  );
  if (o.json) {
    for (const c of cs) {
      const s = samples.get(c.name)!;
      const x = median(rates(s.xenlab));
      const b = median(rates(s.base));
      const ratio = o.trace === null ? x / b : pairedRatio(rates(s.xenlab), rates(s.base));
      process.stdout.write(`${rateLine("ring", c.name, "ops/s", x, b, base, ratio, o.busy)}\n`);
    }
  } else {
    process.stdout.write(`${table(cs, samples, o.busy, o.trace)}\n`);
  }
  return 0;
}
