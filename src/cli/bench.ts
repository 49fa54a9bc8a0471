/**
 * `xenlab bench <name> [args]`: benchmarks that compare xenlab with a baseline measured in
 * the same run. The code lives in src/bench/ (so it is built into dist/); bench/*.ts are
 * thin entries that run the same code from source.
 */
import { type CommandTable, command, dispatch } from "./dispatch.ts";

const BENCHES: CommandTable = {
  prog: "xenlab bench",
  args: "<name> [--help | args]",
  noun: "benchmark",
  commands: {
    xenstore: command(
      "xenstored vs the reference C xenstored: test-xenstore, 32 clients, 500 idle connections",
      () => import("../bench/xenstore.ts"),
    ),
    evtchn: command(
      "event-channel notify round trips between two domains vs a bare Atomics.wait/notify ping-pong",
      () => import("../bench/evtchn.ts"),
    ),
    ring: command(
      "requests and responses through a one-page ring between two domains vs bare SAB SPSC queues",
      () => import("../bench/ring.ts"),
    ),
    vchan: command(
      "stream throughput through a vchan between two guests vs a bare SAB SPSC byte ring",
      () => import("../bench/vchan.ts"),
    ),
    journal: command(
      "the write path of xenstored --state vs fs.writeSync appends of the same record bytes",
      () => import("../bench/journal.ts"),
    ),
    migration: command(
      "dump and load of xenstored's whole state in Xen's migration stream vs --state's snapshot format",
      () => import("../bench/migration.ts"),
    ),
    domains: command(
      "RSS per idle domain and domains per 24 GiB vs bare worker threads",
      () => import("../bench/domains.ts"),
    ),
    blk: command(
      "4 KiB random and 1 MiB sequential I/O through a guest's PV disk vs node:fs on the same image",
      () => import("../bench/blk.ts"),
    ),
    "guest-migrate": command(
      "a guest's downtime when migrated (and saved and restored) vs creating it with its disk",
      () => import("../bench/guest-migrate.ts"),
    ),
    "blk-cp": command(
      "xenlab blk-cp of a file into a guest's disk vs cp of the same file onto an image",
      () => import("../bench/blk-cp.ts"),
    ),
  },
};

export function run(argv: string[]): Promise<number> {
  return dispatch(BENCHES, argv);
}
