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
import { permEntry, type XsClient, type XsOps, type XsTransaction } from "../xenstore/client.ts";
import { ConnectionClosedError, XsError } from "../xenstore/errors.ts";
import { formatPerm } from "../xenstore/perms.ts";
import { connectXenstore, xenstoredSocketPath } from "../xenstore/transport-socket-client.ts";
import { atoi } from "../xenstore/wire.ts";

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

function defaultIo(overrides: Partial<XsIo>): XsIo {
  if (overrides.stdout === undefined) {
    // A closed pipe (`xenlab xs watch /x | head -1`): the C tool dies of SIGPIPE, which
    // Node ignores; leave quietly with the status a shell shows for it.
    process.stdout.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") process.exit(128 + 13);
      throw e;
    });
  }
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

const SHORT_OPTIONS = "hfspturn:R";
const LONG_OPTIONS: readonly { name: string; hasArg: boolean; short: string }[] = [
  { name: "help", hasArg: false, short: "h" },
  { name: "flat", hasArg: false, short: "f" },
  { name: "prefix", hasArg: false, short: "p" },
  { name: "tidy", hasArg: false, short: "t" },
  { name: "upto", hasArg: false, short: "u" },
  { name: "recurse", hasArg: false, short: "r" },
  { name: "number", hasArg: true, short: "n" },
  { name: "raw", hasArg: false, short: "R" },
];

interface Parsed {
  /** Option letters in order, with their argument; `?` for a rejected option. */
  opts: { c: string; arg?: string }[];
  operands: string[];
}

/**
 * glibc `getopt_long` over `args`, complaining on stderr as it does. Operands are permuted
 * to the end unless POSIXLY_CORRECT is set; `--` ends the options. Yields as it goes, so a
 * caller that stops early (usage) has printed exactly the complaints glibc would have.
 */
function* getoptLong(
  args: readonly string[],
  prog: string,
  io: XsIo,
  operands: string[],
): Generator<Parsed["opts"][number]> {
  const posixly = io.env.POSIXLY_CORRECT !== undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      operands.push(...args.slice(i + 1));
      return;
    }
    if (!a.startsWith("-") || a === "-") {
      if (posixly) {
        operands.push(...args.slice(i));
        return;
      }
      operands.push(a);
      continue;
    }
    if (a.startsWith("--")) {
      const body = a.slice(2);
      const eq = body.indexOf("=");
      const name = eq === -1 ? body : body.slice(0, eq);
      const exact = LONG_OPTIONS.find((o) => o.name === name);
      const matches = exact !== undefined ? [exact] : LONG_OPTIONS.filter((o) => o.name.startsWith(name));
      if (matches.length === 0) {
        io.stderr(`${prog}: unrecognized option '--${body}'\n`);
        yield { c: "?" };
        continue;
      }
      if (matches.length > 1) {
        const list = matches.map((o) => ` '--${o.name}'`).join("");
        io.stderr(`${prog}: option '--${body}' is ambiguous; possibilities:${list}\n`);
        yield { c: "?" };
        continue;
      }
      const o = matches[0]!;
      if (eq !== -1 && !o.hasArg) {
        io.stderr(`${prog}: option '--${o.name}' doesn't allow an argument\n`);
        yield { c: "?" };
        continue;
      }
      if (o.hasArg) {
        const arg: string | undefined = eq !== -1 ? body.slice(eq + 1) : args[i + 1];
        if (eq === -1 && arg !== undefined) i++;
        if (arg === undefined) {
          io.stderr(`${prog}: option '--${o.name}' requires an argument\n`);
          yield { c: "?" };
          continue;
        }
        yield { c: o.short, arg };
        continue;
      }
      yield { c: o.short };
      continue;
    }
    // A cluster of short options: -fp, -n3, -n 3.
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      const at = c === ":" ? -1 : SHORT_OPTIONS.indexOf(c);
      if (at === -1) {
        io.stderr(`${prog}: invalid option -- '${c}'\n`);
        yield { c: "?" };
        continue;
      }
      if (SHORT_OPTIONS[at + 1] !== ":") {
        yield { c };
        continue;
      }
      const rest = a.slice(j + 1);
      if (rest !== "") {
        yield { c, arg: rest };
      } else if (i + 1 < args.length) {
        i++;
        yield { c, arg: args[i]! };
      } else {
        io.stderr(`${prog}: option requires an argument -- '${c}'\n`);
        yield { c: "?" };
      }
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------
// C library behaviour the tools rely on

/** Thrown to leave the tool with an exit code (err()/errx()); never escapes `run()`. */
class ToolExit {
  readonly code: number;
  constructor(code: number) {
    this.code = code;
  }
}

/** glibc strerror() texts for the errors a XenStore client can see. */
const STRERROR: Record<string, string> = {
  EPERM: "Operation not permitted",
  ENOENT: "No such file or directory",
  EIO: "Input/output error",
  E2BIG: "Argument list too long",
  EBADF: "Bad file descriptor",
  EAGAIN: "Resource temporarily unavailable",
  ENOMEM: "Cannot allocate memory",
  EACCES: "Permission denied",
  EBUSY: "Device or resource busy",
  EEXIST: "File exists",
  ENOTDIR: "Not a directory",
  EISDIR: "Is a directory",
  EINVAL: "Invalid argument",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  EPIPE: "Broken pipe",
  ENOSYS: "Function not implemented",
  ENOTEMPTY: "Directory not empty",
  ENOTSOCK: "Socket operation on non-socket",
  ECONNRESET: "Connection reset by peer",
  EISCONN: "Transport endpoint is already connected",
  ECONNREFUSED: "Connection refused",
};

/** The errno name libxenstore would leave behind for `e`. */
function errnoOf(e: unknown): string {
  if (e instanceof XsError) return e.errno;
  // libxenstore reads EOF as EBADF ("It closed fd on us?").
  if (e instanceof ConnectionClosedError) return "EBADF";
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "EIO";
}

function strerror(e: unknown): string {
  const name = errnoOf(e);
  return STRERROR[name] ?? name;
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]);

const encoder = new TextEncoder();

function bytes(s: string): Uint8Array {
  return encoder.encode(s);
}

/**
 * xs_lib.c `sanitise_value`: printable ASCII except `\` as is; `\t \n \r \\`; other bytes
 * below 8 as three octal digits (`\001`), the rest as `\xNN`.
 */
export function sanitiseValue(val: Uint8Array): string {
  let out = "";
  for (const c of val) {
    if (c >= 0x20 && c <= 0x7e && c !== 0x5c) {
      out += String.fromCharCode(c);
      continue;
    }
    if (c === 0x09) out += "\\t";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x5c) out += "\\\\";
    else if (c < 8) out += `\\${c.toString(8).padStart(3, "0")}`;
    else out += `\\x${c.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/**
 * xs_lib.c `unsanitise_value`, byte for byte, including what its `sscanf("%2x")` and
 * `sscanf("%3o")` accept: `\x` then optional blanks, a sign and a `0x` prefix within the
 * two-character field; an unparsable `\x` stands for `x`; a trailing `\` becomes a NUL.
 */
export function unsanitiseValue(spec: string): Uint8Array {
  const input = bytes(spec);
  const out: number[] = [];
  let ip = 0;
  const isHex = (b: number | undefined) =>
    b !== undefined && ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66));
  const isOct = (b: number | undefined) => b !== undefined && b >= 0x30 && b <= 0x37;
  /** sscanf("%<width><conv>%n") at `ip`: the value and bytes used, or null on no match. */
  const scan = (width: number, base: 8 | 16): { value: number; used: number } | null => {
    let p = ip;
    while (p < input.length && WS.has(input[p]!)) p++;
    let w = width;
    let neg = false;
    if (input[p] === 0x2b || input[p] === 0x2d) {
      neg = input[p] === 0x2d;
      p++;
      w--;
    }
    let value = 0;
    let digits = 0;
    if (base === 16 && w >= 2 && input[p] === 0x30 && (input[p + 1] === 0x78 || input[p + 1] === 0x58)) {
      p += 2;
      w -= 2;
      digits = 1; // "0x" alone reads as 0
    }
    const ok = base === 16 ? isHex : isOct;
    while (w > 0 && ok(input[p])) {
      value = value * base + Number.parseInt(String.fromCharCode(input[p]!), 16);
      p++;
      w--;
      digits++;
    }
    if (digits === 0) return null;
    return { value: neg ? -value : value, used: p - ip };
  };
  while (ip < input.length) {
    let c = input[ip++]!;
    if (c === 0x5c) {
      c = ip < input.length ? input[ip++]! : 0;
      switch (c) {
        case 0x74:
          c = 0x09;
          break;
        case 0x6e:
          c = 0x0a;
          break;
        case 0x72:
          c = 0x0d;
          break;
        case 0x78: {
          const r = scan(2, 16);
          if (r !== null) {
            c = r.value & 0xff;
            ip += r.used;
          }
          break;
        }
        default:
          if (isOct(c)) {
            ip--;
            const r = scan(3, 8)!;
            c = r.value & 0xff;
            ip += r.used;
          }
        // `\\` is `\`, anything else stands for itself, and a final `\` gives c = 0.
      }
    }
    out.push(c);
  }
  return Uint8Array.from(out);
}

// ---------------------------------------------------------------------------------------
// The tool

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
    this.#direct.push(typeof s === "string" ? bytes(s) : s);
  }

  out(s: string | Uint8Array): void {
    this.output.push(typeof s === "string" ? bytes(s) : s);
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

/** `xenlab xs <mode> args...`; resolves with the exit code. */
export async function run(argv: string[], ioOverrides: Partial<XsIo> = {}): Promise<number> {
  const io: XsIo = { ...defaultIo(ioOverrides), ...ioOverrides };
  const [modeName, ...args] = argv;
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
    for (const { c, arg } of getoptLong(args, tool.prog, io, operands)) {
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
          await xs.write(path, flags.raw ? bytes(spec) : unsanitiseValue(spec));
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
    case "ls": {
      // -f widens the line, but on a terminal its width wins (the C tool asks after -f).
      const width = tool.io.columns !== undefined ? tool.io.columns - 2 : flags.flat ? INT_MAX_HALF : 80;
      const ls = new Lister(tool, xs, flags.prefix, flags.flat, width);
      for (const path of operands.length === 0 ? ["/"] : operands) await ls.list(path, 0);
      return 0;
    }
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

// -- ls ---------------------------------------------------------------------------------

/** `" = \"...\""`: the room ls keeps for a value. */
const TAG_LEN = 8;
const STRING_MAX = 3072 + 1024;
const INT_MAX_HALF = 0x3fffffff;
const LS_WINDOW = 64;

/** printf("%.*s", prec, s) on bytes: a negative precision prints everything. */
function precision(b: Uint8Array, prec: number): Uint8Array {
  return prec < 0 ? b : b.subarray(0, prec);
}

/**
 * xenstore-ls: a tree with one `name = "value"` line per node, indented by depth and cut to
 * the terminal width (80 columns when stdout is not a terminal), with `-p` the permissions
 * after dots up to column 60. `-f` prints full paths, and cuts nothing unless stdout is a
 * terminal.
 */
class Lister {
  readonly #maxWidth: number;
  readonly #desiredWidth: number;
  readonly tool: Tool;
  readonly xs: XsOps;
  readonly perms: boolean;
  readonly flat: boolean;

  constructor(tool: Tool, xs: XsOps, perms: boolean, flat: boolean, width: number) {
    this.tool = tool;
    this.xs = xs;
    this.perms = perms;
    this.flat = flat;
    this.#maxWidth = width;
    this.#desiredWidth = flat ? 0 : 60;
  }

  async list(path: string, depth: number, prefetched?: Promise<Settled<string[]>>): Promise<void> {
    const tool: Tool = this.tool;
    const xs = this.xs;
    const listing = await (prefetched ?? settle(xs.directory(path)));
    if (!listing.ok) {
      const e = listing.error;
      // A node that disappears while recursing is skipped silently.
      if (depth > 0 && e instanceof XsError && e.errno === "ENOENT") return;
      tool.err(`xs_directory (${path})`, e);
    }
    const names = listing.value;
    const max = this.#maxWidth;
    // Ask for the values, permissions and children of up to LS_WINDOW nodes ahead: about
    // one round trip per window instead of two or three per node. The output is the same; the C tool asks
    // one by one.
    const fetch = (name: string) => {
      let full = bytes(`${path}${path.endsWith("/") ? "" : "/"}${name}`);
      const fits = full.byteLength < STRING_MAX;
      if (!fits) full = full.subarray(0, STRING_MAX - 1); // snprintf truncation
      const newpath = Buffer.from(full).toString("utf8");
      const val = fits ? xs.readBytes(newpath).catch(() => null) : Promise.resolve(null);
      const perms = this.perms ? settle(xs.getPerms(newpath)) : null;
      return { name, full, newpath, val, perms, children: settle(xs.directory(newpath)) };
    };
    const ahead: ReturnType<typeof fetch>[] = [];
    let next = 0;
    for (let i = 0; i < names.length; i++) {
      while (next < names.length && next < i + LS_WINDOW) ahead.push(fetch(names[next++]!));
      const { name, full, newpath, val: pendingVal, perms: pendingPerms, children } = ahead.shift()!;
      let linewid = 0;
      if (this.flat) {
        tool.print(full);
      } else {
        tool.print(" ".repeat(depth));
        linewid = depth;
        const shown = precision(bytes(name), max - TAG_LEN - linewid);
        tool.print(shown);
        linewid += shown.byteLength;
      }

      const val = await pendingVal;
      if (val === null) {
        tool.print(":\n");
      } else {
        const text = bytes(sanitiseValue(val));
        // The C code compares as unsigned: a negative width never cuts.
        if (max >= 0 && max < linewid + val.byteLength + TAG_LEN) {
          tool.print(' = "');
          tool.print(precision(text, max - TAG_LEN - linewid));
          tool.print('\\..."');
        } else {
          tool.print(' = "');
          tool.print(text);
          tool.print('"');
          linewid += 5 + text.byteLength;
          if (this.perms) {
            let pad = " ";
            for (linewid++; linewid < Math.min(this.#desiredWidth, max); linewid++)
              pad += linewid & 1 ? "." : " ";
            tool.print(pad);
          }
        }
      }

      if (pendingPerms !== null) {
        const perms = await pendingPerms;
        // xs_perm_to_string prints the domid as a C int, as perms.ts formatPerm does.
        if (perms.ok) tool.print(`  (${perms.value.map((p) => formatPerm(permEntry(p))).join(",")})`);
        else tool.warn(`\ncould not access permissions for ${name}`, perms.error);
      }
      tool.print("\n");
      await this.list(newpath, depth + 1, children);
    }
  }
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** A promise that never rejects (so it may wait unobserved). */
function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
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
      const child = Buffer.from(bytes(`${path}/${name}`).subarray(0, MAX_PATH_LEN - 1)).toString("utf8");
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
    tool.io.stdout(bytes(`${r.value.path}\n`));
  }
  return 0;
}
