/**
 * The raw image file a blkback device serves: the backend's only I/O (node:fs), kept apart from
 * the protocol code so tests can give the backend any `BlockStore`.
 *
 * Reads and writes go straight between the file and the granted pages the backend mapped (Buffer
 * views over the pages' SharedArrayBuffers, no copies), one `preadv`/`pwritev` per request for all
 * its segments: on libuv's thread pool (readv/writev), so dom0's event loop never blocks, or in the
 * caller's thread (readvSync/writevSync, blkback's `io=inline`). Flush is `fdatasync`.
 * Node has no `fallocate`, so discard writes zeros over the range (blkif allows either: after a
 * discard the contents are unspecified; ours read back as zeros).
 */
import * as fs from "node:fs";

/** What blkback needs of the storage behind a disk. Offsets and lengths are in bytes. */
export interface BlockStore {
  /** Size in bytes (the backend advertises size / 512 as `sectors`). */
  readonly size: number;
  readonly writable: boolean;
  /** Fills `bufs` in order from `pos`. */
  readv(bufs: readonly Uint8Array[], pos: number): Promise<void>;
  /** Writes `bufs` in order at `pos`. */
  writev(bufs: readonly Uint8Array[], pos: number): Promise<void>;
  /** readv in the caller's thread (blkback's `io=inline`); absent: the store has only readv. */
  readvSync?(bufs: readonly Uint8Array[], pos: number): void;
  /** writev in the caller's thread (blkback's `io=inline`). */
  writevSync?(bufs: readonly Uint8Array[], pos: number): void;
  /** Makes completed writes durable (fdatasync). */
  flush(): Promise<void>;
  /** Discards `len` bytes at `pos`: afterwards they read as zeros. */
  discard(pos: number, len: number): Promise<void>;
  close(): Promise<void>;
}

/** Zeros written by discard, 1 MiB at a time (never written to). */
const ZEROS = new Uint8Array(1 << 20);

function total(bufs: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of bufs) n += b.byteLength;
  return n;
}

/** The rest of `bufs` after the first `done` bytes (a short transfer's remainder). */
function rest(bufs: readonly Uint8Array[], done: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = done;
  for (const b of bufs) {
    if (skip >= b.byteLength) {
      skip -= b.byteLength;
      continue;
    }
    out.push(skip === 0 ? b : b.subarray(skip));
    skip = 0;
  }
  return out;
}

/** A raw image file opened read-write (`mode` w) or read-only (`mode` r). */
export class RawImage implements BlockStore {
  readonly path: string;
  readonly size: number;
  readonly writable: boolean;
  #fd: number;

  private constructor(path: string, fd: number, size: number, writable: boolean) {
    this.path = path;
    this.#fd = fd;
    this.size = size;
    this.writable = writable;
  }

  static async open(path: string, writable: boolean): Promise<RawImage> {
    const fd = await new Promise<number>((resolve, reject) =>
      fs.open(path, writable ? "r+" : "r", (e, fd) => (e ? reject(e) : resolve(fd))),
    );
    try {
      const st = await new Promise<fs.Stats>((resolve, reject) =>
        fs.fstat(fd, (e, s) => (e ? reject(e) : resolve(s))),
      );
      if (!st.isFile() && !st.isBlockDevice()) throw new Error(`Cannot serve ${path}: not a file`);
      return new RawImage(path, fd, st.size, writable);
    } catch (e) {
      fs.close(fd, () => {});
      throw e;
    }
  }

  readv(bufs: readonly Uint8Array[], pos: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const want = total(bufs);
      const step = (list: readonly Uint8Array[], at: number, done: number): void => {
        fs.readv(this.#fd, list as NodeJS.ArrayBufferView[], at, (e, n) => {
          if (e) return reject(e);
          if (done + n >= want) return resolve();
          // Past the end of the file (an image that shrank): the rest reads as zeros.
          if (n === 0) {
            for (const b of rest(bufs, done)) b.fill(0);
            return resolve();
          }
          step(rest(bufs, done + n), at + n, done + n);
        });
      };
      step(bufs, pos, 0);
    });
  }

  writev(bufs: readonly Uint8Array[], pos: number): Promise<void> {
    if (!this.writable) return Promise.reject(new Error(`Cannot write ${this.path}: opened read-only`));
    return new Promise((resolve, reject) => {
      const want = total(bufs);
      const step = (list: readonly Uint8Array[], at: number, done: number): void => {
        fs.writev(this.#fd, list as NodeJS.ArrayBufferView[], at, (e, n) => {
          if (e) return reject(e);
          if (done + n >= want) return resolve();
          step(rest(bufs, done + n), at + n, done + n);
        });
      };
      step(bufs, pos, 0);
    });
  }

  readvSync(bufs: readonly Uint8Array[], pos: number): void {
    const want = total(bufs);
    let list = bufs;
    for (let done = 0; done < want; ) {
      const n = fs.readvSync(this.#fd, list as NodeJS.ArrayBufferView[], pos + done);
      // Past the end of the file (an image that shrank): the rest reads as zeros.
      if (n === 0) {
        for (const b of list) b.fill(0);
        return;
      }
      done += n;
      if (done < want) list = rest(bufs, done);
    }
  }

  writevSync(bufs: readonly Uint8Array[], pos: number): void {
    if (!this.writable) throw new Error(`Cannot write ${this.path}: opened read-only`);
    const want = total(bufs);
    let list = bufs;
    for (let done = 0; done < want; ) {
      done += fs.writevSync(this.#fd, list as NodeJS.ArrayBufferView[], pos + done);
      if (done < want) list = rest(bufs, done);
    }
  }

  flush(): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(this.#fd, (e) => (e ? reject(e) : resolve())));
  }

  async discard(pos: number, len: number): Promise<void> {
    for (let at = pos; at < pos + len; at += ZEROS.byteLength) {
      await this.writev([ZEROS.subarray(0, Math.min(ZEROS.byteLength, pos + len - at))], at);
    }
  }

  close(): Promise<void> {
    const fd = this.#fd;
    this.#fd = -1;
    if (fd < 0) return Promise.resolve();
    return new Promise((resolve) => fs.close(fd, () => resolve()));
  }
}
