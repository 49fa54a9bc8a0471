/**
 * The toolstack's side of a PV disk: `xl block-attach` and `xl block-detach` as libxl does them
 * (libxl_disk.c device_disk_add, libxl_device.c libxl__device_generic_add and the remove path).
 *
 * attachDisk loads xen_blkback into dom0 and xen_blkfront into the guest when they are not loaded,
 * then writes, in one transaction, the backend directory /local/domain/0/backend/vbd/<domid>/<devid>
 * (owned by dom0, readable by the guest) and the frontend directory
 * /local/domain/<domid>/device/vbd/<devid> (owned by the guest, readable by dom0) with libxl's
 * keys for a `phy` disk of a raw image:
 *
 *   backend   frontend, frontend-id, params (the image), online 1, removable 0, bootable 1,
 *             state 1, dev (the vdev), type phy, mode w|r, device-type disk|cdrom,
 *             discard-enable (1 for read-write disks, libxl's default), specification xen
 *   frontend  backend, backend-id 0, state 1, virtual-device (the devid), device-type, trusted 1
 *
 * and libxl's own copy under /libxl/<domid>/device/vbd/<devid> (frontend, backend). No hotplug
 * script runs: blkback opens `params` itself (Linux's blkback waits for the script's
 * `physical-device`). It resolves once the guest's frontend is Connected, and fails when either end
 * reaches Closing/Closed first, with the reason that end's devFatal left in its error node (the
 * guest's blkfront: `ENOMEM` when the guest has no page for the ring; blkback: `ENOENT` for a
 * missing image), naming the guest; or when 10 s pass, with both ends' states. Either way it then
 * removes what it wrote and the error nodes, as libxl__xs_path_cleanup (empty parents go too).
 *
 * detachDisk is Host.detachDevice's dance: backend `online` 0 and `state` Closing, wait for the
 * backend's Closed, remove both directories (and libxl's copy). Forced (`xl block-detach -f`,
 * libxl_device_disk_destroy → libxl__device_destroy) it waits for nobody: the frontend, backend
 * and libxl directories go in one transaction. blkback sees its directory vanish and disconnects
 * (I/O in flight completes, grants unmapped); blkfront sees its device vanish, fails its I/O and
 * ends its grants (those the backend still maps are ended later, as Linux's deferred
 * gnttab_end_foreign_access).
 */
import { VBD_BACKEND as BE, VBD_FRONTEND as FE } from "../drivers/blk/blkif-keys.ts";
import { type DiskSpec, vdevToDevid } from "../drivers/blk/blockdev.ts";
import { devicePaths } from "../xenbus/bus-type.ts";
import { writeDeviceNodes } from "../xenbus/device-nodes.ts";
import { XenbusKey as K } from "../xenbus/keys.ts";
import { waitDeviceConnected } from "./device-wait.ts";
import type { Host } from "./host.ts";

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
/** The driver modules, next to this file's build (src/ when run from source, dist/ when built). */
export const BLKBACK_MODULE = new URL(`../drivers/blk/blkback${EXT}`, import.meta.url).href;
export const BLKFRONT_MODULE = new URL(`../drivers/blk/blkfront${EXT}`, import.meta.url).href;

function paths(domid: number, devid: number) {
  const { frontend, backend } = devicePaths("vbd", domid, devid);
  return { fe: frontend, be: backend, libxl: `/libxl/${domid}/device/vbd/${devid}` };
}

/** `xl block-attach <domid> <spec>`: resolves when the disk is Connected in the guest. */
export async function attachDisk(
  host: Host,
  domid: number,
  spec: DiskSpec,
  timeoutMs = 10_000,
): Promise<void> {
  const devid = vdevToDevid(spec.vdev);
  if (devid < 0) throw new RangeError(`Cannot attach disk: invalid vdev '${spec.vdev}'`);
  if (spec.format !== "raw")
    throw new RangeError(`Cannot attach disk: format '${spec.format}' is not served`);
  if (host.hv.info(domid) === undefined) throw new RangeError(`Cannot attach disk: no domain ${domid}`);
  const { fe, be } = paths(domid, devid);
  if ((await host.xs.exists(fe)) || (await host.xs.exists(be))) {
    throw new Error(`Cannot attach disk: domain ${domid} already has a vbd ${devid} (${spec.vdev})`);
  }
  await host.ensureModule(0, "xen_blkback", BLKBACK_MODULE);
  await host.ensureModule(domid, "xen_blkfront", BLKFRONT_MODULE);
  await writeDiskKeys(host, domid, spec);
  await waitConnected(host, domid, spec, timeoutMs);
}

/**
 * The disk's two directories and libxl's copy, both states Initialising, in one transaction (see
 * the module comment); dom0's blkback is loaded if it is not. A restored guest's disks are written
 * so before it runs: its blkfront comes back with the guest and reconnects on its own.
 */
export async function writeDiskKeys(host: Host, domid: number, spec: DiskSpec): Promise<void> {
  const devid = vdevToDevid(spec.vdev);
  const { fe, be, libxl } = paths(domid, devid);
  await host.ensureModule(0, "xen_blkback", BLKBACK_MODULE);
  const rw = spec.access === "rw" && spec.devtype !== "cdrom";
  const deviceType = spec.devtype === "cdrom" ? "cdrom" : "disk";
  await host.transaction(async (t) => {
    const back: [string, string][] = [
      [BE.params, spec.target],
      [K.online, "1"],
      [BE.removable, "0"],
      [BE.bootable, "1"],
      [BE.dev, spec.vdev],
      [BE.type, "phy"],
      [BE.mode, rw ? "w" : "r"],
      [BE.deviceType, deviceType],
      [BE.discardEnable, rw ? "1" : "0"],
      [BE.specification, "xen"],
    ];
    const front: [string, string][] = [
      [FE.virtualDevice, String(devid)],
      [FE.deviceType, deviceType],
      [FE.trusted, "1"],
    ];
    await writeDeviceNodes(t, domid, { fe, be, libxl }, back, front);
  });
}

function waitConnected(host: Host, domid: number, spec: DiskSpec, timeoutMs: number): Promise<void> {
  const { fe, be, libxl } = paths(domid, vdevToDevid(spec.vdev));
  return waitDeviceConnected(host, {
    domid,
    fe,
    be,
    libxl,
    what: `disk ${spec.vdev}`,
    front: "blkfront",
    back: "blkback",
    bothConnected: false,
    noMemory: outOfMemory(host.hv.info(domid)?.maxPages),
    logHint: `'xenlab dmesg -d ${domid}' shows the guest's log`,
    timeoutMs,
  });
}

/** What an ENOMEM from the guest means, and the fix. */
function outOfMemory(maxPages: number | undefined): string {
  const kib = maxPages === undefined ? "" : ` of its ${maxPages * 4} KiB`;
  return ` (the guest has no page left${kib} for the disk's ring and page pool: create it with more, e.g. 'xenlab create NAME --memory 1024')`;
}

/** `xl block-detach [-f] <domid> <vdev>`. */
export async function detachDisk(
  host: Host,
  domid: number,
  vdev: string,
  timeoutMs = 10_000,
  force = false,
): Promise<void> {
  const devid = vdevToDevid(vdev);
  if (devid < 0) throw new RangeError(`Cannot detach disk: invalid vdev '${vdev}'`);
  const { fe, be, libxl } = paths(domid, devid);
  if (!(await host.xs.exists(be))) throw new Error(`Cannot detach disk: domain ${domid} has no vbd ${vdev}`);
  if (force) {
    await host.xs.transaction(async (t) => {
      for (const p of [fe, be, libxl]) await t.rm(p).catch(() => {});
    });
    return;
  }
  await host.detachDevice("vbd", domid, devid, timeoutMs);
  await host.xs.rm(libxl).catch(() => {});
}
