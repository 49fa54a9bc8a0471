/**
 * The packed store's byte arena (src/xenstore/node-table.ts): each node's name and value in
 * one block, 4-byte aligned and sized to round4(name + value). A freed block goes on the free
 * list of its exact size (its first 4 bytes hold the next free block), and an allocation of that
 * size takes it back first.
 */

const NONE = -1;

export const round4 = (n: number): number => (n + 3) & ~3;

/**
 * Growth. Small tables (a guest's test store) double. A table past 64k slots jumps to room for
 * 2M nodes, and its arena past 2 MiB to 64 MiB, in one fresh zero-filled allocation each:
 * pages never written cost no RSS, and the host's store then grows without copying. A copy
 * would leave the old buffer resident until V8's next full collection, which an idle daemon
 * may not run for a long time: in bench xenstore case f at 100k nodes that slack was most of
 * the step from 176 to 88 B of RSS per node.
 */
export const RESERVE_SLOTS = 1 << 21;
const RESERVE_ARENA = 64 << 20;

export function grown(cap: number, reserve: number): number {
  return cap >= reserve >> 5 && cap < reserve ? reserve : cap * 2;
}

export class Arena {
  bytes: Buffer = Buffer.alloc(64 * 1024);
  #words: Int32Array<ArrayBufferLike> = new Int32Array(
    this.bytes.buffer,
    this.bytes.byteOffset,
    this.bytes.byteLength >> 2,
  );
  /** Bytes handed out so far (in use or on a free list). */
  top = 0;
  /** Head of each free list, by block size / 4. */
  #freeBlock = new Int32Array(1100).fill(NONE);

  /** A block of `size` bytes (a multiple of 4); its offset. */
  alloc(size: number): number {
    const cls = size >> 2;
    if (cls < this.#freeBlock.length) {
      const head = this.#freeBlock[cls]!;
      if (head !== NONE) {
        this.#freeBlock[cls] = this.#words[head >> 2]!;
        return head;
      }
    }
    if (this.top + size > this.bytes.byteLength) {
      let cap = grown(this.bytes.byteLength, RESERVE_ARENA);
      while (this.top + size > cap) cap *= 2;
      const b = Buffer.alloc(cap);
      b.set(this.bytes.subarray(0, this.top));
      this.bytes = b;
      this.#words = new Int32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
    }
    const off = this.top;
    this.top += size;
    return off;
  }

  free(off: number, size: number): void {
    const cls = size >> 2;
    if (cls >= this.#freeBlock.length) {
      const heads = new Int32Array(cls * 2).fill(NONE);
      heads.set(this.#freeBlock);
      this.#freeBlock = heads;
    }
    this.#words[off >> 2] = this.#freeBlock[cls]!;
    this.#freeBlock[cls] = off;
  }
}
