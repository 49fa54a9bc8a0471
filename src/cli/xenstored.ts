/**
 * `xenlab xenstored`: the XenStore daemon on a Unix socket, in the foreground.
 * Options follow C xenstored's (-E -S -W -t -A -M -Q -q -w -K -T -N -V); the socket comes
 * from --socket, else $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else
 * /var/run/xenstored/socket. `--load FILE` starts from a XenStore migration stream (what C
 * xenstored's live update writes); `xenlab xenstored dump FILE` asks a running daemon to
 * write one (CONTROL `dump-state`, also `xenstore-control dump-state FILE`).
 */
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { XenstoreCapture } from "../host/capture.ts";
import { controlPath } from "../host/control-client.ts";
import { LiveRecorder } from "../host/live.ts";
import { errorMessage } from "../lib/errors.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { refuseIfServed } from "../lib/unix-socket.ts";
import { XenStoreCore } from "../xenstore/core.ts";
import { DEFAULT_MAX_JOURNAL_BYTES, Journal } from "../xenstore/journal.ts";
import { loadState } from "../xenstore/migration.ts";
import { decodeStateStream } from "../xenstore/migration-format.ts";
import { DEFAULT_QUOTAS, type Quotas } from "../xenstore/quota.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { DirStateFiles, NodeDumpFiles, NodeTraceFiles } from "../xenstore/state-files.ts";
import { Trace } from "../xenstore/trace.ts";
import { SocketTransport } from "../xenstore/transport-socket.ts";
import { connectXenstore, xenstoredSocketPath } from "../xenstore/transport-socket-client.ts";
import { commandArgs } from "./args.ts";

const USAGE = `usage: xenlab xenstored [options]
       xenlab xenstored dump [--socket PATH] [-v 1|2] FILE

  --socket PATH              socket to serve (default: $XENSTORED_PATH,
                             else $XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket)
  -E, --entry-nb N           nodes per domain (default ${DEFAULT_QUOTAS.nodes})
  -S, --entry-size N         max. size of a node record (default ${DEFAULT_QUOTAS.nodeSize})
  -W, --watch-nb N           watches per domain (default ${DEFAULT_QUOTAS.watches})
  -t, --transaction N        transactions per domain (default ${DEFAULT_QUOTAS.transactions})
  -A, --perm-nb N            permissions per node (default ${DEFAULT_QUOTAS.permissions})
  -M, --path-max N           path length after /local/domain/<id>/ (default ${DEFAULT_QUOTAS.pathMax})
  -Q, --quota WHAT=N         outstanding, transaction-nodes, memory
  -q, --quota-soft WHAT=N    memory
  -w, --timeout WHAT=SECS    watch-event
  -K, --keep-orphans         give a released domain's nodes to dom0 instead of deleting them
  -T, --trace-file FILE      log every request and reply to FILE (C xenstored's format;
                             SIGHUP reopens it, xenstore-control log/logfile switch it)
  -N, --no-fork              accepted for compatibility (always foreground)
  --pcap FILE                capture every request and reply into FILE (pcapng; open it
                             with wireshark -X lua_script:wireshark/xenstore.lua, README)
  --state DIR                keep the store in DIR (snapshot + journal): every acknowledged
                             change survives a kill -9 and a restart serves it again
  --state-sync               also fdatasync each journal record (survives a power cut)
  --state-max-journal BYTES  compact the journal past max(BYTES, 2 × snapshot)
                             (default ${DEFAULT_MAX_JOURNAL_BYTES})
  --live-trace               trace as \`xenlab up --http\` does with no viewer connected
                             (the live view's recorder keeping the devices' timelines,
                             docs/live-view.md): what \`bench xenstore --trace\` measures
  --load FILE                start from FILE, a XenStore migration stream (Xen's
                             docs/designs/xenstore-migration.md; C xenstored's live-update
                             state_dump): nodes, permissions, domains, their watches, quotas
  -V, --verbose              debug logging
  --log-level LEVEL          pino level (default info)
  --log-format pretty|json   log lines on stderr: pretty on a terminal, JSON lines otherwise
                             (default: $XENLAB_LOG_FORMAT, else by whether stderr is a terminal)
`;

interface XenstoredOptions {
  socket?: string;
  quota?: string[];
  "quota-soft"?: string[];
  timeout?: string[];
  "keep-orphans"?: boolean;
  "trace-file"?: string;
  pcap?: string;
  state?: string;
  "state-sync"?: boolean;
  "state-max-journal"?: string;
  load?: string;
  verbose?: boolean;
  "live-trace"?: boolean;
  "log-level"?: string;
  "log-format"?: string;
  [flag: string]: string | string[] | boolean | undefined;
}

function intArg(flag: string, v: string): number {
  if (!/^\d+$/.test(v))
    throw new RangeError(`Invalid value for ${flag}: "${v}" is not a non-negative integer`);
  return Number(v);
}

function whatEq(flag: string, v: string): [string, number] {
  const eq = v.indexOf("=");
  if (eq < 0) throw new RangeError(`Invalid value for ${flag}: "${v}" must be <what>=<nb>`);
  return [v.slice(0, eq), intArg(flag, v.slice(eq + 1))];
}

export function parseQuotas(values: Record<string, unknown>): Partial<Quotas> {
  const q: Partial<Quotas> = {};
  const num = (k: string) => values[k] as string | undefined;
  if (num("entry-nb") !== undefined) q.nodes = intArg("-E", num("entry-nb")!);
  if (num("entry-size") !== undefined) q.nodeSize = intArg("-S", num("entry-size")!);
  if (num("watch-nb") !== undefined) q.watches = intArg("-W", num("watch-nb")!);
  if (num("transaction") !== undefined) q.transactions = intArg("-t", num("transaction")!);
  if (num("perm-nb") !== undefined) q.permissions = intArg("-A", num("perm-nb")!);
  if (num("path-max") !== undefined) q.pathMax = intArg("-M", num("path-max")!);
  for (const v of (values.quota as string[] | undefined) ?? []) {
    const [what, n] = whatEq("-Q", v);
    if (what === "outstanding") q.outstanding = n;
    else if (what === "transaction-nodes") q.transactionNodes = n;
    else if (what === "memory") q.memory = n;
    else throw new RangeError(`Unknown quota "${what}": use outstanding, transaction-nodes or memory`);
  }
  for (const v of (values["quota-soft"] as string[] | undefined) ?? []) {
    const [what, n] = whatEq("-q", v);
    if (what === "memory") q.memorySoft = n;
    else throw new RangeError(`Unknown soft quota "${what}": use memory`);
  }
  for (const v of (values.timeout as string[] | undefined) ?? []) {
    const [what, secs] = whatEq("-w", v);
    if (what === "watch-event") q.watchEventTimeoutMs = secs * 1000;
  }
  return q;
}

const DUMP_USAGE = `usage: xenlab xenstored dump [--socket PATH] [-v 1|2] FILE

Asks the running xenstored to write its whole state to FILE in Xen's XenStore migration
stream format (version 2 by default; -v 1 for Xen 4.17's xenstored). Start a daemon from it
with: xenlab xenstored --load FILE
  --socket PATH   the daemon's socket (default: $XENSTORED_PATH, else
                  $XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket)
  -v N            stream version, 1 or 2
`;

/** How long `dump` waits for the daemon's answer: a dump of 100 guests takes milliseconds. */
const DUMP_WAIT_MS = 30_000;

/** `xenlab xenstored dump FILE`: CONTROL `dump-state` with FILE made absolute. */
async function runDump(argv: string[]): Promise<number> {
  const prog = "xenlab xenstored dump";
  const args = commandArgs(
    prog,
    DUMP_USAGE,
    argv,
    { socket: { type: "string" }, version: { type: "string", short: "v" } },
    true,
  );
  if (typeof args === "number") return args;
  const version = args.values.version as string | undefined;
  if (args.positionals.length !== 1 || (version !== undefined && version !== "1" && version !== "2")) {
    process.stderr.write(
      `${prog}: ${args.positionals.length !== 1 ? "name one FILE to write" : `-v must be 1 or 2, not "${version}"`}\n${DUMP_USAGE}`,
    );
    return 2;
  }
  const file = resolve(args.positionals[0]!);
  const where = xenstoredSocketPath(args.values.socket as string | undefined);
  // xenlab up's control socket takes the connection and never answers XenStore's packets.
  const beside = where.slice(0, where.lastIndexOf("."));
  if (controlPath(beside) === where) {
    process.stderr.write(
      `${prog}: ${where} is xenlab up's control socket, not xenstored's; pass --socket ${beside}\n`,
    );
    return 2;
  }
  let client: Awaited<ReturnType<typeof connectXenstore>>;
  try {
    client = await connectXenstore(where);
  } catch (e) {
    process.stderr.write(
      `${prog}: no xenstored answers on ${where} (${errorMessage(e)}); start one or pass --socket\n`,
    );
    return 1;
  }
  try {
    let timer: NodeJS.Timeout | undefined;
    const reply = await Promise.race([
      client.control("dump-state", ...(version !== undefined ? ["-v", version] : []), file),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no reply within ${DUMP_WAIT_MS / 1000} s`)), DUMP_WAIT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    if (reply !== "OK") {
      // The daemon opens FILE itself: the fix is a path it can create.
      const fix = reply.startsWith("Cannot write")
        ? "; name a new file in a directory the daemon can write"
        : "";
      process.stderr.write(`${prog}: ${reply}${fix}\n`);
      return 1;
    }
    process.stdout.write(`${file}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(
      `${prog}: the daemon on ${where} refused dump-state (${errorMessage(e)}); is it xenlab xenstored?\n`,
    );
    return 1;
  } finally {
    client.close();
  }
}

export async function run(argv: string[]): Promise<number> {
  if (argv[0] === "dump") return runDump(argv.slice(1));
  const args = commandArgs("xenlab xenstored", USAGE, argv, {
    socket: { type: "string" },
    "entry-nb": { type: "string", short: "E" },
    "entry-size": { type: "string", short: "S" },
    "watch-nb": { type: "string", short: "W" },
    transaction: { type: "string", short: "t" },
    "perm-nb": { type: "string", short: "A" },
    "path-max": { type: "string", short: "M" },
    quota: { type: "string", short: "Q", multiple: true },
    "quota-soft": { type: "string", short: "q", multiple: true },
    timeout: { type: "string", short: "w", multiple: true },
    "keep-orphans": { type: "boolean", short: "K" },
    "trace-file": { type: "string", short: "T" },
    "no-fork": { type: "boolean", short: "N" },
    pcap: { type: "string" },
    state: { type: "string" },
    "state-sync": { type: "boolean" },
    "state-max-journal": { type: "string" },
    load: { type: "string" },
    verbose: { type: "boolean", short: "V" },
    "live-trace": { type: "boolean" },
    "log-level": { type: "string" },
    "log-format": { type: "string" },
  });
  if (typeof args === "number") return args;
  const values = args.values as unknown as XenstoredOptions;
  let quotas: Partial<Quotas>;
  let maxJournal: number | undefined;
  try {
    for (const v of values.timeout ?? []) {
      const [what] = whatEq("-w", v);
      if (what !== "watch-event") throw new RangeError(`Unknown timeout "${what}": use watch-event`);
    }
    quotas = parseQuotas(values);
    if (values.pcap === "")
      throw new RangeError("--pcap wants a file to capture into, e.g. --pcap xs.pcapng");
    const mj = values["state-max-journal"];
    maxJournal = mj === undefined ? undefined : intArg("--state-max-journal", mj);
  } catch (e) {
    process.stderr.write(`xenlab xenstored: ${errorMessage(e)}\n${USAGE}`);
    return 2;
  }
  const path = socketPath(values.socket);
  mkdirSync(dirname(path), { recursive: true });
  try {
    // Before the state directory is opened: a daemon serving here may be using it.
    await refuseIfServed(path);
  } catch (e) {
    process.stderr.write(`xenlab xenstored: ${errorMessage(e)}\n`);
    return 1;
  }
  let log: Logger;
  try {
    log = createLogger("xenstored", values.verbose ? "debug" : values["log-level"], values["log-format"]);
  } catch (e) {
    process.stderr.write(`xenlab xenstored: ${errorMessage(e)}\n`);
    return 2;
  }
  let journal: Journal | null;
  try {
    journal = values.state
      ? Journal.open(new DirStateFiles(values.state), {
          sync: values["state-sync"] ?? false,
          ...(maxJournal !== undefined ? { maxJournalBytes: maxJournal } : {}),
          log,
        })
      : null;
  } catch (e) {
    process.stderr.write(`xenlab xenstored: ${errorMessage(e)}\n`);
    return 1;
  }
  // As C: the trace file is opened (with its "***" line) at start-up, reopened on SIGHUP.
  const trace = new Trace(new NodeTraceFiles(), { file: values["trace-file"] ?? null, log });
  trace.reopen();
  const onHup = () => trace.reopen();
  process.on("SIGHUP", onHup);
  const core = new XenStoreCore({
    quotas,
    keepOrphans: values["keep-orphans"] ?? false,
    log,
    trace,
    dumpFiles: new NodeDumpFiles(),
    ...(journal ? { journal } : {}),
  });
  journal?.attach(core);
  if (values["live-trace"] === true) {
    const recorder = new LiveRecorder(core.store, [core.tracer]);
    core.tracer.subscribe((e) => recorder.event(e));
  }
  if (values.load !== undefined) {
    const file = values.load;
    try {
      let bytes: Uint8Array;
      try {
        bytes = readFileSync(file);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new Error(
          code === "ENOENT" ? "no such file" : code === "EISDIR" ? "it is a directory" : errorMessage(e),
        );
      }
      const r = loadState(core, decodeStateStream(bytes));
      for (const what of r.dropped) log.warn({ file, what }, `load: not restored: ${what}`);
      log.info(
        { file, nodes: r.nodes, domains: r.domains, watches: r.watches },
        `loaded ${r.nodes} nodes, ${r.domains} domains and ${r.watches} watches from ${file}`,
      );
    } catch (e) {
      journal?.close();
      process.off("SIGHUP", onHup);
      trace.close();
      process.stderr.write(
        `xenlab xenstored: cannot load ${file}: ${errorMessage(e)}; give --load a dump written by ` +
          "'xenlab xenstored dump' or by C xenstored's live update\n",
      );
      return 1;
    }
  }
  let capture: XenstoreCapture | null = null;
  if (values.pcap !== undefined) {
    try {
      capture = XenstoreCapture.create(values.pcap, {
        onError: (err) => {
          log.warn({ err: err.message }, "capture stopped: write failed");
          core.tap = null;
        },
      });
    } catch (e) {
      journal?.close();
      process.off("SIGHUP", onHup);
      trace.close();
      process.stderr.write(
        `xenlab xenstored: ${errorMessage(e)}; give --pcap a file path in an existing directory\n`,
      );
      return 1;
    }
    core.tap = capture;
  }
  const transport = new SocketTransport(core);
  try {
    await transport.listen(path);
  } catch (e) {
    // Another daemon won the path since the check.
    journal?.close();
    process.off("SIGHUP", onHup);
    trace.close();
    capture?.close();
    process.stderr.write(`xenlab xenstored: ${errorMessage(e)}\n`);
    return 1;
  }
  process.stdout.write(`xenlab xenstored: listening on ${path} (pid ${process.pid})\n`);
  log.info({ socket: path }, "accepting connections");

  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info({ signal: sig }, "stopping");
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  await transport.close();
  journal?.close();
  process.off("SIGHUP", onHup);
  trace.close();
  capture?.close();
  log.flush();
  return 0;
}
