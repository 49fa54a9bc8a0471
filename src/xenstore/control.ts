/**
 * CONTROL (C xenstored_control.c): the commands xenstore-control sends; `check`, the
 * consistency check of the tree against the daemon's node counters; `log`, `logfile` and
 * `memreport` on the trace file (trace.ts) and `memoryReport`, xenlab's memory report.
 */

import { type Connection, type Daemon, OK, type RequestContext } from "./daemon.ts";
import { XsError } from "./errors.ts";
import { dumpState } from "./migration.ts";
import { encodeStateStream } from "./migration-format.ts";
import { baseOf, childPath, parentOf } from "./paths.ts";
import { HARD_QUOTAS, SOFT_QUOTAS } from "./quota.ts";
import { traceConnection } from "./trace.ts";
import { atoi, getStrings } from "./wire.ts";

/** CONTROL `cmd|args...|` (C `do_control`). */
export function doControl(d: Daemon, ctx: RequestContext): string {
  const args = getStrings(ctx.payload);
  if (args.length === 0) throw new XsError("EINVAL");
  const [cmd, ...rest] = args as [string, ...string[]];
  const c = CONTROL_COMMANDS.find((x) => x.cmd === cmd);
  if (c === undefined) throw new XsError("EINVAL");
  return c.run(d, rest);
}

/** CONTROL `check`: the tree and the counters agree. Returns the problems found. */
export function checkStore(d: Daemon): string[] {
  const problems: string[] = [];
  const counts = new Map<number, number>();
  const nodes = d.store.nodes;
  for (const [name, n] of nodes) {
    counts.set(n.perms[0]!.id, (counts.get(n.perms[0]!.id) ?? 0) + 1);
    for (const c of n.children) {
      if (!nodes.has(childPath(name, c))) problems.push(`${name} lists missing child ${c}`);
    }
    if (name !== "/") {
      const p = nodes.get(parentOf(name));
      if (p === undefined || !p.children.includes(baseOf(name)))
        problems.push(`${name} is not in its parent`);
    }
  }
  for (const [domid, n] of counts) {
    if ((d.entries.get(domid) ?? 0) !== n)
      problems.push(`domain ${domid} counts ${d.entries.get(domid)} nodes, owns ${n}`);
  }
  return problems;
}

/** CONTROL `quota` / `quota-soft`: the table, `set <name> <value>`, or a domain's use. */
function controlQuota(d: Daemon, args: readonly string[], soft: boolean): string {
  const table = soft ? SOFT_QUOTAS : HARD_QUOTAS;
  if (args.length === 0) {
    let s = "Quota settings:\n";
    for (const q of table) s += `${q.name.padEnd(17)}: ${String(d.quotas[q.key]).padStart(8)} ${q.descr}\n`;
    return `${s}\0`;
  }
  if (args[0] === "set") {
    if (args.length !== 3) throw new XsError("EINVAL");
    const v = atoi(args[2]!);
    if (v < 1) throw new XsError("EINVAL");
    const q = table.find((x) => x.name === args[1]);
    if (q === undefined) throw new XsError("EINVAL");
    d.quotas[q.key] = v;
    d.log.info({ quota: q.name, value: v, soft }, `quota ${q.name} set to ${v}`);
    return OK;
  }
  if (soft || args.length !== 1) throw new XsError("EINVAL");
  const domid = atoi(args[0]!) >>> 0;
  const domain = d.domains.get(domid);
  if (domain === undefined) throw new XsError("ENOENT");
  const conn = domain.conn;
  const line = (k: string, v: number) => `${k.padEnd(16)}: ${String(v).padStart(8)}\n`;
  // Quotas the domain has of its own (SET_QUOTA with its domid) follow C's lines.
  const own = d.accounts.overrides(domid);
  let mine = "";
  for (const q of HARD_QUOTAS) {
    const v = own?.[q.key];
    if (v !== undefined) mine += line(`quota ${q.name}`, v);
  }
  return (
    `Domain ${domid}:\n` +
    line("nodes", d.entries.get(domid) ?? 0) +
    line("watches", conn?.watches.length ?? 0) +
    line("transactions", conn?.transactions.size ?? 0) +
    line("outstanding", d.accounts.outstanding(domid)) +
    line("memory", d.accounts.memory(domid)) +
    mine +
    "\0"
  );
}

/**
 * The memory report of CONTROL `memreport`. C writes talloc's report of its heap
 * (`talloc_report_full`); xenlab has no heap of its own to walk, so it reports what its quota
 * accounting counts (quota.ts), for each domain with nodes, counters or connections, then the
 * totals. `memory` is in bytes as C charges them: each node's record and path to its owner,
 * transactions' copies of nodes and queued packets to the domain, watches to their connection's
 * domain. Connections are named as trace lines name them. Example:
 *
 *   xenstored memory report (xenlab: quota accounting, memory in bytes)
 *   Domain 0:
 *     nodes           :        5
 *     memory          :      263 (no quota: dom0)
 *     watches         :        1
 *     transactions    :        0
 *     outstanding     :        0
 *     connections     :        1
 *       0x3 socket#3: 1 watches, 0 transactions
 *   Domain 5:
 *     nodes           :        2
 *     memory          :      120 (quota 2621440, warning at 2097152)
 *     ...
 *   Total:
 *     nodes           :        7
 *     memory          :      383
 *     watches         :        1
 *     transactions    :        0
 *     connections     :        1
 */
export function memoryReport(d: Daemon): string {
  const line = (k: string, v: number | string, extra = "") =>
    `  ${k.padEnd(16)}: ${String(v).padStart(8)}${extra}\n`;
  const byDomain = new Map<number, Connection[]>();
  for (const c of d.connections) {
    const list = byDomain.get(c.domid);
    if (list === undefined) byDomain.set(c.domid, [c]);
    else list.push(c);
  }
  const domids = new Set<number>([...d.domains.keys(), ...d.entries.keys(), ...d.accounts.domids()]);
  for (const domid of byDomain.keys()) domids.add(domid);
  let out = "xenstored memory report (xenlab: quota accounting, memory in bytes)\n";
  const total = { nodes: 0, memory: 0, watches: 0, transactions: 0, connections: 0 };
  for (const domid of [...domids].sort((a, b) => a - b)) {
    const conns = byDomain.get(domid) ?? [];
    const nodes = d.entries.get(domid) ?? 0;
    const memory = d.accounts.memory(domid);
    let watches = 0;
    let transactions = 0;
    for (const c of conns) {
      watches += c.watches.length;
      transactions += c.transactions.size;
    }
    const quota =
      domid === 0
        ? " (no quota: dom0)"
        : ` (quota ${d.accounts.limit(domid, "memory")}, warning at ${d.accounts.limit(domid, "memorySoft")})`;
    out +=
      `Domain ${domid}:\n` +
      line("nodes", nodes) +
      line("memory", memory, quota) +
      line("watches", watches) +
      line("transactions", transactions) +
      line("outstanding", d.accounts.outstanding(domid)) +
      line("connections", conns.length);
    for (const c of conns)
      out += `    ${traceConnection(c.id)} ${c.label}: ${c.watches.length} watches, ${c.transactions.size} transactions\n`;
    total.nodes += nodes;
    total.memory += memory;
    total.watches += watches;
    total.transactions += transactions;
    total.connections += conns.length;
  }
  return (
    `${out}Total:\n` +
    line("nodes", total.nodes) +
    line("memory", total.memory) +
    line("watches", total.watches) +
    line("transactions", total.transactions) +
    line("connections", total.connections)
  );
}

/**
 * CONTROL `dump-state [-v 1|2] <file>` (xenlab's; C writes the same stream only as part of a
 * live update): the state as migration.ts dumps it, written to `file` by the daemon. Like C's
 * live-update steps, a failure is answered with a message instead of "OK".
 */
function controlDumpState(d: Daemon, args: readonly string[]): string {
  let version = 2;
  let rest = args;
  if (rest[0] === "-v") {
    if (rest[1] !== "1" && rest[1] !== "2") throw new XsError("EINVAL");
    version = Number(rest[1]);
    rest = rest.slice(2);
  }
  if (rest.length !== 1 || rest[0] === "") throw new XsError("EINVAL");
  const file = rest[0]!;
  if (d.dumpFiles === null) return "dump-state is not available in this daemon\0";
  let bytes: Uint8Array;
  let transactions: number;
  try {
    const r = dumpState(d, { version });
    bytes = encodeStateStream(r.stream);
    transactions = r.transactions;
  } catch (e) {
    return `Cannot dump the state: ${e instanceof Error ? e.message : String(e)}\0`;
  }
  try {
    d.dumpFiles.write(file, bytes);
  } catch (e) {
    return `Cannot write the state to ${file}: ${e instanceof Error ? e.message : String(e)}\0`;
  }
  if (transactions > 0)
    d.log.warn({ file, transactions }, `dump-state: ${transactions} open transactions are not in the dump`);
  d.log.info({ file, bytes: bytes.byteLength, version }, `state dumped to ${file}`);
  return OK;
}

interface ControlCommand {
  cmd: string;
  pars: string;
  hidden?: boolean;
  run(d: Daemon, args: readonly string[]): string;
}

/** CONTROL commands (xenstored_control.c `cmds[]`; live-update only says it is not supported). */
const CONTROL_COMMANDS: readonly ControlCommand[] = [
  {
    cmd: "check",
    pars: "",
    run(d, args) {
      if (args.length !== 0) throw new XsError("EINVAL");
      d.trace.write("Checking store ...\n");
      for (const p of checkStore(d)) {
        d.log.error({ problem: p }, `check: ${p}`);
        d.trace.write(`check: ${p}\n`);
      }
      d.trace.write("Checking store complete.\n");
      return OK;
    },
  },
  {
    cmd: "log",
    pars: "on|off",
    run(d, args) {
      if (args.length !== 1) throw new XsError("EINVAL");
      // C `reopen_log` / `close_log`: "on" without a trace file named does nothing.
      if (args[0] === "on") d.trace.reopen();
      else if (args[0] === "off") d.trace.close();
      else throw new XsError("EINVAL");
      return OK;
    },
  },
  {
    cmd: "live-update",
    pars: "[-c <cmdline>] [-F] [-t <timeout>] <file>\n    Default timeout is 60 seconds.",
    run() {
      // C xenstored answers a failed live-update step with a message instead of "OK".
      return "Live-update is not supported by xenlab xenstored\0";
    },
  },
  {
    cmd: "dump-state",
    pars: "[-v 1|2] <file>",
    // xenlab's own: `help` lists C's commands only, so its answer stays the same as C's.
    hidden: true,
    run: controlDumpState,
  },
  {
    cmd: "logfile",
    pars: "<file>",
    run(d, args) {
      if (args.length !== 1) throw new XsError("EINVAL");
      // A file that cannot be opened leaves the trace closed, and the answer is still OK.
      d.trace.moveTo(args[0]!);
      return OK;
    },
  },
  {
    cmd: "memreport",
    pars: "[<file>]",
    run(d, args) {
      if (args.length > 1) throw new XsError("EINVAL");
      // Nowhere to write it is C's EBADF, which is not in xsd_errors: C answers EINVAL.
      if (!d.trace.report(memoryReport(d), args[0] ?? null)) throw new XsError("EINVAL");
      return OK;
    },
  },
  {
    cmd: "print",
    pars: "<string>",
    run(d, args) {
      if (args.length !== 1) throw new XsError("EINVAL");
      d.log.info({}, `control: ${args[0]}`);
      return OK;
    },
  },
  {
    cmd: "quota",
    pars: "[set <name> <val>|<domid>]",
    run: (d, args) => controlQuota(d, args, false),
  },
  {
    cmd: "quota-soft",
    pars: "[set <name> <val>]",
    run: (d, args) => controlQuota(d, args, true),
  },
  {
    cmd: "help",
    pars: "",
    run(_d, args) {
      if (args.length !== 0) throw new XsError("EINVAL");
      return `${CONTROL_COMMANDS.filter((c) => !c.hidden)
        .map((c) => `${c.cmd}\t${c.pars}\n`)
        .join("")}\0`;
    },
  },
];
