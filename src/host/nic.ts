/**
 * The toolstack's side of a PV NIC: `xl network-attach`, `network-list` and `network-detach` as
 * libxl does them (libxl_nic.c libxl__set_xenstore_nic, libxl_device.c), and xl's vif spec
 * (`mac=…,bridge=…`, xl-network-configuration(5)).
 *
 * attachNic loads xen_netback into dom0, and xen_netfront and the IPv4 stack (`inet`) into the guest,
 * when they are not loaded,
 * then writes, in one transaction, the backend directory /local/domain/0/backend/vif/<domid>/<devid>
 * and the frontend directory /local/domain/<domid>/device/vif/<devid> with libxl's keys:
 *
 *   backend   frontend, frontend-id, online 1, state 1, script, mac, bridge, handle, type vif
 *             (and ip, vifname, rate when given)
 *   frontend  backend, backend-id 0, state 1, handle, mac, mtu, trusted 1
 *
 * and libxl's own copy under /libxl/<domid>/device/vif/<devid>. No hotplug script runs (netback
 * starts the vif's passt itself). It resolves once the guest's frontend is Connected, and fails
 * when either end reaches Closing/Closed first, with the reason that end's devFatal left (netback:
 * passt missing, a bad mac), or after 10 s; then it removes what it wrote.
 */
import { VIF_BACKEND as BE, VIF_FRONTEND as FE, formatMac, parseMac } from "../drivers/net/netif-keys.ts";
import { devicePaths } from "../xenbus/bus-type.ts";
import { writeDeviceNodes } from "../xenbus/device-nodes.ts";
import { domainPath, XenbusKey as K } from "../xenbus/keys.ts";
import { pathCleanup, waitDeviceConnected } from "./device-wait.ts";
import type { Host } from "./host.ts";
import type { NicSpec } from "./nic-spec.ts";

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
export const NETBACK_MODULE = new URL(`../drivers/net/netback${EXT}`, import.meta.url).href;
export const NETFRONT_MODULE = new URL(`../drivers/net/netfront${EXT}`, import.meta.url).href;
/** The guest's IPv4 stack, loaded with netfront (as a distro's kernel has it built in). */
export const INET_MODULE = new URL(`../drivers/net/stack/inet${EXT}`, import.meta.url).href;

/** libxl's default script, recorded in the backend directory (xenlab runs none). */
export const DEFAULT_SCRIPT = "/etc/xen/scripts/vif-bridge";

/** What an ENOMEM from the guest's netfront means, and the fix. */
const NO_MEMORY =
  " (a vif takes about 100 of the guest's pages for its rings and buffers: create the guest with more, e.g. 'xenlab create NAME --memory 1024')";

function paths(domid: number, devid: number) {
  const { frontend, backend } = devicePaths("vif", domid, devid);
  return { fe: frontend, be: backend, libxl: `/libxl/${domid}/device/vif/${devid}` };
}

/** libxl's random MAC: Xen's OUI 00:16:3e, then three random bytes (the first below 0x80). */
export function randomMac(): string {
  const b = new Uint8Array([0x00, 0x16, 0x3e, 0, 0, 0]);
  crypto.getRandomValues(b.subarray(3));
  b[3]! &= 0x7f;
  return formatMac(b);
}

export interface AttachNicOptions {
  /** How long to wait for Connected (default 10 s). */
  readonly timeoutMs?: number;
  /** Load xen_netfront into the guest when it is not loaded (default true; false for a guest with a frontend of its own). */
  readonly loadFrontend?: boolean;
}

/** `xl network-attach <domid> <spec>`: resolves with the devid once the vif is Connected. */
export async function attachNic(
  host: Host,
  domid: number,
  spec: NicSpec,
  { timeoutMs = 10_000, loadFrontend = true }: AttachNicOptions = {},
): Promise<number> {
  if (host.hv.info(domid) === undefined) throw new RangeError(`Cannot attach nic: no domain ${domid}`);
  const used = new Set((await host.xs.directory(`/libxl/${domid}/device/vif`).catch(() => [])).map(Number));
  for (const id of await host.xs.directory(`${domainPath(domid)}/device/vif`).catch(() => []))
    used.add(Number(id));
  let devid = spec.devid ?? 0;
  if (spec.devid === undefined) while (used.has(devid)) devid++;
  else if (used.has(devid)) throw new Error(`Cannot attach nic: domain ${domid} already has a vif ${devid}`);
  const mac = spec.mac ?? randomMac();
  const { fe, be, libxl } = paths(domid, devid);
  await host.ensureModule(0, "xen_netback", NETBACK_MODULE);
  if (loadFrontend) {
    await host.ensureModule(domid, "xen_netfront", NETFRONT_MODULE);
    await host.ensureModule(domid, "inet", INET_MODULE);
  }
  await host.transaction(async (t) => {
    const back: [string, string][] = [
      [K.online, "1"],
      [BE.script, spec.script ?? DEFAULT_SCRIPT],
      [BE.mac, mac],
      [BE.bridge, spec.bridge ?? "xenbr0"],
      [BE.handle, String(devid)],
      [BE.type, "vif"],
    ];
    if (spec.ip !== undefined) back.push(["ip", spec.ip]);
    if (spec.vifname !== undefined) back.push(["vifname", spec.vifname]);
    if (spec.rate !== undefined) back.push(["rate", spec.rate]);
    if (spec.mtu !== undefined) back.push([BE.mtu, String(spec.mtu)]);
    const front: [string, string][] = [
      [FE.handle, String(devid)],
      [FE.mac, mac],
      [FE.mtu, String(spec.mtu ?? 1500)],
      [FE.trusted, "1"],
    ];
    await writeDeviceNodes(t, domid, { fe, be, libxl }, back, front);
  });
  await waitDeviceConnected(host, {
    domid,
    fe,
    be,
    libxl,
    what: `nic ${devid}`,
    front: "netfront",
    back: "netback",
    bothConnected: true,
    noMemory: NO_MEMORY,
    logHint: "'xenlab dmesg -d 0' shows netback's log",
    timeoutMs,
  });
  return devid;
}

/** `xl network-detach <domid> <devid|mac>`. */
export async function detachNic(host: Host, domid: number, which: string, timeoutMs = 10_000): Promise<void> {
  if (host.hv.info(domid) === undefined) throw new RangeError(`Cannot detach nic: no domain ${domid}`);
  let devid: number | undefined;
  if (/^\d+$/.test(which)) devid = Number(which);
  else if (parseMac(which) !== undefined) {
    for (const r of await listNics(host, domid)) if (r.mac === which.toLowerCase()) devid = r.devid;
  }
  if (devid === undefined || !(await host.xs.exists(paths(domid, devid).be))) {
    throw new Error(`Device ${which} not connected.`);
  }
  const { fe, be, libxl } = paths(domid, devid);
  await host.detachDevice("vif", domid, devid, timeoutMs);
  for (const p of [fe, libxl, be]) await host.xs.transaction((t) => pathCleanup(t, p)).catch(() => {});
}

/** A row of `xl network-list`. */
export interface NicListRow {
  readonly devid: number;
  readonly backendId: number;
  readonly mac: string;
  readonly handle: number;
  readonly state: number;
  readonly evtch: number;
  readonly txRingRef: number;
  readonly rxRingRef: number;
  readonly backend: string;
}

export async function listNics(host: Host, domid: number): Promise<NicListRow[]> {
  if (host.hv.info(domid) === undefined) throw new RangeError(`Cannot list nics: no domain ${domid}`);
  const libxl = `/libxl/${domid}/device/vif`;
  const ids = await host.xs.directory(libxl).catch(() => [] as string[]);
  const rows: NicListRow[] = [];
  for (const id of ids.map(Number).sort((a, b) => a - b)) {
    const fe = `${domainPath(domid)}/device/vif/${id}`;
    const num = async (key: string): Promise<number> => {
      const v = await host.xs.tryRead(`${fe}/${key}`);
      return v === undefined ? -1 : Number.parseInt(v, 10);
    };
    const backend = await host.xs.tryRead(`${libxl}/${id}/backend`);
    if (backend === undefined) continue;
    const m = /^\/local\/domain\/(\d+)\//.exec(backend);
    rows.push({
      devid: id,
      backendId: m === null ? -1 : Number(m[1]),
      mac: (await host.xs.tryRead(`${fe}/${FE.mac}`)) ?? "",
      handle: await num(FE.handle),
      state: await num(K.state),
      evtch: await num(FE.eventChannel),
      txRingRef: await num(FE.txRingRef),
      rxRingRef: await num(FE.rxRingRef),
      backend,
    });
  }
  return rows;
}
