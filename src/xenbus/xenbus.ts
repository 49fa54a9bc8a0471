/**
 * XenBus inside a domain's kernel, as Linux's `drivers/xen/xenbus/` does it: one bus core
 * (xenbus_probe.c) driving two buses, each described by a record (src/xenbus/bus-type.ts, as
 * Linux's `struct xen_bus_type`) and each one XenStore watch on its root:
 *
 *   frontend  `device` (relative: /local/domain/<self>/device), devices `device/<type>/<id>`,
 *             the other end named by the device's `backend` and `backend-id` keys;
 *   backend   `backend` (/local/domain/<self>/backend), devices `backend/<type>/<fe-domid>/<id>`,
 *             the other end named by `frontend` and `frontend-id`.
 *
 * A watch event under a device directory of a registered type probes the device if it is new and
 * its own `state` reads Initialising (Linux `xenbus_probe_node`: anything else is a device that is
 * going away, ignored). Probing reads the other end's details (`talk_to_otherend`; a missing key
 * fails the probe with a log line), calls the driver's `probe`, then watches `<otherend>/state`
 * and calls `otherendChanged` with each value, the first at once (the watch's initial event).
 * When the device directory disappears the driver's `remove` runs and the watch goes.
 *
 * All callbacks of one bus run one after another, in event order, as on Linux's single xenwatch
 * thread: a driver may await inside a callback and no other callback of that bus interleaves.
 *
 * The helpers have Linux's meaning: `switchState` writes `state` only when it changes (and in a
 * transaction that first checks the node still exists), `devFatal` writes `error/<nodename>/error`
 * and switches to Closing, `grantRing`/`mapRing` grant and map a ring page to/from the other end,
 * `allocEvtchn`/`bindEvtchn` make the event channel.
 */
import { constants as osConstants } from "node:os";
import { HypercallError, type Kernel, type MappedPage } from "../kernel/kernel.ts";
import { errorMessage } from "../lib/errors.ts";
import type { BackRing, FrontRing } from "../ring/ring.ts";
import { XEN_ERRNO } from "../xen/evtchn-abi.ts";
import { parseXenbusState, XenbusState, type XenbusStateValue } from "../xen/xenbus-abi.ts";
import type { XsWatch } from "../xenstore/client-watch.ts";
import { XsError } from "../xenstore/errors.ts";
import { type BusKind, XENBUS_TYPES, type XenbusType } from "./bus-type.ts";
import { domainPath, errorPath, XenbusKey } from "./keys.ts";

// The states are Xen's ABI (io/xenbus.h); drivers take them from here with the bus.
export {
  parseXenbusState,
  XenbusState,
  type XenbusStateName,
  type XenbusStateValue,
  xenbusStateName,
  xenbusStateOf,
} from "../xen/xenbus-abi.ts";
export { type BusKind, devicePaths, type XenbusType } from "./bus-type.ts";
export { domainPath, errorPath, XenbusKey } from "./keys.ts";

/** A driver: the device types it serves and its callbacks (`struct xenbus_driver`). */
export interface XenbusDriver {
  readonly name: string;
  /** Device types, e.g. `["alice_dev"]` (`xenbus_device_id`s). */
  readonly ids: readonly string[];
  probe(dev: XenbusDevice): void | Promise<void>;
  otherendChanged?(dev: XenbusDevice, state: number): void | Promise<void>;
  remove?(dev: XenbusDevice): void | Promise<void>;
  suspend?(dev: XenbusDevice): void | Promise<void>;
  /**
   * At a save, after `suspend`: what the device's driver data must keep for `resume` in the
   * restored domain (ring pages and grant refs to end, requests to resubmit), as bytes.
   */
  save?(dev: XenbusDevice): Uint8Array | undefined;
  /**
   * After a restore (Linux `xenbus_dev_resume`): the device is Initialising towards a new
   * backend; `saved` is what `save` returned (the old `data` is gone with the old worker). The
   * driver then redoes the handshake from the other end's state changes.
   */
  resume?(dev: XenbusDevice, saved?: Uint8Array): void | Promise<void>;
}

/** A device as XenBus saves it: which bus, node and driver, and what its driver kept. */
interface SavedDevice {
  readonly bus: BusKind;
  readonly nodename: string;
  readonly driver: string;
  /** base64 of the driver's `save()`. */
  readonly state?: string;
}

/** One device on a bus (`struct xenbus_device`). */
export class XenbusDevice {
  readonly kernel: Kernel;
  readonly bus: BusKind;
  /** Relative to the domain's home: `device/alice_dev/0`, `backend/alice_dev/1/0`. */
  readonly nodename: string;
  readonly devicetype: string;
  readonly driver: XenbusDriver;
  /** The other end's domid and directory (absolute). */
  readonly otherendId: number;
  readonly otherend: string;
  /** Our state as last written by switchState (Linux `dev->state`). */
  state: number = XenbusState.Initialising;
  /** Driver data. */
  data: unknown;
  /** @internal watches to drop on remove */
  readonly _watches: XsWatch[] = [];
  /** The rings shown with showRing(), whose private indexes the `xenbus/rings` attribute reads. */
  readonly rings = new Set<FrontRing | BackRing>();

  constructor(
    kernel: Kernel,
    bus: BusKind,
    nodename: string,
    driver: XenbusDriver,
    otherendId: number,
    otherend: string,
  ) {
    this.kernel = kernel;
    this.bus = bus;
    this.nodename = nodename;
    this.devicetype = nodename.split("/")[1]!;
    this.driver = driver;
    this.otherendId = otherendId;
    this.otherend = otherend;
  }

  /** `xenbus_switch_state`: write `state` if it changed (see the module comment). */
  async switchState(state: XenbusStateValue): Promise<void> {
    if (state === this.state) return;
    const path = `${this.nodename}/${XenbusKey.state}`;
    await this.kernel.xs.transaction(async (t) => {
      // Linux checks the node still exists first, so a removed device is not recreated.
      await t.read(path);
      await t.write(path, String(state));
    });
    this.state = state;
  }

  /** Reads a key of our own directory. */
  read(key: string): Promise<string> {
    return this.kernel.xs.read(`${this.nodename}/${key}`);
  }

  /** Reads a key of the other end's directory. */
  readOtherend(key: string): Promise<string> {
    return this.kernel.xs.read(`${this.otherend}/${key}`);
  }

  /**
   * Shows a ring's private indexes (req_prod_pvt and rsp_cons of a front ring, req_cons and
   * rsp_prod_pvt of a back ring) to the host through the `xenbus/rings` attribute, as Linux's
   * netback shows its own in debugfs (`io_ring_qN`): the live view reads them (docs/live-view.md).
   * Reading costs the ring nothing; hideRing() (or the device's removal) stops it.
   */
  showRing(ring: FrontRing | BackRing): void {
    this.rings.add(ring);
  }

  hideRing(ring: FrontRing | BackRing): void {
    this.rings.delete(ring);
  }

  /** `xenbus_grant_ring`: grants our page `gfn` to the other end; returns the ref. */
  async grantRing(gfn: number): Promise<number> {
    try {
      return this.kernel.grantAccess(this.otherendId, gfn);
    } catch (e) {
      await this.devFatal(e, "granting access to ring page");
      throw e;
    }
  }

  /** `xenbus_map_ring_valloc`: maps the other end's ring `ref`. */
  async mapRing(ref: number): Promise<MappedPage> {
    try {
      return this.kernel.mapGrant(this.otherendId, ref);
    } catch (e) {
      await this.devFatal(e, `mapping in shared page ${ref} from domain ${this.otherendId}`);
      throw e;
    }
  }

  /** `xenbus_alloc_evtchn`: an unbound port the other end may bind. */
  async allocEvtchn(): Promise<number> {
    try {
      return this.kernel.allocUnbound(this.otherendId);
    } catch (e) {
      await this.devFatal(e, "allocating event channel");
      throw e;
    }
  }

  /** `bind_interdomain_evtchn_to_irqhandler`: binds the other end's port; returns ours. */
  async bindEvtchn(remotePort: number, handler: (port: number) => void): Promise<number> {
    try {
      const port = this.kernel.bindInterdomain(this.otherendId, remotePort);
      this.kernel.bindEvent(port, handler);
      return port;
    } catch (e) {
      await this.devFatal(e, `binding event channel ${remotePort} of domain ${this.otherendId}`);
      throw e;
    }
  }

  /**
   * `xenbus_watch_path`: calls `cb(path)` for each event on `path` (the first at once), on this
   * bus's callback queue. The watch goes when the device is removed.
   */
  watchPath(path: string, cb: (path: string) => void | Promise<void>): void {
    const w = this.kernel.xs.watch(path);
    this._watches.push(w);
    void pump(w, cb, (e) => this.kernel.printk(`xenbus: watch on ${path} failed: ${errorMessage(e)}`));
  }

  /**
   * `xenbus_dev_error(dev, err, fmt)`: logs and writes `error/<nodename>/error` =
   * "<errno> <message>", where the peer and the toolstack read it. `err` is the errno the peer
   * must see: a name (`devError("ENOSYS", …)`) or a caught error (see `errnoOf`). Linux writes
   * the errno's number ("38 unknown fe protocol 3"); xenlab writes its name ("ENOSYS unknown fe
   * protocol 3"), which reads the same on every host.
   */
  async devError(err: unknown, message: string): Promise<void> {
    const text = `${errnoOf(err)} ${message}`;
    this.kernel.printk(`xenbus: ${this.nodename}: ${text}`);
    await this.kernel.xs.write(errorPath(this.nodename), text).catch(() => {});
  }

  /** `xenbus_dev_fatal(dev, err, fmt)`: devError, then Closing. */
  async devFatal(err: unknown, message: string): Promise<void> {
    await this.devError(err, message);
    await this.switchState(XenbusState.Closing).catch(() => {});
  }
}

/**
 * The errno name a device error reports: an errno name as given (`"ENOSYS"`); from a caught
 * error, an XsError's errno, a failed hypercall's Xen errno (`HypercallError`, by its name in
 * Xen's errno table), a Node system error's `code` when it names an errno (`ENOENT` from opening
 * a missing image); anything else, a grant status among them, EIO.
 */
export function errnoOf(err: unknown): string {
  if (typeof err === "string") return isErrnoName(err) ? err : "EIO";
  if (err instanceof XsError) return err.errno;
  if (err instanceof HypercallError) return XEN_ERRNO_NAMES.get(err.errno) ?? "EIO";
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" && isErrnoName(code) ? code : "EIO";
}

/** An errno's name (`ENOSYS`), as opposed to any other error code (`ERR_INVALID_ARG_TYPE`). */
function isErrnoName(s: string): boolean {
  return Object.hasOwn(osConstants.errno, s);
}

const XEN_ERRNO_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(XEN_ERRNO).map(([name, n]) => [n, name]),
);

/** The kernel attribute listing the shown rings' private indexes (XenbusDevice.showRing). */
export const RINGS_ATTRIBUTE = "xenbus/rings";

/** One shown ring's private indexes, by the device's nodename (relative to its domain's home). */
export interface RingIndexes {
  readonly nodename: string;
  readonly end: "front" | "back";
  readonly indexes: Readonly<Record<string, number>>;
}

/** By shape, not instanceof: a reloaded module's ring class is another class object (module-loader.ts). */
function ringIndexes(nodename: string, r: FrontRing | BackRing): RingIndexes {
  return "reqProdPvt" in r
    ? { nodename, end: "front", indexes: { req_prod_pvt: r.reqProdPvt, rsp_cons: r.rspCons } }
    : { nodename, end: "back", indexes: { req_cons: r.reqCons, rsp_prod_pvt: r.rspProdPvt } };
}

/** A bus of this kernel: its record, and what the core keeps for it. */
interface BusState {
  readonly type: XenbusType;
  readonly drivers: Map<string, XenbusDriver>;
  readonly devices: Map<string, XenbusDevice>;
  watch: XsWatch | null;
  /** The bus's callback queue (the xenwatch thread). */
  queue: Promise<void>;
}

/** The XenBus of one domain's kernel. */
export class XenBus {
  readonly kernel: Kernel;
  readonly #buses: Record<BusKind, BusState>;
  /** In a restored domain: devices waiting for their driver to register again. */
  readonly #saved: SavedDevice[];

  constructor(kernel: Kernel) {
    this.kernel = kernel;
    const bus = (type: XenbusType): BusState => ({
      type,
      drivers: new Map(),
      devices: new Map(),
      watch: null,
      queue: Promise.resolve(),
    });
    this.#buses = { frontend: bus(XENBUS_TYPES.frontend), backend: bus(XENBUS_TYPES.backend) };
    // Linux's /sys/bus/xen/drivers and /sys/bus/xen-backend/drivers: the device types each bus
    // has a driver for, so the toolstack can tell a device nobody drives from one that is slow.
    for (const b of Object.values(this.#buses)) {
      kernel.expose(b.type.driversAttribute, () => [...b.drivers.keys()].sort());
    }
    const saved = kernel.restored("xenbus");
    this.#saved = saved === undefined ? [] : (JSON.parse(new TextDecoder().decode(saved)) as SavedDevice[]);
    kernel.onSuspend("xenbus", { suspend: () => this.suspend(), save: () => this.#save() });
    kernel.expose(RINGS_ATTRIBUTE, () =>
      Object.values(this.#buses).flatMap((b) =>
        [...b.devices.values()].flatMap((d) => [...d.rings].map((r) => ringIndexes(d.nodename, r))),
      ),
    );
  }

  /**
   * The devices and their drivers' `save()`, synchronously (the kernel saves everything in one
   * turn before the vCPU stops; `suspend` ran on each bus's queue before).
   */
  #save(): Uint8Array {
    const out: SavedDevice[] = [];
    for (const b of Object.values(this.#buses)) {
      for (const dev of b.devices.values()) {
        const st = dev.driver.save?.(dev);
        out.push({
          bus: b.type.kind,
          nodename: dev.nodename,
          driver: dev.driver.name,
          ...(st === undefined ? {} : { state: Buffer.from(st).toString("base64") }),
        });
      }
    }
    return new TextEncoder().encode(JSON.stringify(out));
  }

  /**
   * A restored domain's devices of a driver registering again (Linux `xenbus_dev_resume`): each
   * re-reads its other end's details (`backend`, `backend-id`: a new backend), starts from
   * Initialising, gets its driver's `resume` with what it saved, then watches the other end.
   */
  async #resumeSaved(b: BusState, driver: XenbusDriver): Promise<void> {
    for (const sd of [...this.#saved]) {
      if (sd.bus !== b.type.kind || sd.driver !== driver.name) continue;
      this.#saved.splice(this.#saved.indexOf(sd), 1);
      const other = await this.#otherend(b, sd.nodename);
      if (other === undefined) continue;
      const dev = new XenbusDevice(this.kernel, b.type.kind, sd.nodename, driver, other.id, other.path);
      b.devices.set(sd.nodename, dev);
      try {
        await driver.resume?.(dev, sd.state === undefined ? undefined : Buffer.from(sd.state, "base64"));
      } catch (e) {
        b.devices.delete(sd.nodename);
        this.kernel.printk(`xenbus: resume of ${sd.nodename} failed: ${errorMessage(e)}`);
        continue;
      }
      this.#watchOtherend(b, dev);
    }
  }

  /** `xenbus_register_frontend`. */
  registerFrontend(driver: XenbusDriver): Promise<void> {
    return this.#register(this.#buses.frontend, driver);
  }

  /** `xenbus_register_backend`. */
  registerBackend(driver: XenbusDriver): Promise<void> {
    return this.#register(this.#buses.backend, driver);
  }

  /** `xenbus_unregister_driver`: removes its devices (driver `remove`), then forgets it. */
  async unregister(driver: XenbusDriver): Promise<void> {
    for (const b of Object.values(this.#buses)) {
      await this.#enqueue(b, async () => {
        for (const [node, dev] of b.devices) if (dev.driver === driver) await this.#remove(b, node);
        for (const id of driver.ids) if (b.drivers.get(id) === driver) b.drivers.delete(id);
      });
      if (b.drivers.size === 0 && b.watch !== null) {
        const w = b.watch;
        b.watch = null;
        await w.close();
      }
    }
  }

  /**
   * Before the domain is saved or migrated (Linux `xenbus_dev_suspend`): each device's driver
   * `suspend`, in bus order.
   */
  async suspend(): Promise<void> {
    for (const b of Object.values(this.#buses)) {
      await this.#enqueue(b, async () => {
        for (const dev of b.devices.values()) await dev.driver.suspend?.(dev);
      });
    }
  }

  /**
   * After the domain is restored (Linux `xenbus_dev_resume`): each device re-reads its other
   * end's details, starts again from Initialising (the backend is a new one) and its driver's
   * `resume` runs; the driver then redoes the handshake.
   */
  async resume(): Promise<void> {
    for (const b of Object.values(this.#buses)) {
      await this.#enqueue(b, async () => {
        for (const dev of b.devices.values()) {
          dev.state = XenbusState.Initialising;
          await dev.driver.resume?.(dev);
        }
      });
    }
  }

  /** The devices of a bus now (for tests and the live view). */
  devices(kind: BusKind): XenbusDevice[] {
    return [...this.#buses[kind].devices.values()];
  }

  async #register(b: BusState, driver: XenbusDriver): Promise<void> {
    for (const id of driver.ids) {
      if (b.drivers.has(id)) throw new Error(`Cannot register ${driver.name}: ${id} already has a driver`);
    }
    for (const id of driver.ids) b.drivers.set(id, driver);
    if (this.#saved.length > 0) await this.#enqueue(b, () => this.#resumeSaved(b, driver));
    if (b.watch !== null) {
      // Devices already there for this driver: probe them now (Linux's bus_for_each_dev scan).
      await this.#enqueue(b, () => this.#scan(b));
      return;
    }
    const root = b.type.root;
    b.watch = this.kernel.xs.watch(root);
    void pump(
      b.watch,
      (path) => this.#enqueue(b, () => this.#changed(b, path)),
      (e) => this.kernel.printk(`xenbus: watch on ${root} failed: ${errorMessage(e)}`),
    );
    // Devices written before the driver came (a module loaded after attach, or reloaded after
    // rmmod): the watch's first event names only the root, so scan them as Linux's
    // xenbus_probe_devices does at boot.
    await this.#enqueue(b, () => this.#scan(b));
  }

  #enqueue(b: BusState, fn: () => Promise<void>): Promise<void> {
    const run = b.queue.then(fn).catch((e: unknown) => this.kernel.printk(`xenbus: ${errorMessage(e)}`));
    b.queue = run;
    return run;
  }

  /**
   * Probes every device of a registered type that is not probed yet (Linux's
   * `xenbus_probe_devices`): the directories under `<root>/<type>`, `levels` deep.
   */
  async #scan(b: BusState): Promise<void> {
    for (const type of b.drivers.keys()) await this.#scanDir(b, `${b.type.root}/${type}`, b.type.levels - 1);
  }

  async #scanDir(b: BusState, dir: string, levels: number): Promise<void> {
    const names = await this.kernel.xs.directory(dir).catch(() => [] as string[]);
    for (const name of names) {
      if (levels === 1) await this.#changed(b, `${dir}/${name}`);
      else await this.#scanDir(b, `${dir}/${name}`, levels - 1);
    }
  }

  /** `xenbus_dev_changed`: a watch event somewhere under the bus's root. */
  async #changed(b: BusState, path: string): Promise<void> {
    const parts = relative(path, this.kernel.domid).split("/");
    // The root, then `levels` components naming the device; what follows is inside it.
    const depth = 1 + b.type.levels;
    if (parts.length < depth) {
      // The root or a type directory changed (e.g. removed): forget devices that are gone.
      for (const node of [...b.devices.keys()]) {
        if (!(await this.kernel.xs.exists(node))) await this.#remove(b, node);
      }
      return;
    }
    const node = parts.slice(0, depth).join("/");
    const driver = b.drivers.get(parts[1]!);
    if (driver === undefined) return;
    const xs = this.kernel.xs;
    if (!(await xs.exists(node))) {
      await this.#remove(b, node);
      return;
    }
    if (b.devices.has(node)) return;
    const state = parseXenbusState(await xs.tryRead(`${node}/${XenbusKey.state}`));
    if (state !== XenbusState.Initialising) return;
    await this.#probe(b, node, driver);
  }

  /** talk_to_otherend → xenbus_read_otherend_details; undefined (logged) when they are missing. */
  async #otherend(b: BusState, node: string): Promise<{ id: number; path: string } | undefined> {
    const xs = this.kernel.xs;
    const { otherendIdKey: idKey, otherendKey: pathKey } = b.type;
    const id = await xs.tryRead(`${node}/${idKey}`);
    const other = await xs.tryRead(`${node}/${pathKey}`);
    const otherendId = Number(id);
    if (id === undefined || other === undefined || !Number.isInteger(otherendId) || other === "") {
      this.kernel.printk(`xenbus: ${node}: missing ${idKey}/${pathKey}: talk_to_otherend failed`);
      return undefined;
    }
    if (!(await xs.exists(other))) {
      this.kernel.printk(`xenbus: ${node}: other end ${other} does not exist: talk_to_otherend failed`);
      return undefined;
    }
    return { id: otherendId, path: other };
  }

  async #probe(b: BusState, node: string, driver: XenbusDriver): Promise<void> {
    const other = await this.#otherend(b, node);
    if (other === undefined) return;
    const dev = new XenbusDevice(this.kernel, b.type.kind, node, driver, other.id, other.path);
    b.devices.set(node, dev);
    try {
      await driver.probe(dev);
    } catch (e) {
      b.devices.delete(node);
      this.kernel.printk(`xenbus: probe of ${node} failed: ${errorMessage(e)}`);
      return;
    }
    this.#watchOtherend(b, dev);
  }

  /** watch_otherend: every change of the other end's state, the first at once. */
  #watchOtherend(b: BusState, dev: XenbusDevice): void {
    const xs = this.kernel.xs;
    const { nodename: node, driver } = dev;
    const otherState = `${dev.otherend}/${XenbusKey.state}`;
    const w = xs.watch(otherState);
    dev._watches.push(w);
    void pump(
      w,
      () =>
        this.#enqueue(b, async () => {
          if (b.devices.get(node) !== dev) return;
          const s = parseXenbusState(await xs.tryRead(otherState));
          await driver.otherendChanged?.(dev, s);
        }),
      (e) => this.kernel.printk(`xenbus: watch on ${otherState} failed: ${errorMessage(e)}`),
    );
  }

  async #remove(b: BusState, node: string): Promise<void> {
    const dev = b.devices.get(node);
    if (dev === undefined) return;
    b.devices.delete(node);
    for (const w of dev._watches) await w.close().catch(() => {});
    try {
      await dev.driver.remove?.(dev);
    } catch (e) {
      this.kernel.printk(`xenbus: remove of ${node} failed: ${errorMessage(e)}`);
    }
  }
}

/** The XenBus of `kernel` (one per domain, held by its kernel). */
export function xenbus(kernel: Kernel): XenBus {
  return kernel.subsystem(XenBus, () => new XenBus(kernel));
}

/** Calls `cb(path)` for each event of `w`, until it closes. */
async function pump(
  w: XsWatch,
  cb: (path: string) => void | Promise<void>,
  onError: (e: unknown) => void,
): Promise<void> {
  try {
    for await (const ev of w) await cb(ev.path);
  } catch (e) {
    onError(e);
  }
}

/** A watch path made relative to the domain's home, as Linux's relative watches report them. */
function relative(path: string, domid: number): string {
  const home = `${domainPath(domid)}/`;
  return path.startsWith(home) ? path.slice(home.length) : path;
}
