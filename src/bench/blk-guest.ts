/**
 * The guest side of `xenlab bench blk`: a kernel module insmodded into the guest that runs the
 * bench's loads (blk-load.ts) against one of the guest's PV disks, found with
 * `blockDevices(kernel)` as any block-layer user in the guest would. The host starts a load with
 * `Hypervisor.call(domid, "blk_bench", "run", { vdev, spec })` and gets its LoadResult back, with
 * what blkfront counted meanwhile (ring requests, kicks sent, events handled).
 */
import { type BlockDevice, type BlockStats, blockDevices, type IoBuffer } from "../drivers/blk/blockdev.ts";
import type { HaltStats } from "../kernel/evtchn.ts";
import type { Kernel } from "../kernel/kernel.ts";
import { alignedBuffer, type LoadResult, type LoadSpec, runLoad, type SectorIO } from "./blk-load.ts";
import { threadCpuNs } from "./procstat.ts";

export const name = "blk_bench";

export function init(k: Kernel): void {
  k.printk("blk_bench: ready");
}

export interface GuestRun {
  readonly vdev: string;
  readonly spec: LoadSpec;
  /**
   * `zero-copy`: each loop's buffer is an IoBuffer of guest pages blkfront grants as they are
   * (allocBuffer/readBuffer/writeBuffer); `copy`: a Uint8Array, which blkfront copies through
   * its pool (read/write).
   */
  readonly buffers: "zero-copy" | "copy";
}

/** The disk through its copying API: buffers are plain Uint8Arrays. */
function copying(dev: BlockDevice): SectorIO<Uint8Array> {
  return {
    alloc: alignedBuffer,
    read: (sector, count, into) => dev.read(sector, count, into),
    write: (sector, count, data) => dev.write(sector, data.subarray(0, count * 512)),
  };
}

/** The disk through its zero-copy API: buffers are IoBuffers of guest pages. */
function zeroCopy(dev: BlockDevice): SectorIO<IoBuffer> {
  const { allocBuffer, readBuffer, writeBuffer } = dev;
  if (allocBuffer === undefined || readBuffer === undefined || writeBuffer === undefined) {
    throw new Error(`blk_bench: disk ${dev.vdev} has no zero-copy I/O`);
  }
  return {
    alloc(bytes, fill) {
      const b = allocBuffer.call(dev, bytes);
      for (const p of b.pages) p.fill(fill);
      return b;
    },
    read: (sector, count, into) => readBuffer.call(dev, sector, count, into),
    write: (sector, count, data) => writeBuffer.call(dev, sector, count, data),
    free: (b) => b.free(),
  };
}

/** A load's result and what the frontend counted during it (warm-up included). */
export interface GuestResult extends LoadResult {
  readonly front: BlockStats;
}

const ZERO: BlockStats = { requests: 0, kicks: 0, events: 0 };

/**
 * `run`: a load, as above. `halts`: the kernel event loop's halts so far (HaltStats), to tell
 * how often a side slept; the bench loads this module into dom0 too, for that. `cpu`: the
 * domain's thread's own CPU time so far (ns).
 */
export async function call(k: Kernel, cmd: string, arg: unknown): Promise<GuestResult | HaltStats | number> {
  if (cmd === "halts") return k.events.halts;
  if (cmd === "cpu") return threadCpuNs();
  if (cmd !== "run") throw new RangeError(`blk_bench: unknown command '${cmd}'`);
  const { vdev, spec, buffers } = arg as GuestRun;
  const dev = blockDevices(k).get(vdev);
  if (dev === undefined) throw new Error(`blk_bench: no disk ${vdev} in domain ${k.domid}`);
  const s0 = dev.stats ?? ZERO;
  const r = buffers === "zero-copy" ? await runLoad(zeroCopy(dev), spec) : await runLoad(copying(dev), spec);
  const s1 = dev.stats ?? ZERO;
  return {
    ...r,
    front: {
      requests: s1.requests - s0.requests,
      kicks: s1.kicks - s0.kicks,
      events: s1.events - s0.events,
    },
  };
}
