/**
 * The BlockDevice blkfront registers for a connected disk (Linux xen-blkfront's gendisk and its
 * blk-mq queue): a caller's range checked against the disk (inside it, aligned to `sector-size`,
 * writable), then handed to the connection's ring (blkif-front.ts); IoBuffers come from the
 * connection's page pool and work only on that connection.
 */
import { BLKIF_OP, BLKIF_RSP } from "./blkif.ts";
import type { BlkifFront, DiskInfo } from "./blkif-front.ts";
import {
  type BlockDevice,
  type BlockFeatures,
  BlockIOError,
  type BlockStats,
  type IoBuffer,
} from "./blockdev.ts";
import { PageBuffer, type PoolPage } from "./page-pool.ts";

export class BlkfrontDisk implements BlockDevice {
  readonly #f: BlkifFront;
  readonly #i: DiskInfo;
  constructor(f: BlkifFront, i: DiskInfo) {
    this.#f = f;
    this.#i = i;
  }
  get vdev(): string {
    return this.#i.vdev;
  }
  get devid(): number {
    return this.#i.devid;
  }
  get sectors(): number {
    return this.#i.sectors;
  }
  get sectorSize(): number {
    return this.#i.sectorSize;
  }
  get physicalSectorSize(): number {
    return this.#i.physicalSectorSize;
  }
  get readonly(): boolean {
    return this.#i.readonly;
  }
  /** What the backend offered, less what it has since refused (EOPNOTSUPP). */
  get features(): BlockFeatures {
    return this.#i.features;
  }
  get stats(): BlockStats {
    return { ...this.#f.stats };
  }

  #check(what: string, sector: number, count: number): void {
    if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || sector < 0 || count < 1) {
      throw new RangeError(`Cannot ${what}: bad range ${sector}+${count}`);
    }
    if (sector + count > this.#i.sectors) {
      throw new RangeError(`Cannot ${what} sectors ${sector}+${count}: the disk has ${this.#i.sectors}`);
    }
    const lb = this.#i.sectorSize / 512;
    if (sector % lb !== 0 || count % lb !== 0) {
      throw new RangeError(
        `Cannot ${what} sectors ${sector}+${count}: not aligned to ${this.#i.sectorSize} bytes`,
      );
    }
  }

  #checkWritable(): void {
    if (this.#i.readonly) throw new BlockIOError(`${this.#i.vdev}: read-only disk`, BLKIF_RSP.error);
  }

  async read(sector: number, count: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#check("read", sector, count);
    if (into !== undefined && into.byteLength < count * 512) {
      throw new RangeError(`Cannot read ${count} sectors into ${into.byteLength} bytes`);
    }
    const out = into === undefined ? new Uint8Array(count * 512) : into.subarray(0, count * 512);
    await this.#f.submit(BLKIF_OP.read, sector, count, out);
    return out;
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    if (data.byteLength % 512 !== 0) {
      throw new RangeError(`Cannot write ${data.byteLength} bytes: not a whole number of sectors`);
    }
    this.#check("write", sector, data.byteLength / 512);
    this.#checkWritable();
    await this.#f.submit(BLKIF_OP.write, sector, data.byteLength / 512, data);
  }

  async flush(): Promise<void> {
    // Without feature-flush-cache the backend writes through: nothing to flush (Linux sends none).
    if (!this.#i.features.flush) return;
    await this.#f.submit(BLKIF_OP.flushDiskcache, 0, 0, null);
  }

  async discard(sector: number, count: number): Promise<void> {
    this.#check("discard", sector, count);
    if (!this.#i.features.discard) {
      throw new BlockIOError(`${this.#i.vdev}: discard not supported`, BLKIF_RSP.eopnotsupp);
    }
    await this.#f.discard(sector, count);
  }

  allocBuffer(bytes: number): IoBuffer {
    if (!(Number.isSafeInteger(bytes) && bytes > 0))
      throw new RangeError(`Cannot allocate a ${bytes}-byte buffer`);
    const n = Math.ceil(bytes / 4096);
    const pages = this.#f.pool.takeBuffer(n);
    if (pages === null) {
      throw new BlockIOError(
        `${this.#i.vdev}: no memory for a buffer of ${n} pages (max_pages or the domain's)`,
        -1,
      );
    }
    return new PageBuffer(this.#f.pool, pages, bytes);
  }

  async readBuffer(sector: number, count: number, buf: IoBuffer): Promise<void> {
    this.#check("read", sector, count);
    await this.#f.submitPages(BLKIF_OP.read, sector, count, this.#pagesOf("read", buf, count));
  }

  async writeBuffer(sector: number, count: number, buf: IoBuffer): Promise<void> {
    this.#check("write", sector, count);
    this.#checkWritable();
    await this.#f.submitPages(BLKIF_OP.write, sector, count, this.#pagesOf("write", buf, count));
  }

  /** The pool pages behind `buf`, checked: this connection's, live, big enough. */
  #pagesOf(what: string, buf: IoBuffer, count: number): readonly PoolPage[] {
    if (!(buf instanceof PageBuffer) || buf.pool !== this.#f.pool || buf.freed) {
      throw new RangeError(
        `Cannot ${what} with that buffer: not a live buffer of ${this.#i.vdev} on this connection`,
      );
    }
    if (buf.byteLength < count * 512) {
      throw new RangeError(`Cannot ${what} ${count} sectors with a ${buf.byteLength}-byte buffer`);
    }
    return buf.poolPages;
  }
}
