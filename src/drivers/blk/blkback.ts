/**
 * xen_blkback: the block backend, a kernel module for dom0 serving device type `vbd` (Linux's
 * drivers/block/xen-blkback/xenbus.c; the ring itself is src/drivers/blk/blkif-back.ts).
 *
 * The handshake, as Linux's blkback does it (docs/blk.md has the keys):
 *
 *   probe        open the raw image named by `params` (read-write when `mode` has a w), write
 *                `feature-max-indirect-segments` 256, `multi-queue-max-queues` 1,
 *                `max-ring-page-order` 4, → InitWait
 *   frontend Initialised (or Connected: states may be coalesced)
 *                read `protocol`, `feature-persistent`, `ring-page-order` (absent: one page,
 *                `ring-ref`; else `ring-ref0..N-1`), `event-channel`; map the ring, bind the port;
 *                in one transaction write `feature-flush-cache`, `discard-granularity`,
 *                `discard-alignment`, `discard-secure`, `feature-discard`, `feature-barrier`,
 *                `feature-persistent`, `sectors`, `info`, `sector-size`, `physical-sector-size`;
 *                → Connected
 *   frontend Closing → Closing; frontend Closed → disconnect (I/O in flight finishes, grants and
 *                ring unmapped, port closed) → Closed; frontend Initialising while we are Closed
 *                → InitWait again (a reconnect)
 *
 * Unloading the module (rmmod) disconnects every device and puts its backend `state` back to
 * Initialising: the device is the toolstack's again, waiting for a driver, and a reloaded
 * xen_blkback probes it anew. The frontend sees its backend leave Connected and fails its I/O
 * (xenlab's choice: Linux leaves the state as it was and the guest never learns; see docs/blk.md).
 *
 * Module arguments: `max_ring_page_order=N` (default 4), `feature_persistent=0|1` (default 1),
 * `max_persistent_grants=N` (default 1056), `max_indirect_segments=N` (default 256).
 */
import type { Kernel, MappedPage } from "../../kernel/kernel.ts";
import { BackRing } from "../../ring/ring.ts";
import { pageBytes } from "../../xen/xen.ts";
import { type XenbusDevice, type XenbusDriver, XenbusState, xenbus } from "../../xenbus/xenbus.ts";
import { BLKIF_ENTRY_SIZE, VDISK, XEN_IO_PROTO_ABI_NATIVE } from "./blkif.ts";
import {
  BlkifBack,
  type BlkifBackStats,
  MAX_INDIRECT_SEGMENTS,
  MAX_PERSISTENT_GRANTS,
} from "./blkif-back.ts";
import { VBD_BACKEND as BE, VBD_FRONTEND as FE, readUnsigned, ringRefN } from "./blkif-keys.ts";
import { RawImage } from "./image.ts";
import { uintParam } from "./module-params.ts";

export const name = "xen_blkback";

/** Linux's XENBUS_MAX_RING_GRANT_ORDER, blkback's default max_ring_page_order. */
export const MAX_RING_PAGE_ORDER = 4;

/** How blkback does its reads and writes when `io=` is not given (docs/blk.md). */
export const IO_DEFAULT: "inline" | "threads" = "inline";

interface Params {
  maxRingPageOrder: number;
  persistent: boolean;
  maxPersistentGrants: number;
  maxIndirectSegments: number;
  /** `io=inline`: reads and writes in dom0's vCPU thread; `io=threads`: libuv's pool. */
  inline: boolean;
}

interface Connection {
  readonly ringMaps: MappedPage[];
  readonly port: number;
  readonly back: BlkifBack;
}

interface Backend {
  readonly image: RawImage;
  readonly readonly: boolean;
  readonly cdrom: boolean;
  readonly removable: boolean;
  readonly discard: boolean;
  conn: Connection | null;
  /** Serialises connect/disconnect of this device. */
  busy: Promise<void>;
}

function fail(dev: XenbusDevice, e: unknown, what: string): Promise<void> {
  return dev.devFatal(e, what);
}

class BlkbackDriver implements XenbusDriver {
  readonly name = "xen_blkback";
  readonly ids = ["vbd"];
  readonly params: Params;
  unloading = false;

  constructor(params: Params) {
    this.params = params;
  }

  async probe(dev: XenbusDevice): Promise<void> {
    const k = dev.kernel;
    const path = await dev.read(BE.params).catch(() => undefined);
    const mode = await dev.read(BE.mode).catch(() => undefined);
    if (path === undefined || path === "" || mode === undefined) {
      await fail(dev, "ENOENT", "reading params and mode");
      throw new Error(`${dev.nodename}: no params or mode`);
    }
    const deviceType = await k.xs.tryRead(`${dev.otherend}/${FE.deviceType}`);
    const cdrom = deviceType === "cdrom";
    const readonly = !mode.includes("w") || cdrom;
    let image: RawImage;
    try {
      image = await RawImage.open(path, !readonly);
    } catch (e) {
      await fail(dev, e, `opening ${path}`);
      throw e;
    }
    const removable = (await dev.read(BE.removable).catch(() => "0")) === "1";
    const discard = !readonly && (await readUnsigned(k.xs, `${dev.nodename}/${BE.discardEnable}`, 1)) !== 0;
    const be: Backend = { image, readonly, cdrom, removable, discard, conn: null, busy: Promise.resolve() };
    dev.data = be;
    // Linux writes these in probe, outside a transaction; a failure is only a warning.
    const w = (key: string, v: number) =>
      k.xs.write(`${dev.nodename}/${key}`, String(v)).catch((e: unknown) => {
        k.printk(`xen-blkback: writing ${dev.nodename}/${key} failed: ${(e as Error).message}`);
      });
    await w(BE.featureMaxIndirectSegments, this.params.maxIndirectSegments);
    await w(BE.multiQueueMaxQueues, 1);
    await w(BE.maxRingPageOrder, this.params.maxRingPageOrder);
    k.printk(`xen-blkback: ${dev.nodename}: ${path} (${image.size / 512} sectors, ${readonly ? "r" : "w"})`);
    await dev.switchState(XenbusState.InitWait);
  }

  async otherendChanged(dev: XenbusDevice, state: number): Promise<void> {
    const be = dev.data as Backend | undefined;
    if (be === undefined) return;
    switch (state) {
      case XenbusState.Initialising:
        if (dev.state === XenbusState.Closed) {
          dev.kernel.printk(`xen-blkback: ${dev.nodename}: prepare for reconnect`);
          await dev.switchState(XenbusState.InitWait);
        }
        return;
      case XenbusState.Initialised:
      case XenbusState.Connected:
        // Two quick writes may arrive as one event: connect on either.
        if (dev.state === XenbusState.Connected) return;
        await this.#disconnect(dev, be);
        if (await this.#connectRing(dev, be)) await this.#connect(dev, be);
        return;
      case XenbusState.Closing:
        await dev.switchState(XenbusState.Closing);
        return;
      case XenbusState.Closed:
        await this.#disconnect(dev, be);
        await dev.switchState(XenbusState.Closed);
        return;
      case XenbusState.Unknown:
        return; // the directory went: remove() follows
      default:
        await dev.devFatal("EINVAL", `saw state ${state} at frontend`);
    }
  }

  async remove(dev: XenbusDevice): Promise<void> {
    const be = dev.data as Backend | undefined;
    if (be === undefined) return;
    await this.#disconnect(dev, be);
    dev.data = undefined;
    await be.image.close();
    if (this.unloading) {
      // The device stays, driverless, as the toolstack made it: a new driver probes it.
      await dev.kernel.xs
        .transaction(async (t) => {
          if ((await t.tryRead(`${dev.nodename}/state`)) !== undefined) {
            await t.write(`${dev.nodename}/state`, String(XenbusState.Initialising));
          }
        })
        .catch(() => {});
      dev.kernel.printk(`xen-blkback: ${dev.nodename}: driver unloaded, device left Initialising`);
    }
  }

  /** connect_ring + read_per_ring_refs + xen_blkif_map. False after a devFatal. */
  async #connectRing(dev: XenbusDevice, be: Backend): Promise<boolean> {
    const k = dev.kernel;
    const fe = dev.otherend;
    const protocol = await k.xs.tryRead(`${fe}/${FE.protocol}`);
    if (protocol !== undefined && protocol !== XEN_IO_PROTO_ABI_NATIVE) {
      await dev.devFatal("ENOSYS", `unknown fe protocol ${protocol}`);
      return false;
    }
    const persistent =
      this.params.persistent && (await readUnsigned(k.xs, `${fe}/${FE.featurePersistent}`, 0)) === 1;
    const queues = await readUnsigned(k.xs, `${fe}/${FE.multiQueueNumQueues}`, 1);
    if (queues !== 1) {
      await dev.devFatal("ENOSYS", `guest requested ${queues} queues, exceeding the maximum of 1.`);
      return false;
    }
    const orderText = await k.xs.tryRead(`${fe}/${FE.ringPageOrder}`);
    let refKeys: string[];
    if (orderText === undefined) {
      refKeys = [FE.ringRef];
    } else {
      const order = /^\d+$/.test(orderText) ? Number(orderText) : Number.NaN;
      if (!(order <= this.params.maxRingPageOrder)) {
        await dev.devFatal(
          "EINVAL",
          `requested ring page order ${orderText} exceed max:${this.params.maxRingPageOrder}`,
        );
        return false;
      }
      refKeys = Array.from({ length: 1 << order }, (_, i) => ringRefN(i));
    }
    const evtchnText = await k.xs.tryRead(`${fe}/${FE.eventChannel}`);
    if (evtchnText === undefined || !/^\d+$/.test(evtchnText)) {
      await dev.devFatal("EINVAL", `reading ${fe}/${FE.eventChannel}`);
      return false;
    }
    const refs: number[] = [];
    for (const key of refKeys) {
      const v = await k.xs.tryRead(`${fe}/${key}`);
      if (v === undefined || !/^\d+$/.test(v)) {
        await dev.devFatal("EINVAL", `reading ${fe}/${key}`);
        return false;
      }
      refs.push(Number(v));
    }
    const ringMaps: MappedPage[] = [];
    let port = -1;
    try {
      for (const ref of refs) ringMaps.push(k.mapGrant(dev.otherendId, ref));
      const ring = BackRing.attach(
        ringMaps.map((m) => pageBytes(m.page)),
        BLKIF_ENTRY_SIZE,
      );
      const back = new BlkifBack({
        ring,
        store: be.image,
        readonly: be.readonly,
        discard: be.discard,
        persistent,
        maxIndirectSegments: this.params.maxIndirectSegments,
        maxPersistentGrants: this.params.maxPersistentGrants,
        inline: this.params.inline,
        peerPolls: () => k.events.pollingAllowed,
        map: (ref, ro) => {
          const m = k.mapGrant(dev.otherendId, ref, ro);
          return { handle: m.handle, page: pageBytes(m.page) };
        },
        unmap: (h) => k.unmapGrant(h),
        notify: () => k.notify(port),
        log: (line) => k.printk(`xen-blkback: ${dev.nodename}: ${line}`),
      });
      port = k.bindInterdomain(dev.otherendId, Number(evtchnText));
      k.bindEvent(port, () => back.onEvent());
      be.conn = { ringMaps, port, back };
      dev.showRing(ring); // its private indexes, for the live view
      k.printk(
        `xen-blkback: ${dev.nodename}: ring of ${refs.length} page(s), event channel ${evtchnText}, protocol ${protocol ?? "unspecified, assuming default"}${persistent ? ", persistent grants" : ""}`,
      );
      // Requests the frontend pushed before we bound the port.
      back.onEvent();
      return true;
    } catch (e) {
      if (port >= 0) k.closePort(port);
      for (const m of ringMaps) k.unmapGrant(m.handle);
      await dev.devFatal(e, `mapping ring-ref port ${evtchnText}`);
      return false;
    }
  }

  /** connect(): the disk's details in one transaction, then Connected. */
  async #connect(dev: XenbusDevice, be: Backend): Promise<void> {
    const n = dev.nodename;
    const flush = !be.readonly;
    const info =
      (be.cdrom ? VDISK.cdrom : 0) |
      (be.removable ? VDISK.removable : 0) |
      (be.readonly ? VDISK.readonly : 0);
    await dev.kernel.xs.transaction(async (t) => {
      await t.write(`${n}/${BE.featureFlushCache}`, flush ? "1" : "0");
      if (be.discard) {
        await t.write(`${n}/${BE.discardGranularity}`, "4096");
        await t.write(`${n}/${BE.discardAlignment}`, "0");
        await t.write(`${n}/${BE.discardSecure}`, "0");
      }
      await t.write(`${n}/${BE.featureDiscard}`, be.discard ? "1" : "0");
      await t.write(`${n}/${BE.featureBarrier}`, flush ? "1" : "0");
      await t.write(`${n}/${BE.featurePersistent}`, this.params.persistent ? "1" : "0");
      await t.write(`${n}/${BE.sectors}`, String(Math.floor(be.image.size / 512)));
      await t.write(`${n}/${BE.info}`, String(info));
      await t.write(`${n}/${BE.sectorSize}`, "512");
      await t.write(`${n}/${BE.physicalSectorSize}`, "512");
    });
    await dev.switchState(XenbusState.Connected);
  }

  /** xen_blkif_disconnect: idempotent. */
  async #disconnect(dev: XenbusDevice, be: Backend): Promise<void> {
    const c = be.conn;
    if (c === null) return;
    be.conn = null;
    dev.rings.clear(); // its one ring (showRing in #connect)
    const k = dev.kernel;
    k.events.unbind(c.port);
    await c.back.stop();
    try {
      k.closePort(c.port);
    } catch {
      // the frontend may have closed its end already
    }
    for (const m of c.ringMaps) {
      try {
        k.unmapGrant(m.handle);
      } catch (e) {
        k.printk(`xen-blkback: ${dev.nodename}: unmapping ring: ${(e as Error).message}`);
      }
    }
    const s = c.back.stats;
    k.printk(
      `xen-blkback: ${dev.nodename}: disconnected (rd ${s.rdReq}, wr ${s.wrReq}, flush ${s.fReq}, discard ${s.dsReq}, errors ${s.errors})`,
    );
  }
}

const drivers = new WeakMap<Kernel, BlkbackDriver>();

function arg(args: readonly string[], key: string, dflt: number): number {
  return uintParam(name, args, key, dflt);
}

/** The `io=` argument: `inline` or `threads` (IO_DEFAULT when absent). */
function ioArg(args: readonly string[]): boolean {
  const a = args.findLast((x) => x.startsWith("io="));
  const v = a === undefined ? IO_DEFAULT : a.slice(3);
  if (v !== "inline" && v !== "threads") {
    throw new RangeError(`Cannot load xen_blkback: bad ${a}: io=inline or io=threads`);
  }
  return v === "inline";
}

export async function init(k: Kernel, args: readonly string[]): Promise<void> {
  const d = new BlkbackDriver({
    inline: ioArg(args),
    maxRingPageOrder: Math.min(arg(args, "max_ring_page_order", MAX_RING_PAGE_ORDER), MAX_RING_PAGE_ORDER),
    persistent: arg(args, "feature_persistent", 1) !== 0,
    maxPersistentGrants: arg(args, "max_persistent_grants", MAX_PERSISTENT_GRANTS),
    maxIndirectSegments: Math.min(arg(args, "max_indirect_segments", MAX_INDIRECT_SEGMENTS), 512),
  });
  drivers.set(k, d);
  k.printk("xen-blkback: initialised");
  await xenbus(k).registerBackend(d);
}

/**
 * Host calls: `stats` gives each connected device's counters (Linux's
 * /sys/bus/xen-backend/devices/vbd-D-N/statistics), keyed by the backend's node name.
 */
export function call(k: Kernel, cmd: string): Record<string, BlkifBackStats> {
  if (cmd !== "stats") throw new Error(`xen_blkback: unknown call ${cmd}`);
  const out: Record<string, BlkifBackStats> = {};
  for (const dev of xenbus(k).devices("backend")) {
    if (dev.driver.name !== "xen_blkback") continue;
    const be = dev.data as Backend | undefined;
    if (be?.conn != null) out[dev.nodename] = { ...be.conn.back.stats };
  }
  return out;
}

export async function exit(k: Kernel): Promise<void> {
  const d = drivers.get(k);
  if (d === undefined) return;
  d.unloading = true;
  await xenbus(k).unregister(d);
  drivers.delete(k);
}
