/**
 * The two XenBus buses as data, as Linux's `struct xen_bus_type` (xenbus_probe.h) describes them
 * to its one bus core (xenbus_probe.c): which directory of the domain's home the bus watches and
 * probes (`root`), how many path components under it name one device (`levels`), how a device's
 * nodename is built, and which keys of the device name its other end (`read_otherend_details`).
 *
 *   frontend  root `device`,  levels 2: device/<type>/<devid>               (xenbus_probe_frontend.c)
 *             the other end in `backend-id` and `backend`
 *   backend   root `backend`, levels 3: backend/<type>/<frontend-domid>/<devid>
 *             the other end in `frontend-id` and `frontend`              (xenbus_probe_backend.c)
 *
 * The toolstack builds the same paths when it attaches a device (`devicePaths`), so where a
 * device lives is written once.
 */
import { domainPath, XenbusKey } from "./keys.ts";

export type BusKind = "frontend" | "backend";

/** One bus: where its devices live and how the bus finds their other ends. */
export interface XenbusType {
  readonly kind: BusKind;
  /** The directory under the domain's home that holds the devices; the bus watches it. */
  readonly root: string;
  /** Path components under `root` that name one device (Linux's `levels`). */
  readonly levels: number;
  /** The device's key holding the other end's domid. */
  readonly otherendIdKey: string;
  /** The device's key holding the other end's directory (absolute). */
  readonly otherendKey: string;
  /**
   * The kernel attribute listing the device types the bus has drivers for (Linux's sysfs
   * `/sys/bus/xen/drivers`, `/sys/bus/xen-backend/drivers`), read by the toolstack.
   */
  readonly driversAttribute: string;
  /** A device's nodename (relative to its domain's home) on this bus. */
  nodename(type: string, frontendDomid: number, devid: number | string): string;
}

export const FRONTEND_BUS: XenbusType = {
  kind: "frontend",
  root: "device",
  levels: 2,
  otherendIdKey: XenbusKey.backendId,
  otherendKey: XenbusKey.backend,
  driversAttribute: "bus/xen/drivers",
  nodename: (type, _frontendDomid, devid) => `device/${type}/${devid}`,
};

export const BACKEND_BUS: XenbusType = {
  kind: "backend",
  root: "backend",
  levels: 3,
  otherendIdKey: XenbusKey.frontendId,
  otherendKey: XenbusKey.frontend,
  driversAttribute: "bus/xen-backend/drivers",
  nodename: (type, frontendDomid, devid) => `backend/${type}/${frontendDomid}/${devid}`,
};

export const XENBUS_TYPES: Readonly<Record<BusKind, XenbusType>> = {
  frontend: FRONTEND_BUS,
  backend: BACKEND_BUS,
};

/**
 * The two directories of device `type`/`devid` between guest `frontendDomid` and the backend
 * domain, absolute, as the toolstack writes them (libxl `libxl__device_frontend_path`,
 * `libxl__device_backend_path`).
 */
export function devicePaths(
  type: string,
  frontendDomid: number,
  devid: number | string,
  backendDomid = 0,
): { readonly frontend: string; readonly backend: string } {
  return {
    frontend: `${domainPath(frontendDomid)}/${FRONTEND_BUS.nodename(type, frontendDomid, devid)}`,
    backend: `${domainPath(backendDomid)}/${BACKEND_BUS.nodename(type, frontendDomid, devid)}`,
  };
}
