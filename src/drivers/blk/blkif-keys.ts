/**
 * The XenStore keys of a vbd device, named once for blkfront, blkback and the toolstack: io/blkif.h's
 * "Backend XenBus Nodes" and "Frontend XenBus Nodes", and the keys libxl adds for a disk
 * (libxl_disk.c device_disk_add). The keys every XenBus device has (`state`, `online`, `frontend`,
 * `frontend-id`, `backend`, `backend-id`) are the XenBus core's and are not repeated here.
 */
import type { XsOps } from "../../xenstore/client.ts";

/** Keys in the backend's directory, /local/domain/0/backend/vbd/<domid>/<devid>. */
export const VBD_BACKEND = {
  // Written by the toolstack (blkif.h "Backend Device Identification", then libxl's own).
  /** `w` for a writable disk, else `r`. */
  mode: "mode",
  /** The image to serve: blkback opens it itself. */
  params: "params",
  /**
   * `major:minor` of the device a hotplug script opened for `params`: Linux's blkback waits for it;
   * no script runs here, so nobody writes it and blkback does not wait (docs/blk.md).
   */
  physicalDevice: "physical-device",
  /** `phy`. */
  type: "type",
  /** The guest's name for the disk (`xvda`). */
  dev: "dev",
  /** `disk` or `cdrom` (also in the frontend's directory, where blkback reads it). */
  deviceType: "device-type",
  removable: "removable",
  bootable: "bootable",
  specification: "specification",
  /** 0 turns discard off for this disk (libxl writes 1 for a writable one). */
  discardEnable: "discard-enable",

  // Written by blkback: its features, transport limits and the disk's properties.
  featureBarrier: "feature-barrier",
  featureFlushCache: "feature-flush-cache",
  featureDiscard: "feature-discard",
  featurePersistent: "feature-persistent",
  featureMaxIndirectSegments: "feature-max-indirect-segments",
  maxRingPageOrder: "max-ring-page-order",
  multiQueueMaxQueues: "multi-queue-max-queues",
  discardAlignment: "discard-alignment",
  discardGranularity: "discard-granularity",
  discardSecure: "discard-secure",
  /** VDISK_* bits. */
  info: "info",
  sectorSize: "sector-size",
  physicalSectorSize: "physical-sector-size",
  /** Size in 512-byte sectors, whatever `sector-size` says. */
  sectors: "sectors",
} as const;

/** Keys in the frontend's directory, /local/domain/<domid>/device/vbd/<devid>. */
export const VBD_FRONTEND = {
  // Written by blkfront: the ring and its features.
  eventChannel: "event-channel",
  /** The grant of a one-page ring; a ring of 2^ring-page-order pages has ringRefN(0..) instead. */
  ringRef: "ring-ref",
  ringPageOrder: "ring-page-order",
  /** `x86_64-abi` (XEN_IO_PROTO_ABI_NATIVE); absent means the backend's native ABI. */
  protocol: "protocol",
  featurePersistent: "feature-persistent",
  multiQueueNumQueues: "multi-queue-num-queues",

  // Written by the toolstack.
  /** The devid (libxl's number for the vdev). */
  virtualDevice: "virtual-device",
  deviceType: "device-type",
  trusted: "trusted",
} as const;

/** `ring-ref<i>`: the grant of page `i` of a multi-page ring. */
export function ringRefN(i: number): string {
  return `${VBD_FRONTEND.ringRef}${i}`;
}

/**
 * Reads an unsigned decimal key (Linux's xenbus_read_unsigned): `dflt` when it is absent or not a
 * number; without a default, an error naming the path.
 */
export async function readUnsigned(xs: XsOps, path: string, dflt?: number): Promise<number> {
  const v = (await xs.tryRead(path))?.trim();
  if (v !== undefined && /^\d+$/.test(v)) return Number(v);
  if (dflt === undefined) throw new Error(`reading ${path}`);
  return dflt;
}
