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
 * `physical-device`). It resolves once the guest's frontend is Connected, and fails (after removing
 * what it wrote) when either end reaches Closing/Closed first or 10 s pass.
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
import { parseXenbusState, XenbusState } from "../xen/xenbus-abi.ts";
import { devicePaths } from "../xenbus/bus-type.ts";
import { domainPath, errorPath, XenbusKey as K } from "../xenbus/keys.ts";
import type { Host } from "./host.ts";

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
/** The driver modules, next to this file's build (src/ when run from source, dist/ when built). */
export const BLKBACK_MODULE = new URL(`../drivers/blk/blkback${EXT}`, import.meta.url).href;
export const BLKFRONT_MODULE = new URL(`../drivers/blk/blkfront${EXT}`, import.meta.url).href;

async function ensureModule(host: Host, domid: number, name: string, url: string): Promise<void> {
  // Loaded already (by an earlier attach, or by hand): nothing to do, and nothing in the log.
  if ((await host.hv.lsmod(domid)).includes(name)) return;
  try {
    await host.hv.insmod(domid, url);
  } catch (e) {
    // Two attaches at once: the other one loaded it first.
    if (!/already loaded/.test((e as Error).message)) throw e;
  }
}

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
  const { fe, be, libxl } = paths(domid, devid);
  if ((await host.xs.exists(fe)) || (await host.xs.exists(be))) {
    throw new Error(`Cannot attach disk: domain ${domid} already has a vbd ${devid} (${spec.vdev})`);
  }
  await ensureModule(host, 0, "xen_blkback", BLKBACK_MODULE);
  await ensureModule(host, domid, "xen_blkfront", BLKFRONT_MODULE);
  const rw = spec.access === "rw" && spec.devtype !== "cdrom";
  const deviceType = spec.devtype === "cdrom" ? "cdrom" : "disk";
  await host.xs.transaction(async (t) => {
    await t.write(fe, "");
    await t.setPerms(fe, [`n${domid}`, "r0"]);
    await t.write(be, "");
    await t.setPerms(be, ["n0", `r${domid}`]);
    const back: [string, string][] = [
      [K.frontend, fe],
      [K.frontendId, String(domid)],
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
    for (const [k, v] of back) await t.write(`${be}/${k}`, v);
    const front: [string, string][] = [
      [K.backend, be],
      [K.backendId, "0"],
      [FE.virtualDevice, String(devid)],
      [FE.deviceType, deviceType],
      [FE.trusted, "1"],
    ];
    for (const [k, v] of front) await t.write(`${fe}/${k}`, v);
    await t.write(`${libxl}/frontend`, fe);
    await t.write(`${libxl}/backend`, be);
    // Both states last, so neither end is probed before its directory is complete.
    await t.write(`${fe}/${K.state}`, String(XenbusState.Initialising));
    await t.write(`${be}/${K.state}`, String(XenbusState.Initialising));
  });
  try {
    await host.xs.wait(
      [`${fe}/${K.state}`, `${be}/${K.state}`],
      async (xs) => {
        const f = await xs.tryRead(`${fe}/${K.state}`);
        const b = await xs.tryRead(`${be}/${K.state}`);
        if (parseXenbusState(f) === XenbusState.Connected) return true;
        if (
          f === undefined ||
          b === undefined ||
          parseXenbusState(f) >= XenbusState.Closing ||
          parseXenbusState(b) >= XenbusState.Closing
        ) {
          // blkback's devFatal leaves its reason in dom0's error directory, keyed by its nodename.
          const err = await xs.tryRead(`${domainPath(0)}/${errorPath(be.slice(`${domainPath(0)}/`.length))}`);
          throw new Error(
            `Cannot attach disk ${spec.vdev}: the device closed (${err ?? `frontend ${f}, backend ${b}`})`,
          );
        }
        return false;
      },
      { signal: AbortSignal.timeout(timeoutMs) },
    );
  } catch (e) {
    await host.xs.rm(fe).catch(() => {});
    await host.xs.rm(be).catch(() => {});
    await host.xs.rm(libxl).catch(() => {});
    throw e;
  }
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
