/**
 * Node permissions (Xen `xs_lib.c` `xs_strings_to_perms`, xenstored_core.c
 * `perm_for_conn`). Entry 0 names the owner, and its letter is the access of every domain
 * not listed; later entries grant access to one domain each. `n` none, `r` read,
 * `w` write, `b` both.
 */

export const Perm = {
  NONE: 0,
  READ: 1,
  WRITE: 2,
  /** Internal: the owner's extra right (set perms). */
  OWNER: 8,
} as const;

export interface PermEntry {
  readonly id: number;
  /** READ | WRITE bits. */
  readonly perms: number;
}

export type Perms = readonly PermEntry[];

const LETTER_TO_BITS: Readonly<Record<string, number>> = { n: 0, r: 1, w: 2, b: 3 };
/** Indexed by READ | WRITE bits. */
const LETTERS = "nrwb";

/**
 * `r5` → {id: 5, perms: READ}; null when the letter or the domid is bad. The domid is read as
 * C's `strtol(s, &end, 0)` reads it (`xs_strings_to_perms`: decimal, `0x` hex, `0` octal, a
 * sign) and must use up the rest of the string; it is stored as an unsigned 32-bit value.
 * `strict` is the client's check of a daemon's reply: decimal digits only, at most 32 bits.
 */
export function parsePerm(s: string, opts?: { readonly strict?: boolean }): PermEntry | null {
  const bits = LETTER_TO_BITS[s.charAt(0)];
  if (bits === undefined) return null;
  const rest = s.slice(1);
  if (opts?.strict === true) {
    if (!/^[0-9]+$/.test(rest)) return null;
    const id = Number(rest);
    return id > 0xffffffff ? null : { id, perms: bits };
  }
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(rest);
  if (!m) return null;
  const digits = m[2]!;
  let n: number;
  if (/^0[xX]/.test(digits)) n = Number.parseInt(digits.slice(2), 16);
  else if (digits.length > 1 && digits.startsWith("0")) n = Number.parseInt(digits, 8);
  else n = Number.parseInt(digits, 10);
  if (m[1] === "-") n = -n;
  return { id: n >>> 0, perms: bits };
}

/** The letter of READ | WRITE bits: `n`, `r`, `w` or `b`. */
export function permLetter(bits: number): string {
  return LETTERS.charAt(bits & 3);
}

/** `r5`; the domid printed as C's `%i` prints an unsigned int (so 0xffffffff is `-1`). */
export function formatPerm(p: PermEntry): string {
  return `${permLetter(p.perms)}${p.id | 0}`;
}

export interface Accessor {
  readonly domid: number;
  readonly privileged: boolean;
  /** The domain this one may act for (SET_TARGET), if any. */
  readonly target: number | null;
}

/** READ | WRITE | OWNER bits `who` has on a node with `perms`. */
export function permFor(who: Accessor, perms: Perms): number {
  const owner = perms[0]!;
  if (who.privileged || owner.id === who.domid || (who.target !== null && owner.id === who.target)) {
    return Perm.READ | Perm.WRITE | Perm.OWNER;
  }
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i]!;
    if (p.id === who.domid || (who.target !== null && p.id === who.target)) return p.perms;
  }
  return owner.perms;
}
