/**
 * What a guest's block layer sees of a PV disk, and how a disk is named.
 *
 * blkfront (src/drivers/blk/blkfront.ts) registers each disk it has connected here, in the domain's own
 * worker; any other module of that domain (a filesystem, a benchmark, the `call`s behind
 * `xenlab blk-cp`) finds it with `blockDevices(kernel)`. Modules are loaded as fresh instances
 * (Kernel.insmod), but what they import is one instance per worker, so this registry is shared.
 *
 * Disk names follow libxl (libxl__device_disk_dev_number, libxl__devid_to_vdev): `xvda` is
 * devid 51712 = (202 << 8) | (disk << 4) | partition for disks 0–15 and partitions 0–15, else
 * the extended form (1 << 28) | (disk << 8) | partition; `hdX`, `sdX`, `dNpM` and a bare
 * number are accepted as xl accepts them.
 */
import type { Kernel } from "../../kernel/kernel.ts";

/** A disk as `xl` describes it (docs/man/xl-disk-configuration.5.pod). */
export interface DiskSpec {
  /** The image file the backend serves (`target=`). */
  readonly target: string;
  /** The guest's name for the disk (`vdev=`), e.g. `xvda`. */
  readonly vdev: string;
  /** `access=`: rw (the default) or ro. */
  readonly access: "rw" | "ro";
  /** `format=`: only raw images are served. */
  readonly format: "raw";
  /** `devtype=`: disk (the default) or cdrom. */
  readonly devtype: "disk" | "cdrom";
}

/** What the backend offered and the frontend took, once Connected. */
export interface BlockFeatures {
  readonly flush: boolean;
  readonly discard: boolean;
  readonly persistent: boolean;
  /** 0 when indirect descriptors are not in use. */
  readonly maxIndirectSegments: number;
  /** Pages of the shared ring (1 << ring-page-order). */
  readonly ringPages: number;
}

/** What a connected disk is: its name, size and what it offers (the `info` host call's answer). */
export interface BlockDeviceInfo {
  readonly vdev: string;
  readonly devid: number;
  /** Size in 512-byte sectors (the backend's `sectors`). */
  readonly sectors: number;
  /** The backend's `sector-size` and `physical-sector-size`. */
  readonly sectorSize: number;
  readonly physicalSectorSize: number;
  readonly readonly: boolean;
  readonly features: BlockFeatures;
}

/**
 * A connected PV disk. Offsets and counts are in 512-byte sectors, as on the wire (blkif's
 * sector_number is always in 512-byte units). I/O fails with a BlockIOError when the backend
 * answers BLKIF_RSP_ERROR or EOPNOTSUPP, or goes away with the request in flight.
 */
export interface BlockDevice extends BlockDeviceInfo {
  /**
   * Reads `count` sectors. With `into` (at least count * 512 bytes) the data lands there and the
   * result is its first count * 512 bytes; without, in a new buffer.
   */
  read(sector: number, count: number, into?: Uint8Array): Promise<Uint8Array>;
  write(sector: number, data: Uint8Array): Promise<void>;
  flush(): Promise<void>;
  discard(sector: number, count: number): Promise<void>;
  /** The frontend's counters since the disk connected (Linux: the ring's debugfs/sysfs). */
  readonly stats?: BlockStats;
  /**
   * Zero-copy I/O, for frontends that can (blkfront): `allocBuffer` gives guest pages the
   * frontend grants to the backend as they are, so `readBuffer`/`writeBuffer` move data between
   * the disk and those pages with no copy in the guest (as O_DIRECT into pages blkfront grants,
   * or io_uring's registered buffers). A buffer belongs to the connection that gave it.
   */
  allocBuffer?(bytes: number): IoBuffer;
  /** Reads `count` sectors into the first count * 512 bytes of `buf`. */
  readBuffer?(sector: number, count: number, buf: IoBuffer): Promise<void>;
  /** Writes the first `count` sectors of `buf`. */
  writeBuffer?(sector: number, count: number, buf: IoBuffer): Promise<void>;
}

/**
 * Guest pages for zero-copy I/O: `pages[i]` holds bytes i * 4096 … i * 4096 + 4095 of the buffer.
 * Not to be touched while a request on it is in flight (the backend reads or fills the pages), nor
 * given to a second request before the first has completed: its pages are granted as they are, and
 * with persistent grants blkback refuses a grant that a request in flight holds (BLKIF_RSP_ERROR), as
 * Linux's does; within one pass of the ring that is so with `io=inline` too, since it merges the
 * pass's requests before any I/O.
 */
export interface IoBuffer {
  readonly byteLength: number;
  readonly pages: readonly Uint8Array[];
  /** Gives the pages back to the frontend's pool; the buffer is unusable afterwards. */
  free(): void;
}

/** What a frontend counts on one connection. */
export interface BlockStats {
  /** Requests put on the ring (one caller's I/O may take several). */
  readonly requests: number;
  /** Event-channel notifications sent to the backend (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY said so). */
  readonly kicks: number;
  /** Events from the backend handled (each takes every response there is). */
  readonly events: number;
}

/** A failed block request: `status` is the BLKIF_RSP_* the backend gave (or -1 when it left). */
export class BlockIOError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.name = "BlockIOError";
    this.status = status;
  }
}

const registries = new WeakMap<Kernel, Map<string, BlockDevice>>();

/** The domain's connected disks, by vdev. */
export function blockDevices(k: Kernel): Map<string, BlockDevice> {
  let m = registries.get(k);
  if (m === undefined) {
    m = new Map();
    registries.set(k, m);
  }
  return m;
}

/** The base-26 drive letters of libxl: a..z, aa..zz, ... Returns -1 past `max`. */
function driveIndex(s: string, max: number): { index: number; rest: string } | null {
  let index = -1;
  let i = 0;
  while (i < s.length && s.charCodeAt(i) >= 97 && s.charCodeAt(i) <= 122) {
    index = (index + 1) * 26 + (s.charCodeAt(i) - 97);
    if (index > max) return null;
    i++;
  }
  return index < 0 ? null : { index, rest: s.slice(i) };
}

function partition(rest: string, max: number): number | null {
  if (rest === "") return 0;
  if (!/^[1-9]\d*$/.test(rest)) return null;
  const p = Number(rest);
  return p > max ? null : p;
}

/** libxl__device_disk_dev_number: a vdev's devid, or -1 when xl would refuse the name. */
export function vdevToDevid(vdev: string): number {
  const xvd = (disk: number, part: number) =>
    disk <= 15 && part <= 15 ? (202 << 8) | (disk << 4) | part : (1 << 28) | (disk << 8) | part;
  const dp = /^d(\d+)p(\d+)$/.exec(vdev);
  if (dp !== null && Number(dp[1]) < 1 << 20 && Number(dp[2]) < 256) return xvd(Number(dp[1]), Number(dp[2]));
  const named = (prefix: string, maxDisk: number, maxPart: number) => {
    if (!vdev.startsWith(prefix)) return null;
    const d = driveIndex(vdev.slice(prefix.length), maxDisk);
    if (d === null) return null;
    const p = partition(d.rest, maxPart);
    return p === null ? null : { disk: d.index, part: p };
  };
  const x = named("xvd", (1 << 20) - 1, 255);
  if (x !== null) return xvd(x.disk, x.part);
  if (/^(0x[0-9a-f]+|0[0-7]*|[1-9]\d*)$/i.test(vdev)) {
    const n = Number(
      vdev.startsWith("0") && !/^0x/i.test(vdev) && vdev !== "0" ? `0o${vdev.slice(1)}` : vdev,
    );
    return n <= 0x7fffffff ? n : -1;
  }
  const hd = named("hd", 3, 63);
  if (hd !== null) return ((hd.disk < 2 ? 3 : 22) << 8) | ((hd.disk & 1) << 6) | hd.part;
  const sd = named("sd", 15, 15);
  if (sd !== null) return (8 << 8) | (sd.disk << 4) | sd.part;
  return -1;
}

/** libxl__devid_to_vdev: the `xvd` name of a devid. */
export function devidToVdev(devid: number): string {
  const extended = (devid & (1 << 28)) !== 0;
  const minor = extended ? devid & ~(1 << 28) : devid & 0xff;
  const nrParts = extended ? 256 : 16;
  const encode = (n: number): string =>
    (n >= 26 ? encode(Math.floor(n / 26) - 1) : "") + String.fromCharCode(97 + (n % 26));
  const part = minor % nrParts;
  return `xvd${encode(Math.floor(minor / nrParts))}${part === 0 ? "" : String(part)}`;
}
