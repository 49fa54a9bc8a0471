/**
 * `xenlab bench migration`: the whole-state dump and load of `xenlab xenstored` in Xen's
 * migration stream format (src/xenstore/migration.ts), against the same state through
 * `--state`'s snapshot format in the same run (src/xenstore/journal-format.ts, journal.ts).
 *
 *   dump      dumpState + encodeStateStream of a store          baseline: encodeDelta of all its nodes
 *   load      decodeStateStream + loadState into a fresh core   baseline: decodeDelta + restoreState
 *
 * The store: `--guests` introduced domains, each with `/local/domain/<id>` (owned by the guest,
 * readable by dom0), 4 vifs and 4 vbds of 6 keys each on both ends, and one watch; about 110
 * nodes a guest. Load goes through the core's requests (WRITE and SET_PERMS for each node, so the
 * accounting and a journal see it); the baseline sets the node table directly, as a restart
 * from `--state` does. Each run builds everything afresh; the order flips between runs;
 * figures are medians over runs.
 */
import { XenStoreCore } from "../xenstore/core.ts";
import { restoreState } from "../xenstore/journal.ts";
import { decodeDelta, encodeDelta, type Meta, readFrames } from "../xenstore/journal-format.ts";
import { dumpState, loadState } from "../xenstore/migration.ts";
import { decodeStateStream, encodeStateStream } from "../xenstore/migration-format.ts";
import { XsType } from "../xenstore/wire.ts";
import {
  alignColumns,
  eachRun,
  median,
  type OptionTable,
  parseOptions,
  runBench,
  timeLine,
} from "./common.ts";

export interface Options {
  json: boolean;
  runs: number;
  guests: number;
}

const DEFAULTS: Options = { json: false, runs: 7, guests: 100 };
const QUICK: Partial<Options> = { runs: 1, guests: 5 };

export const HELP = `usage: xenlab bench migration [options]

Dump and load of xenstored's whole state in Xen's migration stream format, against the same
state through xenstored --state's snapshot format (the baseline), in the same run.

options:
  --json         one JSON line per case
  --quick        smoke run (1 run, 5 guests)
  --runs N       runs, medians reported (default ${DEFAULTS.runs})
  --guests N     introduced domains in the store, ~110 nodes each (default ${DEFAULTS.guests})
`;

const OPTIONS: OptionTable<Options> = {
  "--runs": (o, arg) => {
    o.runs = arg.int(1);
  },
  "--guests": (o, arg) => {
    o.guests = arg.int(1);
  },
};

/** A store as the toolstack leaves it: guests with their devices' two ends, and their watches. */
function buildStore(guests: number): XenStoreCore {
  const core = new XenStoreCore();
  const tool = core.connectSocket();
  const send = (type: number, ...args: string[]) => {
    // A WRITE's value is not NUL-terminated.
    const text = type === XsType.WRITE ? `${args[0]}\0${args[1]}` : args.map((a) => `${a}\0`).join("");
    const payload = Buffer.from(text, "latin1");
    const r = core.step(tool, { type, reqId: 1, txId: 0, payload });
    if (r.reply.type === XsType.ERROR) throw new Error(`Bench setup failed: ${args.join(" ")}`);
  };
  const write = (path: string, value: string) => send(XsType.WRITE, path, value);
  for (let d = 1; d <= guests; d++) {
    const home = `/local/domain/${d}`;
    send(XsType.INTRODUCE, String(d), String(0x1000 + d), String(d + 10));
    write(`${home}/name`, `guest${d}`);
    send(XsType.SET_PERMS, home, `n${d}`, "r0");
    for (const [kind, n] of [
      ["vif", 4],
      ["vbd", 4],
    ] as const) {
      for (let i = 0; i < n; i++) {
        const fe = `${home}/device/${kind}/${i}`;
        const be = `/local/domain/0/backend/${kind}/${d}/${i}`;
        for (const k of ["state", "backend", "backend-id", "ring-ref", "event-channel", "protocol"])
          write(`${fe}/${k}`, `${k}-${i}`);
        for (const k of ["state", "frontend", "frontend-id", "online", "params", "mode"])
          write(`${be}/${k}`, `${k}-${i}`);
        send(XsType.SET_PERMS, fe, `b${d}`, "r0");
      }
    }
    core.watches.add(core.domains.get(d)!.conn!, `${home}/device`, "dev", home);
  }
  core.disconnect(tool);
  return core;
}

interface Sample {
  dump: number;
  dumpBase: number;
  load: number;
  loadBase: number;
  bytes: number;
  bytesBase: number;
  nodes: number;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

function measure(o: Options): Sample {
  const core = buildStore(o.guests);
  let t0 = process.hrtime.bigint();
  const stream = encodeStateStream(dumpState(core).stream);
  const dump = ms(t0);
  t0 = process.hrtime.bigint();
  const meta: Meta = {
    domains: [...core.domains.values()]
      .filter((x) => x.domid !== 0)
      .map((x) => ({ domid: x.domid, gfn: x.gfn, port: x.port })),
    special: [...core.specialPerms].map(([name, perms]) => ({ name, perms })),
  };
  const snap = encodeDelta({
    generation: core.store.generation,
    set: [...core.store.nodes.values()],
    deleted: [],
    meta,
  });
  const dumpBase = ms(t0);

  t0 = process.hrtime.bigint();
  const loaded = new XenStoreCore();
  loadState(loaded, decodeStateStream(stream));
  const load = ms(t0);
  t0 = process.hrtime.bigint();
  const base = new XenStoreCore();
  const d = decodeDelta(readFrames(snap, 0).payloads[0]!);
  const nodes = new Map(d.set.map((n) => [n.name, n]));
  restoreState(base, {
    epoch: 0,
    nodes,
    generation: d.generation,
    meta: d.meta,
    records: 0,
    tornTail: null,
    droppedBytes: 0,
  });
  const loadBase = ms(t0);
  if (loaded.store.nodes.size !== core.store.nodes.size || base.store.nodes.size !== core.store.nodes.size)
    throw new Error("Bench: a load lost nodes");
  return {
    dump,
    dumpBase,
    load,
    loadBase,
    bytes: stream.byteLength,
    bytesBase: snap.byteLength,
    nodes: core.store.nodes.size,
  };
}

export function run(argv: string[]): Promise<number> {
  return runBench(
    "migration",
    argv,
    (a) => parseOptions("migration", a, DEFAULTS, QUICK, OPTIONS),
    HELP,
    bench,
  );
}

async function bench(o: Options): Promise<number> {
  measure({ ...o, guests: Math.min(o.guests, 20) }); // warm-up (JIT), not recorded
  const samples: Sample[] = [];
  await eachRun(o, ["all"], async () => {
    samples.push(measure(o));
  });
  const m = (f: (s: Sample) => number) => median(samples.map(f));
  const rows = [
    ["case", "migration stream ms", "--state snapshot ms", "ratio", "bytes", "snapshot bytes"],
    ["dump", m((s) => s.dump), m((s) => s.dumpBase)],
    ["load", m((s) => s.load), m((s) => s.loadBase)],
  ];
  const nodes = samples[0]!.nodes;
  if (o.json) {
    for (const [name, x, b] of rows.slice(1) as [string, number, number][])
      process.stdout.write(
        `${timeLine("migration", `${name} ${nodes} nodes`, "ms", x, b, "--state snapshot")}\n`,
      );
    return 0;
  }
  const table = rows.map((r, i) =>
    i === 0
      ? (r as string[])
      : [
          r[0] as string,
          (r[1] as number).toFixed(2),
          (r[2] as number).toFixed(2),
          ((r[2] as number) / (r[1] as number)).toFixed(2),
          String(m((s) => s.bytes)),
          String(m((s) => s.bytesBase)),
        ],
  );
  process.stdout.write(
    `${[
      `migration: the whole state of a store of ${nodes} nodes (${o.guests} guests), medians of ${o.runs} runs`,
      "dump: dumpState + encode; load: decode + loadState (requests through the core) into a fresh core",
      "baseline: the same nodes in --state's snapshot format (encodeDelta; decodeDelta + restoreState); ratio = baseline / migration",
      ...alignColumns(table, (i) => i === 0).map((l) => l.trimEnd()),
    ].join("\n")}\n`,
  );
  return 0;
}
