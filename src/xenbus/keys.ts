/**
 * The XenStore keys XenBus itself reads and writes in a device's two directories, whatever the
 * device (Linux `xenbus_probe.c`, `xenbus_client.c`; libxl `libxl__device_generic_add`). A
 * device's own keys (`ring-ref`, `event-channel`, `params`, …) belong to its driver.
 *
 *   frontend dir   state, backend, backend-id
 *   backend dir    state, frontend, frontend-id, online
 *   error/<nodename>/error   in the writer's own home: "<errno> <message>" (xenbus_dev_error)
 */

/** Key names in a device directory. */
export const XenbusKey = {
  /** This end's `enum xenbus_state`, in decimal (src/xen/xenbus-abi.ts). */
  state: "state",
  /** In the frontend: the backend's directory (absolute) and domid. */
  backend: "backend",
  backendId: "backend-id",
  /** In the backend: the frontend's directory (absolute) and domid. */
  frontend: "frontend",
  frontendId: "frontend-id",
  /** In the backend: "1" while the toolstack wants the device, "0" to detach it. */
  online: "online",
} as const;

/** A domain's home in XenStore, where its relative paths start. */
export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

/**
 * Where `xenbus_dev_error` reports a device's error: `error/<nodename>/error`, relative, so in
 * the reporting domain's own `error` directory (which libxl makes writable by the domain).
 */
export function errorPath(nodename: string): string {
  return `error/${nodename}/error`;
}
