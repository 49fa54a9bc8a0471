/**
 * xenstore-ls's output (xenstore_client.c `do_ls`): the tree, values cut to the line width,
 * `-p` permissions, `-f` full paths, fetched a window ahead so a big tree costs few round
 * trips.
 */
import { permEntry, type XsOps } from "../xenstore/client.ts";
import { XsError } from "../xenstore/errors.ts";
import { formatPerm } from "../xenstore/perms.ts";
import { utf8 } from "../xenstore/wire.ts";
import { sanitiseValue } from "./xs-clib.ts";

/** Where ls writes (the tool's stdout and its err()/warn()). */
export interface LsOutput {
  print(s: string | Uint8Array): void;
  warn(msg: string, e: unknown): void;
  err(msg: string, e: unknown): never;
}

/**
 * Lists each of `paths` (`/` if none). The line is `columns - 2` wide on a terminal, else 80,
 * or unlimited with `flat` (-f widens the line, but on a terminal its width wins: the C tool
 * asks after -f).
 */
export async function ls(
  out: LsOutput,
  xs: XsOps,
  paths: readonly string[],
  perms: boolean,
  flat: boolean,
  columns: number | undefined,
): Promise<void> {
  const width = columns !== undefined ? columns - 2 : flat ? INT_MAX_HALF : 80;
  const lister = new Lister(out, xs, perms, flat, width);
  for (const path of paths.length === 0 ? ["/"] : paths) await lister.list(path, 0);
}

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
  readonly tool: LsOutput;
  readonly xs: XsOps;
  readonly perms: boolean;
  readonly flat: boolean;

  constructor(tool: LsOutput, xs: XsOps, perms: boolean, flat: boolean, width: number) {
    this.tool = tool;
    this.xs = xs;
    this.perms = perms;
    this.flat = flat;
    this.#maxWidth = width;
    this.#desiredWidth = flat ? 0 : 60;
  }

  async list(path: string, depth: number, prefetched?: Promise<Settled<string[]>>): Promise<void> {
    // Typed, so that err() (never returns) ends the flow for the compiler too.
    const tool: LsOutput = this.tool;
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
      let full = utf8(`${path}${path.endsWith("/") ? "" : "/"}${name}`);
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
        const shown = precision(utf8(name), max - TAG_LEN - linewid);
        tool.print(shown);
        linewid += shown.byteLength;
      }

      const val = await pendingVal;
      if (val === null) {
        tool.print(":\n");
      } else {
        const text = utf8(sanitiseValue(val));
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
