/**
 * `xenlab bench <name> [args]`: benchmarks that compare xenlab with a baseline measured in
 * the same run. The code lives in src/bench/ (so it is built into dist/); bench/*.ts are
 * thin entries that run the same code from source.
 */
type Bench = { summary: string; load: () => Promise<{ run(argv: string[]): Promise<number> }> };

const BENCHES: Record<string, Bench> = {
  xenstore: {
    summary: "xenstored vs the reference C xenstored: test-xenstore, 32 clients, 500 idle connections",
    load: () => import("../bench/xenstore.ts"),
  },
  evtchn: {
    summary: "event-channel notify round trips between two domains vs a bare Atomics.wait/notify ping-pong",
    load: () => import("../bench/evtchn.ts"),
  },
  ring: {
    summary: "requests and responses through a one-page ring between two domains vs bare SAB SPSC queues",
    load: () => import("../bench/ring.ts"),
  },
  journal: {
    summary: "the write path of xenstored --state vs fs.writeSync appends of the same record bytes",
    load: () => import("../bench/journal.ts"),
  },
  domains: {
    summary: "RSS per idle domain and domains per 24 GiB vs bare worker threads",
    load: () => import("../bench/domains.ts"),
  },
  blk: {
    summary: "4 KiB random and 1 MiB sequential I/O through a guest's PV disk vs node:fs on the same image",
    load: () => import("../bench/blk.ts"),
  },
};

function usage(): string {
  const lines = Object.entries(BENCHES).map(([name, b]) => `  ${name.padEnd(10)} ${b.summary}`);
  return `usage: xenlab bench <name> [--help | args]\n\nbenchmarks:\n${lines.join("\n")}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const bench = BENCHES[name];
  if (bench === undefined) {
    process.stderr.write(`xenlab bench: unknown benchmark '${name}'\n${usage()}`);
    return 2;
  }
  return (await bench.load()).run(rest);
}
