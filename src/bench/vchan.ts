/**
 * `xenlab bench vchan`: stream throughput through a libxenvchan ring between two guests, against
 * a bare SharedArrayBuffer SPSC byte ring between two plain workers (the byte version of
 * `bench ring`'s sab-spsc baseline), in the same run.
 *
 *   xenlab    a host with two guests, each with the xen_vchan module; a server in the first (its
 *             right ring of the case's size, the left one in the page) pumps `bytes` in 64 KiB
 *             writes, a client in the second drains them in 64 KiB reads, both blocking as
 *             libxenvchan's calls do: notify bits, event channels, a wait when full or empty.
 *   sab-spsc  two workers and one SharedArrayBuffer ring of the same size: the same copies in and
 *             out, Atomics.notify on every index move, Atomics.wait when full or empty.
 *
 * Figures are MB/s at the reader, from its first byte to its last, after one untimed stream of
 * each (the first runs cold: JIT, first page touches). Each run measures every case's
 * two variants next to each other, the order flipping between runs; medians over the runs, ratio
 * = xenlab / baseline, and the median of the per-run ratios.
 */
import { pino } from "pino";
import { Host } from "../host/host.ts";
import { vchanCall, vchanPath } from "../host/vchan.ts";
import {
  alignColumns,
  BUSY_HELP,
  BUSY_OPTION,
  type BusyOption,
  busyHeader,
  eachRun,
  median,
  type OptionTable,
  pairedRatio,
  parseOptions,
  rateLine,
  runBench,
  withBusy,
} from "./common.ts";
import { runPeers } from "./pair.ts";
import type { VchanPeerConfig, VchanPeerReply } from "./vchan-peer.ts";

export interface Options extends BusyOption {
  json: boolean;
  runs: number;
  bytes: number;
  sizes: number[];
}

const MiB = 1 << 20;
const CHUNK = 65536;
const DEFAULTS: Options = { json: false, runs: 5, bytes: 64 * MiB, sizes: [2048, 65536, MiB], busy: 0 };
const QUICK: Partial<Options> = { runs: 1, bytes: 4 * MiB };
/** Header bytes of the baseline ring (vchan-peer.ts: indices, then the ring from byte 128). */
const SPSC_HEADER = 128;
/** Each guest's memory: a 1 MiB ring is 256 pages, beside the kernel's own. */
const GUEST_PAGES = 2048;

type Variant = "xenlab" | "sab-spsc";

const HELP = `usage: xenlab bench vchan [options]

Stream throughput through a libxenvchan ring between two guests (a server pumping, a client
draining, 64 KiB blocking writes and reads) against a bare SharedArrayBuffer SPSC byte ring of the
same size between two plain workers, in the same run. MB/s at the reader.

  --json         one JSON line per ring size instead of the table
  --runs N       runs, medians reported (default ${DEFAULTS.runs})
  --bytes N      bytes per stream (default ${DEFAULTS.bytes})
  --sizes LIST   ring sizes in bytes, comma-separated, each 2048 or a power of two from 4096 to
                 1048576 (default ${DEFAULTS.sizes.join(",")})
${BUSY_HELP}  --quick        --runs ${QUICK.runs} --bytes ${QUICK.bytes}
`;

const OPTIONS: OptionTable<Options> = {
  ...BUSY_OPTION,
  "--runs": (o, arg) => {
    o.runs = arg.int(1);
  },
  "--bytes": (o, arg) => {
    o.bytes = arg.int(1);
  },
  "--sizes": (o, arg) => {
    const list = (arg.next() ?? "").split(",").map(Number);
    const ok = (n: number) => n === 2048 || (Number.isInteger(Math.log2(n)) && n >= 4096 && n <= MiB);
    if (list.length === 0 || !list.every(ok))
      throw new RangeError("Option '--sizes' needs ring sizes of 2048 or powers of two from 4096 to 1048576");
    o.sizes = [...new Set(list)];
  },
};

export function parseArgs(argv: readonly string[]): Options | "help" {
  return parseOptions("vchan", argv, DEFAULTS, QUICK, OPTIONS);
}

const caseName = (size: number): string => (size >= MiB ? `${size / MiB}MiB` : `${size / 1024}KiB`);

/** The two guests and a counter for fresh XenStore paths. */
interface Guests {
  host: Host;
  a: number;
  b: number;
  next: number;
}

/** One stream through a fresh vchan: the server in `a` pumps, the client in `b` drains. */
async function measureXenlab(g: Guests, size: number, bytes: number): Promise<number> {
  const { host, a, b } = g;
  const path = vchanPath(a, b, `bench${g.next++}`);
  const s = (await vchanCall(host, a, "server", { peer: b, path, leftMin: 0, rightMin: size })) as {
    id: number;
  };
  const c = (await vchanCall(host, b, "client", { peer: a, path })) as { id: number };
  await vchanCall(host, a, "connected", { id: s.id });
  const drained = vchanCall(host, b, "drain", { id: c.id, chunk: CHUNK, hash: false }) as Promise<{
    bytes: number;
    seconds: number;
  }>;
  await vchanCall(host, a, "pump", { id: s.id, bytes, chunk: CHUNK, seed: 1, hash: false });
  await vchanCall(host, a, "close", { id: s.id });
  const d = await drained;
  await vchanCall(host, b, "close", { id: c.id });
  if (d.bytes !== bytes) throw new Error(`vchan ${caseName(size)}: ${d.bytes} bytes arrived of ${bytes}`);
  return bytes / d.seconds / 1e6;
}

async function measureBaseline(size: number, bytes: number): Promise<number> {
  const sab = new SharedArrayBuffer(SPSC_HEADER + size);
  const common = { kind: "sab-spsc", sab, size, bytes, chunk: CHUNK } as const;
  const [, r] = await runPeers<VchanPeerReply, VchanPeerConfig>(
    "vchan-peer",
    { ...common, role: "writer" },
    { ...common, role: "reader" },
    `vchan ${caseName(size)} sab-spsc`,
  );
  if (!("ok" in r && r.ok)) throw new Error(`vchan ${caseName(size)} sab-spsc: no result`);
  return bytes / r.seconds / 1e6;
}

type Samples = Map<number, { xenlab: number[]; base: number[] }>;

function table(o: Options, samples: Samples): string {
  const rows: string[][] = [
    ["ring", "xenlab MB/s", "baseline MB/s", "ratio", "paired", "runs (xenlab)", "runs (baseline)"],
  ];
  const mb = (x: number) => x.toFixed(0);
  for (const size of o.sizes) {
    const s = samples.get(size)!;
    const x = median(s.xenlab);
    const b = median(s.base);
    rows.push([
      caseName(size),
      mb(x),
      mb(b),
      (x / b).toFixed(2),
      pairedRatio(s.xenlab, s.base).toFixed(2),
      s.xenlab.map(mb).join(" "),
      s.base.map(mb).join(" "),
    ]);
  }
  return [
    `vchan: a ${o.bytes}-byte stream through a vchan ring between two guests; baseline: a bare SAB SPSC byte ring`,
    ...busyHeader(o.busy),
    "MB/s at the reader (medians; paired = median of per-run ratios); runs in MB/s",
    ...alignColumns(rows, (i, n) => i === 0 || i >= n - 2).map((l) => l.trimEnd()),
    "goal: ratio ≥ 0.5",
  ].join("\n");
}

export function run(argv: string[]): Promise<number> {
  return runBench("vchan", argv, parseArgs, HELP, bench);
}

async function bench(o: Options): Promise<number> {
  const samples: Samples = new Map(o.sizes.map((s) => [s, { xenlab: [], base: [] }]));
  const host = await Host.start({ log: pino({ level: "silent" }) });
  try {
    const a = (await host.createDomain({ name: "bench-vchan-a", maxPages: GUEST_PAGES })).domid;
    const b = (await host.createDomain({ name: "bench-vchan-b", maxPages: GUEST_PAGES })).domid;
    const g: Guests = { host, a, b, next: 0 };
    const order: [number, Variant][] = o.sizes.flatMap((s) => [
      [s, "xenlab"],
      [s, "sab-spsc"],
    ]);
    await withBusy(o.busy, async () => {
      // One untimed stream of each first: the guests' and workers' code is cold in the first.
      for (const [size, v] of order) {
        if (v === "xenlab") await measureXenlab(g, size, o.bytes);
        else await measureBaseline(size, o.bytes);
      }
      await eachRun(o, order, async ([size, v]) => {
        const s = samples.get(size)!;
        if (v === "xenlab") s.xenlab.push(await measureXenlab(g, size, o.bytes));
        else s.base.push(await measureBaseline(size, o.bytes));
      });
    });
  } finally {
    await host.stop();
  }
  if (o.json) {
    for (const size of o.sizes) {
      const s = samples.get(size)!;
      const x = median(s.xenlab);
      const b = median(s.base);
      process.stdout.write(`${rateLine("vchan", caseName(size), "MB/s", x, b, "sab-spsc", x / b, o.busy)}\n`);
    }
  } else {
    process.stdout.write(`${table(o, samples)}\n`);
  }
  return 0;
}
