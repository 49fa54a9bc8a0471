/**
 * `xenlab xs <mode> [options] args`: Xen 4.17's `xenstore-*` tools (tools/xenstore/
 * xenstore_client.c), with their options, output bytes and exit codes, so that the tools
 * can be replaced on a machine without them:
 *
 *   xenlab xs read   [-p] [-s] [-R] key [...]        xenlab xs exists [-s] key [...]
 *   xenlab xs write  [-s] [-R] key value [...]       xenlab xs list   [-p] [-s] key [...]
 *   xenlab xs ls     [-f] [-p] [-s] [path]           xenlab xs rm     [-s] [-t] key [...]
 *   xenlab xs chmod  [-u] [-r] [-s] key mode [...]   xenlab xs watch  [-n NR] key [...]
 *   xenlab xs mkdir  [-s] key [...]                  (mkdir: no Xen tool; same conventions)
 *
 * Messages name the tool as `xenstore-<mode>`, as the Xen tool invoked by that name does.
 * Options are parsed like glibc's getopt_long (permuted operands, clustered short options,
 * unique prefixes of long options, and the same complaints), because scripts depend on it:
 * an unknown option is reported and then ignored, `-s` is accepted and does nothing.
 */
import { existsSync } from "node:fs";
import type { XsClient, XsOps, XsTransaction } from "../xenstore/client.ts";
import { ConnectionClosedError, XsError } from "../xenstore/errors.ts";
import { connectXenstore, xenstoredSocketPath } from "../xenstore/transport-socket-client.ts";
import { atoi, utf8 } from "../xenstore/wire.ts";
import { type GetoptOptions, getoptLong, sanitiseValue, strerror, unsanitiseValue } from "./xs-clib.ts";
import { ls } from "./xs-ls.ts";

const XENBUS_DEVICES = ["/dev/xen/xenbus", "/proc/xen/xenbus"];

// ---------------------------------------------------------------------------------------
// Environment (injectable for tests)

export interface XsIo {
  stdout(bytes: Uint8Array): void;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
  /** Terminal width of stdout, or undefined when stdout is not a terminal (ls). */
  columns: number | undefined;
  connect(path?: string): Promise<XsClient>;
}

// A closed pipe (`xenlab xs watch /x | head -1`) ends the process as SIGPIPE ends the C tool:
// src/cli/main.ts sees to it for every command.
function defaultIo(): XsIo {
  return {
    stdout: (b) => {
      process.stdout.write(b);
    },
    stderr: (s) => {
      process.stderr.write(s);
    },
    env: process.env,
    columns: process.stdout.isTTY ? process.stdout.columns : undefined,
    connect: (path) => connectXenstore(path),
  };
}

// ---------------------------------------------------------------------------------------
// Modes and options

const MODES = ["read", "write", "ls", "rm", "chmod", "list", "exists", "watch", "mkdir"] as const;
type Mode = (typeof MODES)[number];

function isMode(s: string): s is Mode {
  return (MODES as readonly string[]).includes(s);
}

const USAGE: Record<Mode, string> = {
  read: "[-h] [-p] [-s] [-R] key [...]",
  write: "[-h] [-s] [-R] key value [...]",
  rm: "[-h] [-s] [-t] key [...]",
  exists: "[-h] [-p] [-s] key [...]",
  list: "[-h] [-p] [-s] key [...]",
  ls: "[-h] [-f] [-p] [-s] [path]",
  chmod: "[-h] [-u] [-r] [-s] key <mode [modes...]>",
  watch: "[-h] [-n NR] key",
  mkdir: "[-h] [-s] key [...]",
};

/** Which modes accept each option letter (`s` is accepted everywhere and ignored). */
const OPTION_MODES: Record<string, readonly Mode[]> = {
  f: ["ls"],
  p: ["read", "list", "ls"],
  t: ["rm"],
  u: ["chmod"],
  r: ["chmod"],
  n: ["watch"],
  R: ["read", "write"],
};

const OPTIONS: GetoptOptions = {
  short: "hfspturn:R",
  long: [
    { name: "help", hasArg: false, short: "h" },
    { name: "flat", hasArg: false, short: "f" },
    { name: "prefix", hasArg: false, short: "p" },
    { name: "tidy", hasArg: false, short: "t" },
    { name: "upto", hasArg: false, short: "u" },
    { name: "recurse", hasArg: false, short: "r" },
    { name: "number", hasArg: true, short: "n" },
    { name: "raw", hasArg: false, short: "R" },
  ],
};

// ---------------------------------------------------------------------------------------
// The tool

/** Thrown to leave the tool with an exit code (err()/errx()); never escapes `run()`. */
class ToolExit {
  readonly code: number;
  constructor(code: number) {
    this.code = code;
  }
}

class Tool {
  readonly prog: string;
  /** stdout written directly (stdio; flushed even on err()). */
  readonly #direct: Uint8Array[] = [];
  /** The tools' `output()` buffer: written only when the tool finishes normally. */
  output: Uint8Array[] = [];
  readonly io: XsIo;
  readonly mode: Mode | null;

  constructor(io: XsIo, mode: Mode | null) {
    this.io = io;
    this.mode = mode;
    this.prog = mode === null ? "xenstore" : `xenstore-${mode}`;
  }

  print(s: string | Uint8Array): void {
    this.#direct.push(typeof s === "string" ? utf8(s) : s);
  }

  out(s: string | Uint8Array): void {
    this.output.push(typeof s === "string" ? utf8(s) : s);
  }

  flushDirect(): void {
    if (this.#direct.length > 0) this.io.stdout(Buffer.concat(this.#direct.splice(0)));
  }

  flushOutput(): void {
    if (this.output.length > 0) this.io.stdout(Buffer.concat(this.output.splice(0)));
  }

  warnx(msg: string): void {
    this.io.stderr(`${this.prog}: ${msg}\n`);
  }

  warn(msg: string, e: unknown): void {
    this.io.stderr(`${this.prog}: ${msg}: ${strerror(e)}\n`);
  }

  errx(msg: string): never {
    this.warnx(msg);
    throw new ToolExit(1);
  }

  err(msg: string, e: unknown): never {
    this.warn(msg, e);
    throw new ToolExit(1);
  }

  usage(): never {
    if (this.mode === null) this.errx(`Usage: ${this.prog} <mode> [-h] [...]`);
    this.errx(`Usage: ${this.prog} ${USAGE[this.mode]}`);
  }
}

interface Flags {
  prefix: boolean;
  flat: boolean;
  tidy: boolean;
  upto: boolean;
  recurse: boolean;
  raw: boolean;
  watches: number;
}

/**
 * `xenlab xs --help`: the modes and their options. (`xenlab xs MODE -h` stays the Xen tool's:
 * its one usage line on stderr, exit 1, as scripts written against the C tools expect.)
 */
export function usage(): string {
  const rows = MODES.map((m) => `  ${m.padEnd(6)} ${USAGE[m]}`);
  return `usage: xenlab xs <mode> [options] args

Xen's xenstore-* tools, talking to xenstored at $XENSTORED_PATH (else
$XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket):

${rows.join("\n")}

  -p  prefix each value with its path      -s  accepted, does nothing
  -f  ls: full paths                       -t  rm: also remove empty parents
  -u  chmod: also the parents              -r  chmod: also the children
  -R  read/write: raw values (no escapes)  -n  watch: stop after NR events
`;
}

/** `xenlab xs <mode> args...`; resolves with the exit code. */
export async function run(argv: string[], ioOverrides: Partial<XsIo> = {}): Promise<number> {
  const io: XsIo = { ...defaultIo(), ...ioOverrides };
  const [modeName, ...args] = argv;
  if (modeName === "-h" || modeName === "--help" || modeName === "help") {
    io.stdout(utf8(usage()));
    return 0;
  }
  const tool: Tool = new Tool(io, modeName !== undefined && isMode(modeName) ? modeName : null);
  let client: XsClient | null = null;
  try {
    if (modeName === undefined) tool.usage();
    if (tool.mode === null) tool.errx(`unknown mode ${modeName}\n`);
    const mode = tool.mode;
    const flags: Flags = {
      prefix: false,
      flat: false,
      tidy: false,
      upto: false,
      recurse: false,
      raw: false,
      watches: -1,
    };
    const operands: string[] = [];
    for (const { c, arg } of getoptLong(args, OPTIONS, tool.prog, io, operands)) {
      if (c === "h") tool.usage();
      if (c === "?" || c === "s") continue;
      if (!OPTION_MODES[c]?.includes(mode)) tool.usage();
      if (c === "f") flags.flat = true;
      else if (c === "p") flags.prefix = true;
      else if (c === "t") flags.tidy = true;
      else if (c === "u") flags.upto = true;
      else if (c === "r") flags.recurse = true;
      else if (c === "R") flags.raw = true;
      else if (c === "n") flags.watches = atoi(arg ?? "");
    }
    if (mode === "write" && operands.length % 2 === 1) tool.usage();
    if (mode !== "ls" && operands.length === 0) tool.usage();

    const transaction =
      mode === "read"
        ? operands.length > 1
        : mode === "write"
          ? operands.length > 2
          : mode !== "ls" && mode !== "watch";

    try {
      client = await io.connect(xenstoredSocketPath(undefined, io.env));
    } catch (e) {
      // xs_open() then tries the xenbus device ($XENSTORED_PATH again, else /dev/xen/xenbus
      // or /proc/xen/xenbus), and reports that failure: ENOENT where there is no Xen.
      const noDevice = io.env.XENSTORED_PATH === undefined && !XENBUS_DEVICES.some((d) => existsSync(d));
      tool.err("xs_open", noDevice ? { code: "ENOENT" } : e);
    }
    for (;;) {
      if (!transaction) {
        const ret = await perform(tool, client, client, mode, operands, flags);
        tool.flushOutput();
        return ret;
      }
      let tx: XsTransaction;
      try {
        tx = await client.transactionStart();
      } catch {
        tool.errx("couldn't start transaction");
      }
      const ret = await perform(tool, client, tx, mode, operands, flags);
      try {
        await client.transactionEnd(tx.txId, ret === 0);
      } catch (e) {
        if (ret === 0 && e instanceof XsError && e.errno === "EAGAIN") {
          tool.output = [];
          continue;
        }
        tool.errx("couldn't end transaction");
      }
      tool.flushOutput();
      return ret;
    }
  } catch (e) {
    if (e instanceof ToolExit) return e.code;
    throw e;
  } finally {
    tool.flushDirect();
    client?.close();
  }
}

async function perform(
  tool: Tool,
  client: XsClient,
  xs: XsOps,
  mode: Mode,
  operands: string[],
  flags: Flags,
): Promise<number> {
  switch (mode) {
    case "read":
      for (const path of operands) {
        let val: Uint8Array;
        try {
          val = await xs.readBytes(path);
        } catch {
          tool.warnx(`couldn't read path ${path}`);
          return 1;
        }
        if (flags.prefix) tool.out(`${path}: `);
        if (flags.raw) tool.out(val);
        else tool.out(`${sanitiseValue(val)}\n`);
      }
      return 0;
    case "write":
      for (let i = 0; i < operands.length; i += 2) {
        const path = operands[i]!;
        const spec = operands[i + 1]!;
        try {
          await xs.write(path, flags.raw ? utf8(spec) : unsanitiseValue(spec));
        } catch {
          tool.warnx(`could not write path ${path}`);
          return 1;
        }
      }
      return 0;
    case "rm":
      for (const path of operands) {
        if (await rm(tool, xs, path, flags.tidy)) return 1;
      }
      return 0;
    case "exists":
      for (const path of operands) {
        try {
          await xs.readBytes(path);
        } catch {
          return 1;
        }
      }
      return 0;
    case "list":
      for (const path of operands) {
        let names: string[];
        try {
          names = await xs.directory(path);
        } catch {
          tool.warnx(`could not list path ${path}`);
          return 1;
        }
        for (const n of names) tool.out(flags.prefix ? `${path}/${n}\n` : `${n}\n`);
      }
      return 0;
    case "mkdir":
      for (const path of operands) {
        try {
          await xs.mkdir(path);
        } catch {
          tool.warnx(`could not create path ${path}`);
          return 1;
        }
      }
      return 0;
    case "ls":
      await ls(tool, xs, operands, flags.prefix, flags.flat, tool.io.columns);
      return 0;
    case "chmod":
      return chmod(tool, xs, operands, flags);
    case "watch":
      return watch(tool, client, operands, flags.watches);
  }
}

/** xenstore-rm; with `tidy`, also removes each parent left empty and valueless. Returns 1 on failure. */
async function rm(tool: Tool, xs: XsOps, path: string, tidy: boolean): Promise<number> {
  let p = path;
  for (;;) {
    try {
      await xs.rm(p);
    } catch {
      tool.warnx(`could not remove path ${p}`);
      return 1;
    }
    if (!tidy) return 0;
    const slash = p.lastIndexOf("/");
    if (slash === -1) return 0;
    p = p.slice(0, slash);
    try {
      const val = await xs.readBytes(p);
      if (val.byteLength !== 0 || (await xs.directory(p)).length !== 0) return 0;
    } catch {
      return 0;
    }
  }
}

// -- chmod ------------------------------------------------------------------------------

const MAX_PATH_LEN = 256;

async function chmod(tool: Tool, xs: XsOps, operands: string[], flags: Flags): Promise<number> {
  const [path, ...specs] = operands as [string, ...string[]];
  const perms: string[] = [];
  for (const spec of specs) {
    const id = atoi(spec.slice(1));
    const letter = spec.charAt(0);
    if (letter !== "n" && letter !== "r" && letter !== "w" && letter !== "b") {
      tool.errx(`Invalid permission specification: '${letter === "" ? "\0" : letter}'`);
    }
    perms.push(`${letter}${id}`);
  }
  await chmodOne(tool, xs, path, perms, flags.upto, flags.recurse);
  return 0;
}

async function chmodOne(
  tool: Tool,
  xs: XsOps,
  path: string,
  perms: string[],
  upto: boolean,
  recurse: boolean,
): Promise<void> {
  if (path === "") return;
  try {
    await xs.setPerms(path, perms);
  } catch (e) {
    tool.err(`Error occurred setting permissions on '${path}'`, e);
  }
  if (upto) {
    const slash = path.lastIndexOf("/");
    if (slash === -1) tool.errx(`Unable to locate path separator '/' in '${path}'`);
    await chmodOne(tool, xs, path.slice(0, slash), perms, true, false);
  }
  if (recurse) {
    let names: string[];
    try {
      names = await xs.directory(path);
    } catch {
      return;
    }
    for (const name of names) {
      // snprintf into a 256-byte buffer: longer paths are cut.
      const child = Buffer.from(utf8(`${path}/${name}`).subarray(0, MAX_PATH_LEN - 1)).toString("utf8");
      await chmodOne(tool, xs, child, perms, false, true);
    }
  }
}

// -- watch ------------------------------------------------------------------------------

/** xenstore-watch: one line per event (the initial ones too), each path watched with itself as token. */
async function watch(tool: Tool, client: XsClient, paths: string[], max: number): Promise<number> {
  const [first, ...rest] = paths as [string, ...string[]];
  const w = client.watch(first, first);
  try {
    await w.ready;
  } catch {
    tool.errx(`Unable to add watch on ${first}\n`);
  }
  for (const p of rest) {
    try {
      await w.add(p, p);
    } catch {
      tool.errx(`Unable to add watch on ${p}\n`);
    }
  }
  for (let count = 0; max === -1 || count < max; count++) {
    const r = await w.next().catch((e: unknown) => e as Error);
    if (r instanceof Error || r.done === true) {
      // libxenstore keeps returning NULL once the connection is gone: with -n the loop
      // runs out and exits 0; without it the C tool spins forever, so report and stop.
      if (max !== -1) return 0;
      tool.warn("xs_read_watch", r instanceof Error ? r : new ConnectionClosedError());
      return 1;
    }
    tool.io.stdout(utf8(`${r.value.path}\n`));
  }
  return 0;
}
