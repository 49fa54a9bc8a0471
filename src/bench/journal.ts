/**
 * `xenlab bench journal`: what `xenstored --state` costs on the write path, against direct
 * file I/O of the same bytes in the same run.
 *
 *   plain     N requests through a fresh core's step(), no journal (the CPU floor);
 *   journal   the same N requests with the journal attached to a real directory (src/xenstore/state-files.ts):
 *             one record encoded, checksummed and written per request, compactions included;
 *   raw       the same records' bytes (captured from the same workload beforehand, untimed)
 *             written to a file with one fs.writeSync each: direct file I/O, the baseline.
 *
 *   plain+raw plain, with each record's bytes written by fs.writeSync right after its request:
 *             direct file I/O inside the same loop (a write syscall between JavaScript work costs
 *             more than one in a tight loop).
 *
 * The journal's append cost per request is (journal − plain); the ratio is raw / that (≤ 1;
 * 1 means the journal adds nothing to the write syscall itself); "ratio in loop" is
 * (plain+raw) / journal. With --sync both the journal (`--state-sync`) and the raw writes
 * fdatasync each record.
 *
 * Cases: `overwrite` rewrites one of 256 existing 32-byte nodes (one node per record);
 * `create` adds a 32-byte node under one of N/64 directories of 64 (the new node and its
 * parent's child list per record); `tx4` commits a transaction of 4 writes (one record of
 * 4 nodes per 6 requests; costs are per commit). Each run builds everything afresh; the
 * order of the three variants flips between runs; figures are medians over runs.
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XenStoreCore } from "../xenstore/core.ts";
import type { Connection } from "../xenstore/daemon.ts";
import { Journal, type StateFile, type StateFiles } from "../xenstore/journal.ts";
import { DirStateFiles } from "../xenstore/state-files.ts";
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
  /** Records per run and case. */
  records: number;
  sync: boolean;
  cases: string[];
}

const DEFAULTS: Options = {
  json: false,
  runs: 7,
  records: 20_000,
  sync: false,
  cases: ["overwrite", "create", "tx4"],
};
const QUICK: Partial<Options> = { runs: 1, records: 500 };
const SYNC_RECORDS = 2_000;
const CASES = ["overwrite", "create", "tx4"] as const;

export const HELP = `usage: xenlab bench journal [options]

The write-path cost of xenstored --state: requests through the core with and without the
journal, and the same record bytes appended with fs.writeSync (direct file I/O, the baseline).

options:
  --json         one JSON line per case
  --quick        smoke run (1 run, 500 records)
  --runs N       runs, medians reported (default ${DEFAULTS.runs})
  --records N    records per run and case (default ${DEFAULTS.records}; ${SYNC_RECORDS} with --sync)
  --sync         fdatasync every record on both sides (--state-sync)
  --cases LIST   e.g. overwrite,tx4 (default ${DEFAULTS.cases.join(",")})
`;

const OPTIONS: OptionTable<Options> = {
  "--runs": (o, arg) => {
    o.runs = arg.int(1);
  },
  "--records": (o, arg) => {
    o.records = arg.int(1);
  },
  "--sync": (o) => {
    o.sync = true;
    if (o.records === DEFAULTS.records) o.records = SYNC_RECORDS;
  },
  "--cases": (o, arg) => {
    const v = arg.next() ?? "";
    const list = v.split(",").filter((s) => s !== "");
    if (list.length === 0 || !list.every((s) => (CASES as readonly string[]).includes(s)))
      throw new RangeError(`Invalid value for --cases: '${v}'; expected a subset of ${CASES.join(",")}`);
    o.cases = list;
  },
};

function parseArgs(argv: readonly string[]): Options | "help" {
  return parseOptions("journal", argv, DEFAULTS, QUICK, OPTIONS);
}

const VALUE = Buffer.alloc(32, "v");

/** The requests of one case, as (type, tx?, payload) steps; `records` journal records' worth. */
function* requests(name: string, records: number): Generator<{ type: number; tx: boolean; payload: Buffer }> {
  const w = (path: string, tx = false) => ({
    type: XsType.WRITE,
    tx,
    payload: Buffer.concat([Buffer.from(`${path}\0`, "latin1"), VALUE]),
  });
  for (let i = 0; i < records; i++) {
    if (name === "overwrite") yield w(`/bench/k${i % 256}`);
    else if (name === "create") yield w(`/bench/d${Math.floor(i / 64)}/k${i % 64}`);
    else {
      yield { type: XsType.TRANSACTION_START, tx: false, payload: Buffer.from("\0") };
      for (let j = 0; j < 4; j++) yield w(`/bench/t${(i * 4 + j) % 256}`, true);
      yield { type: XsType.TRANSACTION_END, tx: true, payload: Buffer.from("T\0") };
    }
  }
}

/** A core ready for a case: /bench's nodes exist for overwrite and tx4. */
function prepare(name: string, journal: Journal | null): { core: XenStoreCore; conn: Connection } {
  const core = new XenStoreCore(journal ? { journal } : {});
  journal?.attach(core);
  const conn = core.connectSocket();
  if (name !== "create") {
    for (let i = 0; i < 256; i++) {
      const p = name === "overwrite" ? `/bench/k${i}` : `/bench/t${i}`;
      core.step(conn, { type: XsType.WRITE, reqId: 1, txId: 0, payload: Buffer.from(`${p}\0x`, "latin1") });
    }
  }
  return { core, conn };
}

/** Runs a case's requests; ns per record. */
function drive(
  name: string,
  records: number,
  core: XenStoreCore,
  conn: Connection,
  /** Called after each request that makes a record, with the record's index. */
  after?: (record: number) => void,
): number {
  const reqs = [...requests(name, records)];
  let txId = 0;
  let record = 0;
  const t0 = process.hrtime.bigint();
  for (const r of reqs) {
    const reply = core.step(conn, { type: r.type, reqId: 1, txId: r.tx ? txId : 0, payload: r.payload });
    if (reply.reply.type === XsType.ERROR)
      throw new Error(`Bench request failed: ${Buffer.from(reply.reply.payload)}`);
    if (r.type === XsType.TRANSACTION_START)
      txId = Number(Buffer.from(reply.reply.payload).toString("latin1", 0, reply.reply.payload.length - 1));
    else if (after !== undefined && (r.type === XsType.TRANSACTION_END || !r.tx)) after(record++);
  }
  return Number(process.hrtime.bigint() - t0) / records;
}

/** StateFiles that keep every appended record in memory (to hand the baseline the same bytes). */
class CaptureFiles implements StateFiles {
  readonly where = "capture";
  readonly records: Buffer[] = [];

  read(): Uint8Array | null {
    return null;
  }

  replace(): StateFile {
    return {
      append: (b) => {
        this.records.push(Buffer.from(b));
      },
      datasync: () => {},
      close: () => {},
    };
  }

  remove(): void {}

  syncDir(): void {}
}

interface Sample {
  plain: number;
  journal: number;
  raw: number;
  /** plain + the raw write of each record right after its request: direct I/O inside the same loop. */
  plainRaw: number;
  bytes: number;
  compactions: number;
}

function measure(name: string, o: Options, records: Buffer[]): Sample {
  const dir = mkdtempSync(join(tmpdir(), "xenlab-bench-journal-"));
  try {
    const p = prepare(name, null);
    const plain = drive(name, o.records, p.core, p.conn);

    const j = Journal.open(new DirStateFiles(join(dir, "state")), { sync: o.sync });
    const q = prepare(name, j);
    const journal = drive(name, o.records, q.core, q.conn);
    const compactions = j.stats.compactions - 1; // the one at attach is not on the write path
    j.close();

    const fd = openSync(join(dir, "raw"), "w");
    const t0 = process.hrtime.bigint();
    for (const b of records) {
      writeSync(fd, b);
      if (o.sync) fdatasyncSync(fd);
    }
    const raw = Number(process.hrtime.bigint() - t0) / records.length;
    closeSync(fd);

    const fd2 = openSync(join(dir, "raw2"), "w");
    const r = prepare(name, null);
    const plainRaw = drive(name, o.records, r.core, r.conn, (i) => {
      writeSync(fd2, records[i]!);
      if (o.sync) fdatasyncSync(fd2);
    });
    closeSync(fd2);
    let bytes = 0;
    for (const b of records) bytes += b.length;
    return { plain, journal, raw, plainRaw, bytes: bytes / records.length, compactions };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function run(argv: string[]): Promise<number> {
  return runBench("journal", argv, parseArgs, HELP, bench);
}

async function bench(o: Options): Promise<number> {
  const samples = new Map<string, Sample[]>(o.cases.map((c) => [c, []]));
  const captured = new Map<string, Buffer[]>();
  for (const c of o.cases) {
    const cap = new CaptureFiles();
    const j = Journal.open(cap);
    const { core, conn } = prepare(c, j);
    cap.records.length = 0;
    drive(c, o.records, core, conn);
    if (cap.records.length !== o.records)
      throw new Error(`Case ${c}: ${cap.records.length} records for ${o.records} steps`);
    captured.set(c, cap.records);
  }
  // One warm-up pass of each case, not recorded (JIT).
  for (const c of o.cases)
    measure(c, { ...o, records: Math.min(o.records, 2000) }, captured.get(c)!.slice(0, 2000));
  await eachRun(o, o.cases, async (c) => {
    samples.get(c)!.push(measure(c, o, captured.get(c)!));
  });
  const us = (ns: number) => ns / 1000;
  const lines: string[][] = [
    [
      "case",
      "bytes/rec",
      "plain µs",
      "journal µs",
      "append µs",
      "raw write µs",
      "ratio",
      "plain+raw µs",
      "ratio in loop",
      "compactions",
      "ops/s plain→journal",
    ],
  ];
  for (const c of o.cases) {
    const s = samples.get(c)!;
    const plain = median(s.map((x) => x.plain));
    const journal = median(s.map((x) => x.journal));
    const append = median(s.map((x) => x.journal - x.plain));
    const raw = median(s.map((x) => x.raw));
    const plainRaw = median(s.map((x) => x.plainRaw));
    const name = `${c}${o.sync ? "+sync" : ""}`;
    if (o.json) {
      const write = o.sync ? "fs.writeSync+fdatasync" : "fs.writeSync";
      const appendCase = `${name}/append cost per record`;
      const requestCase = `${name}/request with its record`;
      process.stdout.write(`${timeLine("journal", appendCase, "µs", us(append), us(raw), write)}\n`);
      process.stdout.write(
        `${timeLine("journal", requestCase, "µs", us(journal), us(plainRaw), `step + ${write}`)}\n`,
      );
    }
    lines.push([
      name,
      median(s.map((x) => x.bytes)).toFixed(0),
      us(plain).toFixed(2),
      us(journal).toFixed(2),
      us(append).toFixed(2),
      us(raw).toFixed(2),
      (raw / append).toFixed(2),
      us(plainRaw).toFixed(2),
      (plainRaw / journal).toFixed(2),
      median(s.map((x) => x.compactions)).toFixed(0),
      `${(1e9 / plain / 1000).toFixed(0)}k → ${(1e9 / journal / 1000).toFixed(0)}k`,
    ]);
  }
  if (!o.json) {
    process.stdout.write(
      `${[
        `journal: the write path of xenstored --state, ${o.records} records per run, medians of ${o.runs} runs`,
        "plain/journal: core step() per record without/with the journal; append = journal − plain;",
        `raw write: the same record bytes with fs.writeSync${o.sync ? " + fdatasync" : ""} in a tight loop (the baseline); ratio = raw / append`,
        "plain+raw: plain, each request followed by the raw write of its record (direct I/O in the same loop); ratio in loop = plain+raw / journal",
        ...alignColumns(lines, (i) => i === 0).map((l) => l.trimEnd()),
      ].join("\n")}\n`,
    );
  }
  return 0;
}
