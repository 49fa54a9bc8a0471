/**
 * The primary console's XenStore keys, as libxl writes them when it creates a PV guest
 * (`libxl__device_console_add` through `libxl__device_generic_add`, console devid 0, Xen 4.17):
 *
 *   /local/domain/N/console             owner dom0, readable by N (console 0 is "read-only
 *                                       frontend": the guest must not change where it points)
 *     backend = /local/domain/0/backend/console/N/0
 *     backend-id = 0                    owner N, readable by dom0 (libxl's frontend perms)
 *     limit = 1048576                   LIBXL_XENCONSOLE_LIMIT: xenconsoled's buffer cap
 *     type = xenconsoled                which daemon serves it (else ioemu: QEMU)
 *     output = pty
 *     tty =                             the backend's to fill (xenconsoled: the pty's path)
 *     port, ring-ref                    start_info's console event channel and gfn
 *   /local/domain/0/backend/console/N/0 owner dom0, readable by N
 *     frontend, frontend-id, online = 1, state = 1, protocol = vt100
 *
 * The backend (xenconsoled, src/console/xenconsoled.ts) reads ring-ref, port, type and limit.
 * The generic keys (backend, backend-id, frontend, frontend-id, online, state) are XenBus's
 * (src/xenbus/keys.ts); the console's own are `ConsoleKey`.
 */
import { XenbusState } from "../xen/xenbus-abi.ts";
import { BACKEND_BUS } from "../xenbus/bus-type.ts";
import { domainPath, XenbusKey } from "../xenbus/keys.ts";
import type { XsOps } from "../xenstore/client.ts";

/** The console's own keys (libxl `libxl__device_console_add`, xenconsoled `domain_create_ring`). */
export const ConsoleKey = {
  /** Frontend: the console page's gfn (start_info's `console.domU.mfn`). */
  ringRef: "ring-ref",
  /** Frontend: the guest's end of the console event channel (start_info's `console.domU.evtchn`). */
  port: "port",
  /** Frontend: which daemon serves it, `xenconsoled` or `ioemu` (QEMU). */
  type: "type",
  /** Frontend: xenconsoled's buffer cap in bytes. */
  limit: "limit",
  /** Frontend: where the toolstack wants the output, `pty`. */
  output: "output",
  /** Frontend: the backend's to fill (xenconsoled: the pty's path). */
  tty: "tty",
  /** Backend: the byte stream's terminal protocol, `vt100`. */
  protocol: "protocol",
} as const;

/** LIBXL_XENCONSOLE_LIMIT (libxl_internal.h). */
export const LIBXL_XENCONSOLE_LIMIT = 1048576;
/** LIBXL_XENCONSOLE_PROTOCOL. */
export const LIBXL_XENCONSOLE_PROTOCOL = "vt100";

/** The primary console is not under `device/`: libxl puts console 0 at `console`. */
export const consoleFrontendPath = (domid: number): string => `${domainPath(domid)}/console`;
export const consoleBackendPath = (domid: number, backendDomid = 0): string =>
  `${domainPath(backendDomid)}/${BACKEND_BUS.nodename("console", domid, 0)}`;

/** The frontend keys the backend reads, parsed. */
export interface ConsoleFrontendKeys {
  /** `ring-ref`: the page's gfn (the backend maps grant ref 0 instead, as xenconsoled prefers). */
  readonly ringRef: number;
  readonly port: number;
  /** `type`: absent means xenconsoled (older toolstacks wrote none). */
  readonly type: string | undefined;
  /** `limit`, or undefined when absent or not a number. */
  readonly limit: number | undefined;
}

/** Parses the keys as xenconsoled's `xs_gather` does ("%u", "%i"); undefined if one is missing. */
export function parseConsoleKeys(v: {
  ringRef: string | undefined;
  port: string | undefined;
  type: string | undefined;
  limit: string | undefined;
}): ConsoleFrontendKeys | undefined {
  const int = (s: string | undefined): number | undefined => {
    if (s === undefined) return undefined;
    const m = /^\s*(\d+)/.exec(s);
    return m === null ? undefined : Number(m[1]);
  };
  const ringRef = int(v.ringRef);
  const port = int(v.port);
  if (ringRef === undefined || port === undefined) return undefined;
  return { ringRef, port, type: v.type, limit: int(v.limit) };
}

/** Writes the primary console of `domid`, as libxl does (see the module comment). */
export async function addPrimaryConsole(
  t: XsOps,
  domid: number,
  console: { readonly gfn: number; readonly port: number },
  backendDomid = 0,
): Promise<void> {
  const fe = consoleFrontendPath(domid);
  const be = consoleBackendPath(domid, backendDomid);
  const roFront = [`n${backendDomid}`, `r${domid}`];
  const front = [`n${domid}`, `r${backendDomid}`];
  const back = [`n${backendDomid}`, `r${domid}`];
  const put = async (path: string, value: string, perms: string[]): Promise<void> => {
    await t.write(path, value);
    await t.setPerms(path, perms);
  };
  const K = XenbusKey;
  const C = ConsoleKey;
  await t.rm(fe).catch(() => {});
  await put(fe, "", roFront);
  await t.write(`${fe}/${K.backend}`, be);
  await put(`${fe}/${K.backendId}`, String(backendDomid), front);
  await put(`${fe}/${C.limit}`, String(LIBXL_XENCONSOLE_LIMIT), roFront);
  await put(`${fe}/${C.type}`, "xenconsoled", roFront);
  await put(`${fe}/${C.output}`, "pty", roFront);
  await put(`${fe}/${C.tty}`, "", roFront);
  await put(`${fe}/${C.port}`, String(console.port), roFront);
  await put(`${fe}/${C.ringRef}`, String(console.gfn), roFront);
  await t.rm(be).catch(() => {});
  await put(be, "", back);
  await t.write(`${be}/${K.frontend}`, fe);
  await put(`${be}/${K.frontendId}`, String(domid), back);
  await put(`${be}/${K.online}`, "1", back);
  await put(`${be}/${K.state}`, String(XenbusState.Initialising), back);
  await put(`${be}/${C.protocol}`, LIBXL_XENCONSOLE_PROTOCOL, back);
}
