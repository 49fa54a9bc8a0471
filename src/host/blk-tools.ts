/**
 * The host's side of the block tools (`xenlab block-attach | block-detach | block-list | blk-cp`),
 * what the control socket's block requests do, as xl's main_blockattach / main_blockdetach /
 * main_blocklist (tools/xl/xl_block.c) do through libxl:
 *
 *   block-attach  xl's disk spec (one or more strings, as xl takes them) parsed by disk-spec.ts,
 *                 a relative target resolved against the caller's directory, then attachDisk
 *                 (src/host/disk.ts: the libxl-style XenStore directories, Connected).
 *   block-detach  "Device X not connected." when the guest has no such vbd (as xl says), else
 *                 detachDisk, then libxl's path clean-up (parents left empty go too).
 *   block-list    each vbd of the guest as libxl_device_disk_list and _getinfo read them: the
 *                 devids under /libxl/<domid>/device/vbd, the backend path recorded there and
 *                 its domid, the frontend's state, event-channel and ring-ref (-1 when absent,
 *                 as with a multi-page ring).
 *   blkfront      a request to the guest's blkfront module (info, read, write, flush, discard,
 *                 list), as a dom0 tool makes an ioctl: what `blk-cp` is built on. Sector data
 *                 crosses the JSON control socket as base64.
 */

import { VBD_BACKEND as BE, VBD_FRONTEND as FE } from "../drivers/blk/blkif-keys.ts";
import { type DiskSpec, vdevToDevid } from "../drivers/blk/blockdev.ts";
import { errorMessage } from "../lib/errors.ts";
import { pathCleanup } from "./device-wait.ts";
import { attachDisk, detachDisk } from "./disk.ts";
import { diskSpecOf, parseDiskSpecLenient } from "./disk-spec.ts";
import type { Host } from "./host.ts";

/** One row of `xl block-list`. */
export interface BlockListRow {
  readonly vdev: string;
  readonly devid: number;
  readonly backendId: number;
  /** The frontend's domid (xl's "handle" column). */
  readonly handle: number;
  readonly state: number;
  readonly evtch: number;
  readonly ringRef: number;
  readonly backend: string;
}

function requireDomain(host: Host, domid: number): void {
  if (host.hv.info(domid) === undefined) throw new Error(`No domain ${domid}`);
}

export async function blockAttach(
  host: Host,
  domid: number,
  specs: readonly string[],
  cwd: string,
): Promise<DiskSpec> {
  requireDomain(host, domid);
  const spec = diskSpecOf(parseDiskSpecLenient(specs), cwd);
  await attachDisk(host, domid, spec);
  return spec;
}

/**
 * `xl block-detach [-f]`: without `force` detachDisk asks the backend to close and waits for its
 * Closed (with a time limit); with it (libxl_device_disk_destroy) the directories go at once and
 * blkback lets go of the grants when it can.
 */
export async function blockDetach(host: Host, domid: number, vdev: string, force = false): Promise<void> {
  requireDomain(host, domid);
  const devid = vdevToDevid(vdev);
  if (devid < 0 || !(await host.xs.exists(`/local/domain/${domid}/device/vbd/${devid}`)))
    throw new Error(`Device ${vdev} not connected.`);
  await detachDisk(host, domid, vdev, undefined, force);
  // libxl__device_destroy removes each path with libxl__xs_path_cleanup, which also removes
  // every parent left empty (no value, no children): detachDisk removes only the paths.
  for (const path of [
    `/local/domain/${domid}/device/vbd/${devid}`,
    `/libxl/${domid}/device/vbd/${devid}`,
    `/local/domain/0/backend/vbd/${domid}/${devid}`,
  ]) {
    await host.xs.transaction((t) => pathCleanup(t, path));
  }
}

export async function blockList(host: Host, domid: number): Promise<BlockListRow[]> {
  requireDomain(host, domid);
  // libxl_device_disk_list: the toolstack's own record of the disks, /libxl/<domid>/device/vbd.
  const libxl = `/libxl/${domid}/device/vbd`;
  const ids = await host.xs.directory(libxl).catch(() => [] as string[]);
  const rows: BlockListRow[] = [];
  for (const id of ids.map(Number).sort((a, b) => a - b)) {
    const fe = `/local/domain/${domid}/device/vbd/${id}`;
    const num = async (key: string): Promise<number> => {
      const v = await host.xs.tryRead(`${fe}/${key}`);
      return v === undefined ? -1 : Number.parseInt(v, 10);
    };
    const backend = await host.xs.tryRead(`${libxl}/${id}/backend`);
    if (backend === undefined) continue; // libxl_device_disk_getinfo fails: xl skips it
    const be = /^\/local\/domain\/(\d+)\//.exec(backend);
    rows.push({
      vdev: (await host.xs.tryRead(`${backend}/${BE.dev}`)) ?? String(id),
      devid: id,
      backendId: be === null ? -1 : Number(be[1]),
      handle: domid,
      state: await num("state"),
      evtch: await num(FE.eventChannel),
      ringRef: await num(FE.ringRef),
      backend,
    });
  }
  return rows;
}

/** The commands of blkfront's host calls (src/drivers/blk/blkfront.ts). */
export const BLKFRONT_COMMANDS = ["info", "read", "write", "flush", "discard", "list"] as const;
export type BlkfrontCommand = (typeof BLKFRONT_COMMANDS)[number];

/**
 * A request to the guest's blkfront, JSON-safe: `write`'s `data` and `read`'s result are base64.
 */
export async function blkfrontCall(
  host: Host,
  domid: number,
  cmd: string,
  arg: Record<string, unknown>,
): Promise<unknown> {
  requireDomain(host, domid);
  if (!(BLKFRONT_COMMANDS as readonly string[]).includes(cmd))
    throw new RangeError(`Unknown blkfront command '${cmd}'`);
  const a = cmd === "write" ? { ...arg, data: Buffer.from(String(arg.data), "base64") } : arg;
  const r = await host.hv.call(domid, "xen_blkfront", cmd, a).catch((e: unknown) => {
    throw new Error(`domain ${host.hv.info(domid)?.name ?? "?"} (${domid}): ${errorMessage(e)}`);
  });
  return r instanceof Uint8Array ? Buffer.from(r.buffer, r.byteOffset, r.byteLength).toString("base64") : r;
}
