/**
 * What Xen's C tools get from their libraries and xenlab xs reproduces byte for byte: glibc's
 * `getopt_long` (with its complaints) and `strerror` texts, and xs_lib.c's
 * `sanitise_value`/`unsanitise_value`.
 */
import { ConnectionClosedError, XsError } from "../xenstore/errors.ts";
import { utf8 } from "../xenstore/wire.ts";

/** One long option: `--name`, its short letter, and whether it takes an argument. */
export interface LongOption {
  readonly name: string;
  readonly hasArg: boolean;
  readonly short: string;
}

/** getopt_long's option tables: `optstring` (a letter, `:` after one taking an argument). */
export interface GetoptOptions {
  readonly short: string;
  readonly long: readonly LongOption[];
}

/** Where getopt_long complains, and the environment it reads (POSIXLY_CORRECT). */
export interface GetoptIo {
  stderr(text: string): void;
  readonly env: NodeJS.ProcessEnv;
}

/** One option found: its letter (`?` for a rejected one) and its argument. */
export interface GetoptItem {
  readonly c: string;
  readonly arg?: string;
}

/**
 * glibc `getopt_long` over `args`, complaining on stderr as it does. Operands are permuted
 * to the end unless POSIXLY_CORRECT is set; `--` ends the options. Yields as it goes, so a
 * caller that stops early (usage) has printed exactly the complaints glibc would have.
 */
export function* getoptLong(
  args: readonly string[],
  options: GetoptOptions,
  prog: string,
  io: GetoptIo,
  operands: string[],
): Generator<GetoptItem> {
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
      const exact = options.long.find((o) => o.name === name);
      const matches = exact !== undefined ? [exact] : options.long.filter((o) => o.name.startsWith(name));
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
      const at = c === ":" ? -1 : options.short.indexOf(c);
      if (at === -1) {
        io.stderr(`${prog}: invalid option -- '${c}'\n`);
        yield { c: "?" };
        continue;
      }
      if (options.short[at + 1] !== ":") {
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
// strerror

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

export function strerror(e: unknown): string {
  const name = errnoOf(e);
  return STRERROR[name] ?? name;
}

// ---------------------------------------------------------------------------------------
// Values as the tools print and read them

const WS = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]);

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
  const input = utf8(spec);
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
