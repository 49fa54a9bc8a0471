/**
 * The I/O patterns of `xenlab bench blk`, one implementation for both sides so they issue the
 * same requests in the same order: inside the guest against its PV disk (blk-guest.ts, through
 * blkfront → blkback) and in a plain worker against the image file (blk-file.ts, node:fs).
 *
 * A load is `qd` loops, each keeping one request in flight: random loops pick block-aligned
 * offsets from their own xorshift32 stream (seeded per loop, so runs repeat), sequential loops
 * share one cursor that wraps at the end of the region. Each loop has one buffer (SectorIO.alloc),
 * reused: writes send it, filled once; reads land in it (as fio and dd reuse theirs). The load runs `warmupSeconds` untimed, then counts the requests started in the next
 * `seconds` (each is waited for), over the time from the end of the warm-up to the last
 * completion.
 */

export type Pattern = "randread" | "randwrite" | "seqread" | "seqwrite";

export interface LoadSpec {
  readonly pattern: Pattern;
  /** Bytes per request, a multiple of 512. */
  readonly blockBytes: number;
  /** Requests in flight. */
  readonly qd: number;
  /** The region of the disk the load covers, from sector 0, in 512-byte sectors. */
  readonly regionSectors: number;
  readonly warmupSeconds: number;
  readonly seconds: number;
}

export interface LoadResult {
  /** Requests completed in the timed part. */
  readonly ops: number;
  /** Requests completed, warm-up included. */
  readonly allOps: number;
  readonly bytes: number;
  readonly seconds: number;
}

/**
 * What a load needs of a disk: buffers, and sector reads into one and writes from one (count *
 * 512 bytes). B is the side's buffer: a Uint8Array for node:fs and blkfront's copying API, an
 * IoBuffer of guest pages for blkfront's zero-copy one.
 */
export interface SectorIO<B> {
  /** A loop's buffer of `bytes`, every byte `fill` (what a write sends). */
  alloc(bytes: number, fill: number): B;
  read(sector: number, count: number, into: B): Promise<unknown>;
  write(sector: number, count: number, data: B): Promise<void>;
  /** Gives a loop's buffer back when the load ends. */
  free?(b: B): void;
}

const SECTOR = 512;

/**
 * A load's buffer that starts on a page boundary, as a program doing direct I/O allocates it
 * (posix_memalign), on both sides of the bench. Where a buffer starts matters more than expected:
 * on the EPYC machines here a pread into a destination 8 or 16 bytes past a page boundary ran at a
 * sixth of the speed of one at 0 or 32 bytes and more (a C preadv test, 90 against 600 µs/MiB;
 * likely 4K aliasing between the page cache's source and the destination), and glibc puts a large
 * allocation exactly there, behind an mmap'd chunk's 16-byte header. A plain `new Uint8Array(1 MiB)`
 * made the baseline swing between 1.6 and 7 GB/s from one load's buffer to the next. WebAssembly
 * memory is mapped by itself, page-aligned.
 */
// The one WebAssembly API used here (the project's libs have no WebAssembly types).
declare const WebAssembly: {
  Memory: new (d: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer };
};

export function alignedBuffer(bytes: number, fill: number): Uint8Array {
  const pages = Math.max(1, Math.ceil(bytes / 65536)); // WebAssembly pages of 64 KiB
  return new Uint8Array(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer, 0, bytes).fill(
    fill,
  );
}

/** xorshift32: a cheap deterministic stream, the same on both sides. */
function xorshift(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

export function checkLoad(spec: LoadSpec): void {
  if (!(Number.isInteger(spec.blockBytes) && spec.blockBytes > 0 && spec.blockBytes % SECTOR === 0))
    throw new RangeError(`Cannot run the load: block size ${spec.blockBytes} is not a multiple of 512`);
  if (spec.regionSectors * SECTOR < spec.blockBytes)
    throw new RangeError(`Cannot run the load: the region is smaller than one ${spec.blockBytes}-byte block`);
  if (!(Number.isInteger(spec.qd) && spec.qd >= 1))
    throw new RangeError(`Cannot run the load: queue depth ${spec.qd}`);
}

export async function runLoad<B>(io: SectorIO<B>, spec: LoadSpec): Promise<LoadResult> {
  checkLoad(spec);
  const perBlock = spec.blockBytes / SECTOR;
  const blocks = Math.floor(spec.regionSectors / perBlock);
  const write = spec.pattern === "randwrite" || spec.pattern === "seqwrite";
  const random = spec.pattern === "randread" || spec.pattern === "randwrite";
  let cursor = 0;
  let ops = 0;
  let allOps = 0;
  const begin = performance.now();
  const timedFrom = begin + spec.warmupSeconds * 1000;
  const until = timedFrom + spec.seconds * 1000;
  let last = timedFrom;

  // Deadlines are checked by the loops themselves, not by a timer, so a disk that answers
  // without yielding to the event loop still stops on time.
  const loop = async (i: number): Promise<void> => {
    const next = xorshift(0x9e3779b9 ^ Math.imul(i + 1, 0x85ebca6b));
    const buf = io.alloc(spec.blockBytes, write ? 0x5a ^ i : 0);
    try {
      for (let started = performance.now(); started < until; started = performance.now()) {
        let block: number;
        if (random) block = next() % blocks;
        else {
          block = cursor;
          cursor = (cursor + 1) % blocks;
        }
        const sector = block * perBlock;
        if (write) await io.write(sector, perBlock, buf);
        else await io.read(sector, perBlock, buf);
        allOps++;
        if (started >= timedFrom) {
          ops++;
          last = Math.max(last, performance.now());
        }
      }
    } finally {
      io.free?.(buf);
    }
  };

  await Promise.all(Array.from({ length: spec.qd }, (_, i) => loop(i)));
  const seconds = (last - timedFrom) / 1000;
  return { ops, allOps, bytes: ops * spec.blockBytes, seconds };
}
