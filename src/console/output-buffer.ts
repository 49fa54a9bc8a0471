/**
 * xenconsoled's per-console output buffer (tools/console/daemon/io.c `struct buffer`,
 * `buffer_append` with `--overflow-data=discard`, its default): what the guest wrote that no
 * client has taken yet. It is capped by `max`, the console's `limit` key: once it holds more
 * than 5/4 of `max`, the bytes from max/2 to max are dropped, so the oldest half (the boot) and
 * the newest bytes survive, as xenconsoled keeps them.
 *
 *   max 8, appending 11 bytes "abcdefghijk" (11 > 10 = 5/4 of 8): "abcd" + "ijk" stay,
 *   "efgh" is dropped (discarded 4), size 7.
 *
 * Pure: bytes in, bytes out.
 */

export class OutputBuffer {
  /** The cap (0: unbounded, as xenconsoled without a `limit`). */
  readonly max: number;
  /** Bytes dropped by the cap so far. */
  discarded = 0;
  #chunks: Uint8Array[] = [];
  #size = 0;

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`Invalid output buffer cap ${max}`);
    this.max = max;
  }

  get size(): number {
    return this.#size;
  }

  /** Appends a copy of `bytes`, then applies the cap. */
  append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#chunks.push(bytes.slice());
    this.#size += bytes.length;
    const { max } = this;
    if (max > 0 && this.#size > (5 * max) / 4) {
      // Discard the middle: keep [0, max/2) and [max, size).
      const half = Math.floor(max / 2);
      const all = this.take();
      this.#chunks = [all.slice(0, half), all.slice(max)];
      this.#size = all.length - (max - half);
      this.discarded += max - half;
    }
  }

  /** Everything buffered, oldest first; the buffer is empty afterwards. */
  take(): Uint8Array {
    const out = new Uint8Array(this.#size);
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    this.#chunks = [];
    this.#size = 0;
    return out;
  }
}
