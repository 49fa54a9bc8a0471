/**
 * The guest side of `xenlab bench blk`: a kernel module insmodded into the guest that runs the
 * bench's loads (blk-load.ts) against one of the guest's PV disks, found with
 * `blockDevices(kernel)` as any block-layer user in the guest would. The host starts a load with
 * `Hypervisor.call(domid, "blk_bench", "run", { vdev, spec })` and gets its LoadResult back, with
 * what blkfront counted meanwhile (ring requests, kicks sent, events handled).
 */
import { type BlockStats, blockDevices } from "../blk/blockdev.ts";
import type { HaltStats } from "../hv/evtchn-guest.ts";
import type { Kernel } from "../hv/kernel.ts";
import { type LoadResult, type LoadSpec, runLoad } from "./blk-load.ts";

export const name = "blk_bench";

export function init(k: Kernel): void {
  k.printk("blk_bench: ready");
}

export interface GuestRun {
  readonly vdev: string;
  readonly spec: LoadSpec;
}

/** A load's result and what the frontend counted during it (warm-up included). */
export interface GuestResult extends LoadResult {
  readonly front: BlockStats;
}

const ZERO: BlockStats = { requests: 0, kicks: 0, events: 0 };

/**
 * `run`: a load, as above. `halts`: the kernel event loop's halts so far (HaltStats), to tell
 * how often a side slept; the bench loads this module into dom0 too, for that.
 */
export async function call(k: Kernel, cmd: string, arg: unknown): Promise<GuestResult | HaltStats> {
  if (cmd === "halts") return k.events.halts;
  if (cmd !== "run") throw new RangeError(`blk_bench: unknown command '${cmd}'`);
  const { vdev, spec } = arg as GuestRun;
  const dev = blockDevices(k).get(vdev);
  if (dev === undefined) throw new Error(`blk_bench: no disk ${vdev} in domain ${k.domid}`);
  const s0 = dev.stats ?? ZERO;
  const r = await runLoad(dev, spec);
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
