/**
 * The last bytes a guest wrote on its console, for the live view's Consoles panel: a fixed ring
 * of `max` bytes that always holds the newest output, whatever clients took or the log kept.
 * Unlike OutputBuffer (which keeps the boot and drops the middle, for the next client), this
 * keeps the tail, as a terminal's scrollback does. Pure: bytes in, bytes out; its memory is
 * `max` bytes from the start.
 *
 *   max 4, appending "abc" then "def": holds "cdef", total 6.
 */
export class OutputTail {
  readonly max: number;
  /** Bytes appended so far (the tail holds the last min(total, max)). */
  total = 0;
  readonly #buf: Uint8Array;

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`Invalid output tail size ${max}`);
    this.max = max;
    this.#buf = new Uint8Array(max);
  }

  append(bytes: Uint8Array): void {
    const n = bytes.length;
    const { max } = this;
    const src = n > max ? bytes.subarray(n - max) : bytes;
    const at = (this.total + (n - src.length)) % max;
    const first = Math.min(src.length, max - at);
    this.#buf.set(src.subarray(0, first), at);
    if (first < src.length) this.#buf.set(src.subarray(first), 0);
    this.total += n;
  }

  /** The bytes held, oldest first (a copy). */
  bytes(): Uint8Array {
    const { max, total } = this;
    if (total <= max) return this.#buf.slice(0, total);
    const at = total % max;
    const out = new Uint8Array(max);
    out.set(this.#buf.subarray(at), 0);
    out.set(this.#buf.subarray(0, at), max - at);
    return out;
  }
}

/**
 * Console bytes as the text a terminal would show, for a page: UTF-8 (a character cut at the
 * tail's start becomes U+FFFD), `\r\n` as `\n`, a backspace erasing the character before it (the
 * getty echoes `\b \b`), ANSI escape sequences and the other control characters dropped.
 */
export function consoleText(bytes: Uint8Array): string {
  const raw = new TextDecoder("utf-8").decode(bytes);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal control sequences are the point
  const plain = raw.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|\r(?=\n)/g, "");
  let out = "";
  for (const ch of plain) {
    if (ch === "\b") out = out.slice(0, -1);
    else if (ch === "\n" || ch === "\t" || ch >= " ") out += ch === "\x7f" ? "" : ch;
  }
  return out;
}
