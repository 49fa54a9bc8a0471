/**
 * The nodes of a new device as the toolstack writes them (libxl's `libxl__device_generic_add`):
 * `xenlab block-attach`, `network-attach` and the demo's `attachDevice` all write through here.
 */
import { XenbusState } from "../xen/xenbus-abi.ts";
import type { XsOps } from "../xenstore/client.ts";
import { XenbusKey as K } from "./keys.ts";

/**
 * A device's nodes as `libxl__device_generic_add` writes them, inside the caller's transaction:
 * the frontend directory owned by the guest and readable by the backend domain (dom0), the
 * backend directory owned by dom0 and readable by the guest, each end's pointer to the other,
 * then the type's own keys (`back`, with `online`; `front`), libxl's copy when given, and both
 * `state` keys Initialising last, so neither end is probed before its directory is complete.
 */
export async function writeDeviceNodes(
  t: XsOps,
  domid: number,
  dirs: { readonly fe: string; readonly be: string; readonly libxl?: string },
  back: readonly (readonly [string, string])[],
  front: readonly (readonly [string, string])[],
): Promise<void> {
  const { fe, be, libxl } = dirs;
  await t.write(fe, "");
  await t.setPerms(fe, [`n${domid}`, "r0"]);
  await t.write(be, "");
  await t.setPerms(be, ["n0", `r${domid}`]);
  const ends: [string, string][] = [
    [`${be}/${K.frontend}`, fe],
    [`${be}/${K.frontendId}`, String(domid)],
    ...back.map(([k, v]): [string, string] => [`${be}/${k}`, v]),
    [`${fe}/${K.backend}`, be],
    [`${fe}/${K.backendId}`, "0"],
    ...front.map(([k, v]): [string, string] => [`${fe}/${k}`, v]),
  ];
  if (libxl !== undefined) ends.push([`${libxl}/frontend`, fe], [`${libxl}/backend`, be]);
  for (const [path, value] of ends) await t.write(path, value);
  await t.write(`${fe}/${K.state}`, String(XenbusState.Initialising));
  await t.write(`${be}/${K.state}`, String(XenbusState.Initialising));
}
