/**
 * `xenlab/driver`: the public API of xenlab for a driver module kept outside the repository
 * (docs/writing-a-driver.md). It is small on purpose, and what it names stays:
 *
 *   the module's shape   `KernelModule` (`name`, `init`, `exit`), the `Kernel` it is given
 *   XenBus               `xenbus(kernel)` (register a frontend or backend driver), the device
 *                        a driver is probed with, `XenbusState` (io/xenbus.h) and its names
 *   rings                `FrontRing`, `BackRing` (io/ring.h over one granted page)
 *   grants, evtchns      the `Kernel` and `XenbusDevice` methods, and their errors
 *
 * Inside a domain, `insmod` resolves `xenlab/driver` to the running kernel's own modules
 * (lib/module-hooks.ts), so a driver shares XenBus with every other module of its domain; the
 * copy installed beside a driver gives it the types.
 */
export {
  GrantOpError,
  HypercallError,
  type Kernel,
  type KernelModule,
  type MappedPage,
} from "../kernel/kernel.ts";
export { BackRing, FrontRing } from "../ring/ring.ts";
export { pageBytes, XEN_PAGE_SIZE } from "../xen/xen.ts";
export {
  type BusKind,
  type XenBus,
  type XenbusDevice,
  type XenbusDriver,
  XenbusState,
  type XenbusStateName,
  type XenbusStateValue,
  xenbus,
  xenbusStateName,
} from "../xenbus/xenbus.ts";
export type { XsClient } from "../xenstore/client.ts";
