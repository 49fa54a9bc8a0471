/**
 * The host's side of vchan: the `xen_vchan` module loaded into a domain on first use, and calls
 * to it (src/drivers/vchan/vchan-module.ts), as Xen's vchan tools link libxenvchan.
 *
 * The conventional XenStore directory is libxenvchan's: `/local/domain/<server>/data/vchan/<client>/<port>`
 * (Qubes' qrexec uses port 512 for its control vchan).
 */
import type { Host } from "./host.ts";

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
export const VCHAN_MODULE = new URL(`../drivers/vchan/vchan-module${EXT}`, import.meta.url).href;
export const VCHAN_MODULE_NAME = "xen_vchan";

/** `xen_vchan`'s `cmd` in `domid`, the module loaded first if it is not. */
export async function vchanCall(host: Host, domid: number, cmd: string, arg?: unknown): Promise<unknown> {
  await host.ensureModule(domid, VCHAN_MODULE_NAME, VCHAN_MODULE);
  return host.hv.call(domid, VCHAN_MODULE_NAME, cmd, arg);
}

/** libxenvchan's conventional directory for server `server`, client `client`, port `port`. */
export function vchanPath(server: number, client: number, port: number | string): string {
  return `/local/domain/${server}/data/vchan/${client}/${port}`;
}
