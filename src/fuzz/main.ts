/**
 * The fuzz run: `npm run fuzz -- [--count N] [--seed S] [--target core|socket|ring|all]
 * [--corpus DIR] [--replay HEX] [--json]`. By default a million requests across the three
 * targets (core 80 %, socket 10 %, ring 10 %) with a fresh seed, printed first; afterwards
 * requests/s per target, the replies and errors seen, outcomes per request type and per kind of
 * path, the mutators used. A failure prints its seed and the bytes that replay it, and exits 1.
 */
import { FuzzFailure, FuzzStats } from "./check.ts";
import { defaultCorpusDir, loadCorpus } from "./corpus.ts";
import { fromHex } from "./mutate.ts";
import type { TargetOptions } from "./target.ts";
import { fuzzCore } from "./target-core.ts";
import { fuzzRing } from "./target-ring.ts";
import { fuzzSocket } from "./target-socket.ts";

const TARGETS = {
  core: { run: fuzzCore, share: 0.8 },
  socket: { run: fuzzSocket, share: 0.1 },
  ring: { run: fuzzRing, share: 0.1 },
} as const;
type TargetName = keyof typeof TARGETS;

const HELP = `usage: npm run fuzz -- [options]

  --count N        requests to deliver in all (default 1000000; split 80/10/10 by --target all)
  --seed S         32-bit seed (default: a fresh one, printed)
  --target T       core | socket | ring | all (default all)
  --corpus DIR     corpus of *.bin packets (default test/fuzz/corpus)
  --replay HEX     send these bytes once to a fresh target, then the well-behaved client
  --json           one JSON line of counters at the end
`;

interface Options {
  count: number;
  seed: number;
  targets: TargetName[];
  corpus: string;
  replay: Uint8Array | null;
  json: boolean;
}

function parse(argv: readonly string[]): Options | "help" {
  const o: Options = {
    count: 1_000_000,
    seed: (Date.now() ^ (process.pid << 16)) >>> 0,
    targets: ["core", "socket", "ring"],
    corpus: defaultCorpusDir(),
    replay: null,
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new RangeError(`Option '${a}' needs a value`);
      return v;
    };
    const whole = (): number => {
      const v = value();
      const n = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(n))
        throw new RangeError(`Option '${a}' needs a whole number, got '${v}'`);
      return n;
    };
    if (a === "-h" || a === "--help") return "help";
    else if (a === "--count") o.count = whole();
    else if (a === "--seed") o.seed = whole() >>> 0;
    else if (a === "--corpus") o.corpus = value();
    else if (a === "--replay") o.replay = fromHex(value());
    else if (a === "--json") o.json = true;
    else if (a === "--target") {
      const t = value();
      if (t === "all") o.targets = ["core", "socket", "ring"];
      else if (Object.hasOwn(TARGETS, t)) o.targets = [t as TargetName];
      else throw new RangeError(`Unknown target '${t}': core, socket, ring or all`);
    } else throw new RangeError(`Unknown option '${a}'; see --help`);
  }
  return o;
}

/** A counter table, largest first. */
function table(title: string, m: ReadonlyMap<string, number>, limit = 60): string {
  const rows = [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const w = Math.max(...rows.map((r) => r[0].length), 8);
  const shown = rows.slice(0, limit).map(([k, n]) => `  ${k.padEnd(w)} ${String(n).padStart(9)}`);
  if (rows.length > limit) shown.push(`  … ${rows.length - limit} more`);
  return `${title} (${rows.length}):\n${shown.join("\n")}\n`;
}

const rate = (n: number, s: number) => (s > 0 ? Math.round(n / s).toLocaleString("en-US") : "-");

export async function run(argv: readonly string[]): Promise<number> {
  let o: Options | "help";
  try {
    o = parse(argv);
  } catch (e) {
    process.stderr.write(`fuzz: ${(e as Error).message}\n`);
    return 2;
  }
  if (o === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  const corpus = loadCorpus(o.corpus).map((e) => e.bytes);
  const shares = o.targets.reduce((s, t) => s + TARGETS[t].share, 0);
  process.stdout.write(
    `fuzz: seed ${o.seed}, ${o.replay === null ? `${o.count} requests` : "replay"}, ` +
      `targets ${o.targets.join(", ")}, corpus ${corpus.length} packets\n`,
  );
  const total = new FuzzStats();
  const per: string[] = [];
  for (const t of o.targets) {
    const stats = new FuzzStats();
    const count = Math.max(1, Math.round((o.count * TARGETS[t].share) / shares));
    const opts: TargetOptions = {
      seed: o.seed,
      count,
      corpus,
      stats,
      ...(o.replay === null ? {} : { replay: o.replay }),
    };
    try {
      await TARGETS[t].run(opts);
    } catch (e) {
      if (!(e instanceof FuzzFailure)) throw e;
      process.stdout.write(e.report());
      return 1;
    }
    total.merge(stats);
    const line =
      `${t.padEnd(7)} ${String(stats.packets).padStart(9)} requests in ${stats.seconds.toFixed(1).padStart(6)} s` +
      ` = ${rate(stats.packets, stats.seconds).padStart(7)}/s; ${stats.batches} batches, ${stats.events} events,` +
      ` ${stats.drops} connections dropped, ${stats.goodChecks} well-behaved runs, ${stats.treeChecks} tree checks`;
    per.push(line);
    process.stdout.write(`${line}\n`);
  }
  process.stdout.write(
    `\nall     ${total.packets} requests in ${total.seconds.toFixed(1)} s = ${rate(total.packets, total.seconds)}/s, no failure\n\n`,
  );
  process.stdout.write(table("replies", total.replies));
  process.stdout.write(table("outcomes by request type", total.outcomes, 200));
  process.stdout.write(table("outcomes by kind of path", total.paths));
  process.stdout.write(table("mutators", total.mutators));
  if (total.ringErrors.size > 0) process.stdout.write(table("ring outcomes", total.ringErrors));
  if (o.json) {
    const obj = (m: Map<string, number>) => Object.fromEntries(m);
    process.stdout.write(
      `${JSON.stringify({
        seed: o.seed,
        requests: total.packets,
        seconds: total.seconds,
        drops: total.drops,
        replies: obj(total.replies),
        outcomes: obj(total.outcomes),
        paths: obj(total.paths),
        mutators: obj(total.mutators),
        ring: obj(total.ringErrors),
      })}\n`,
    );
  }
  return 0;
}
