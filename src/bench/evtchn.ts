/**
 * `xenlab bench evtchn`: notify round trips between two domains through xenlab's event channels,
 * against a bare Atomics.wait/notify ping-pong between two plain workers in the same run.
 *
 *   block  both domains wait in EventChannelUpcall.block() (SCHEDOP_block: Atomics.wait on the
 *          wake word, then the upcall); each send is EventChannelUpcall.send from the worker.
 *   async  both domains run the async upcall loop (Atomics.waitAsync) as the host's guests do:
 *          with the host's halt-polling window (--halt-poll-us, default 1000 µs) and dozing,
 *          under a poll governor of this bench's own (src/host/poll-governor.ts), so a halt polls
 *          while the machine has a core to spare and dozes beside a busy neighbour.
 *
 * The baseline of both cases is the same bare ping-pong: two counters in one Int32Array, each side
 * stores its count and notifies, then Atomics.wait's for the other's (docs/platform.md §1 (a)).
 * A bare waitAsync ping-pong is also measured, for information: it shows what the async case
 * costs in Node itself.
 *
 * Every run spawns fresh workers for each variant; the order within a run flips between runs and
 * each figure is the median over the runs. ratio = xenlab / baseline (> 1: xenlab is ahead) of the
 * medians. This VM moves between a fast and a slow wake-up regime from one second to the next
 * (docs/platform.md §0), so the table also gives the median of the per-run ratios, each taken between
 * measurements made a second apart.
 */

import { availableParallelism } from "node:os";
import { PollGovernor } from "../host/poll-governor.ts";
import { HALT_POLL_US_DEFAULT } from "../hv/hypervisor.ts";
import { POLLERS } from "../xen/domain-boot.ts";
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
  pairedRatio,
  parseOptions,
  rateLine,
  runBench,
  TIMED_ROUNDS,
  type TimedRounds,
  withBusy,
} from "./common.ts";
import type { PeerConfig, PeerReply, PeerSide } from "./evtchn-peer.ts";
import { connectedDomains, runPeers } from "./pair.ts";

export interface Options extends TimedRounds, BusyOption {
  json: boolean;
  /** The async case's halt-polling window, µs (0: no polling or dozing, every halt sleeps in waitAsync). */
  haltPollUs: number;
}

const DEFAULTS: Options = {
  json: false,
  runs: 9,
  warmup: 1000,
  rounds: 10000,
  busy: 0,
  haltPollUs: HALT_POLL_US_DEFAULT,
};
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
  --halt-poll-us N
                 the async case's halt-polling window, µs, as a guest's (default the host's,
                 ${HALT_POLL_US_DEFAULT}; 0: no polling or dozing, every halt sleeps in waitAsync)
${BUSY_HELP}  --quick        --runs ${QUICK.runs} --rounds ${QUICK.rounds} --warmup ${QUICK.warmup}
`;

export function parseArgs(argv: readonly string[]): Options | "help" {
  return parseOptions("evtchn", argv, DEFAULTS, QUICK, {
    ...TIMED_ROUNDS,
    ...BUSY_OPTION,
    "--halt-poll-us": (o, arg) => {
      o.haltPollUs = arg.int(0);
    },
  });
}

/** One round of one variant in two fresh workers: round trips per second. */
async function measure(v: VariantId, o: Options, pollers: SharedArrayBuffer): Promise<number> {
  const common = {
    warmup: o.warmup,
    rounds: o.rounds,
    timeoutMs: TIMEOUT_MS,
    haltPollUs: o.haltPollUs,
    pollers,
  };
  let ping: PeerSide;
  let pong: PeerSide;
  const wait = v === "xenlab-async" || v === "atomics-waitasync" ? "async" : "block";
  if (v === "xenlab-block" || v === "xenlab-async") {
    const [a, b] = connectedDomains();
    ping = { kind: "xenlab", ...a };
    pong = { kind: "xenlab", ...b };
  } else {
    const words = new SharedArrayBuffer(8);
    ping = { kind: "atomics", words };
    pong = { kind: "atomics", words };
  }
  const [rp] = await runPeers<PeerReply, PeerConfig>(
    "evtchn-peer",
    { ...ping, ...common, role: "ping", wait },
    { ...pong, ...common, role: "pong", wait },
    v,
  );
  if (!("ok" in rp) || !rp.ok) throw new Error(`${v}: no timing from the pinger`);
  return o.rounds / rp.seconds;
}

function table(samples: Map<VariantId, number[]>, busy: number): string {
  const rows: string[][] = [
    ["case", "xenlab rt/s", "µs/rt", "baseline rt/s", "µs/rt", "ratio", "paired", "runs (xenlab)"],
  ];
  for (const c of CASES) {
    const x = median(samples.get(c.xenlab)!);
    const b = median(samples.get(c.baseline)!);
    rows.push([
      c.name,
      fmtRate(x),
      (1e6 / x).toFixed(1),
      fmtRate(b),
      (1e6 / b).toFixed(1),
      (x / b).toFixed(2),
      pairedRatio(samples.get(c.xenlab)!, samples.get(c.baseline)!).toFixed(2),
      fmtRuns(samples.get(c.xenlab)!),
    ]);
  }
  const wa = median(samples.get("atomics-waitasync")!);
  rows.push(["(bare waitAsync, informative)", "", "", fmtRate(wa), (1e6 / wa).toFixed(1), "", "", ""]);
  const base = median(samples.get("atomics")!);
  return [
    "evtchn: notify round trips between two workers; baseline: bare Atomics.wait/notify ping-pong",
    ...busyHeader(busy),
    ...alignColumns(rows, (i, n) => i === 0 || i === n - 1),
    `baseline runs: ${fmtRuns(samples.get("atomics")!)} (median ${fmtRate(base)})`,
    busy > 0
      ? "goal: ratio ≥ 0.5 beside busy neighbours (issue 19)"
      : "goal: ratio ≥ 0.77 (within 1.3× of the baseline)",
  ].join("\n");
}

export function run(argv: string[]): Promise<number> {
  return runBench("evtchn", argv, parseArgs, HELP, bench);
}

async function bench(o: Options): Promise<number> {
  const samples = new Map<VariantId, number[]>(VARIANTS.map((v) => [v, []]));
  // The host's word POLLERS and its governor, for the async case's two domains.
  const pollers = new SharedArrayBuffer(POLLERS.bytes);
  const words = new Int32Array(pollers);
  Atomics.store(words, POLLERS.limit, availableParallelism()); // as the host, until the first samples
  const governor = new PollGovernor({
    target: {
      get awakeThreads() {
        return Atomics.load(words, POLLERS.awake);
      },
      get pollLimit() {
        return Atomics.load(words, POLLERS.limit);
      },
      set pollLimit(n: number) {
        Atomics.store(words, POLLERS.limit, n);
      },
    },
  });
  governor.start();
  try {
    await withBusy(o.busy, () =>
      eachRun(o, VARIANTS, async (v) => {
        samples.get(v)!.push(await measure(v, o, pollers));
      }),
    );
  } finally {
    governor.stop();
  }
  if (!o.json) {
    const allowed = governor.samples === 0 ? 1 : 1 - governor.contendedSamples / governor.samples;
    process.stdout.write(
      `halt polling: allowed in ${Math.round(allowed * 100)}% of the governor's samples\n`,
    );
  }
  if (o.json) {
    for (const c of CASES) {
      const x = median(samples.get(c.xenlab)!);
      const b = median(samples.get(c.baseline)!);
      process.stdout.write(`${rateLine("evtchn", c.name, "rt/s", x, b, "atomics", x / b, o.busy)}\n`);
    }
  } else {
    process.stdout.write(`${table(samples, o.busy)}\n`);
  }
  return 0;
}
