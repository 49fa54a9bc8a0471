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
 */
import { XenbusState } from "../xen/xenbus-abi.ts";
import type { XsOps } from "../xenstore/client.ts";

/** LIBXL_XENCONSOLE_LIMIT (libxl_internal.h). */
export const LIBXL_XENCONSOLE_LIMIT = 1048576;
/** LIBXL_XENCONSOLE_PROTOCOL. */
export const LIBXL_XENCONSOLE_PROTOCOL = "vt100";

export const consoleFrontendPath = (domid: number): string => `/local/domain/${domid}/console`;
export const consoleBackendPath = (domid: number, backendDomid = 0): string =>
  `/local/domain/${backendDomid}/backend/console/${domid}/0`;

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
  await t.rm(fe).catch(() => {});
  await put(fe, "", roFront);
  await t.write(`${fe}/backend`, be);
  await put(`${fe}/backend-id`, String(backendDomid), front);
  await put(`${fe}/limit`, String(LIBXL_XENCONSOLE_LIMIT), roFront);
  await put(`${fe}/type`, "xenconsoled", roFront);
  await put(`${fe}/output`, "pty", roFront);
  await put(`${fe}/tty`, "", roFront);
  await put(`${fe}/port`, String(console.port), roFront);
  await put(`${fe}/ring-ref`, String(console.gfn), roFront);
  await t.rm(be).catch(() => {});
  await put(be, "", back);
  await t.write(`${be}/frontend`, fe);
  await put(`${be}/frontend-id`, String(domid), back);
  await put(`${be}/online`, "1", back);
  await put(`${be}/state`, String(XenbusState.Initialising), back);
  await put(`${be}/protocol`, LIBXL_XENCONSOLE_PROTOCOL, back);
}
