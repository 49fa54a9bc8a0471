/**
 * xen_blkfront: the block frontend, a kernel module for a guest serving device type `vbd`
 * (Linux's drivers/block/xen-blkfront.c). Each Connected disk is a BlockDevice registered in
 * `blockDevices(kernel)` under its vdev (`xvda`...), and removed when it disconnects.
 *
 * The handshake, as Linux's blkfront does it (docs/blk.md has the keys):
 *
 *   backend InitWait   read `max-ring-page-order` (absent: 0); ring of 1 << min(ours, theirs)
 *                      pages, each granted to the backend; an unbound event channel; in one
 *                      transaction `ring-ref` (one page) or `ring-page-order` + `ring-ref0..N-1`,
 *                      `event-channel`, `protocol` x86_64-abi, `feature-persistent`;
 *                      → Initialised
 *   backend Connected  read `sectors`, `info`, `sector-size`, `physical-sector-size`,
 *                      `feature-flush-cache` (or `feature-barrier`), `feature-discard` and the
 *                      `discard-*` keys, `feature-persistent`, `feature-max-indirect-segments`;
 *                      register the disk; → Connected
 *   backend Closing    fail all I/O, unregister the disk, → Closed (xenbus_frontend_closed)
 *   backend Closed     as Closing, then end the ring's grants and free its pages
 *   backend back to Initialising or InitWait while we are Initialised/Connected
 *                      the backend went away (module unloaded) or is a new one: fail all I/O,
 *                      release the ring, → Initialising, and connect again at its InitWait
 *
 * Each connection is a ring engine (blkif-front.ts: requests, responses, the checks of a
 * backend's answers), a page pool for the data (page-pool.ts: grants, persistent or per request,
 * and IoBuffers) and the disk registered for it (blkfront-disk.ts); this file is the XenBus driver
 * that makes and unmakes them, the module's entry points and its host calls.
 *
 * Save and restore (docs/save-restore.md), as Linux's blkfront_resume and blkif_recover: `save`
 * keeps each device's ring and pool pages with their grant refs, and the writes, flushes and
 * discards in flight or queued (each write with its data); in the restored domain `resume` ends
 * those grants and frees those pages (no backend maps them there), the handshake runs again with
 * the new backend, and once Connected the kept requests are resubmitted, so no write is lost. A
 * checkpoint (`save -c`) leaves the connection as it was.
 *
 * Module arguments: `max_ring_page_order=N` (default 0, as Linux's blkfront), `feature_persistent`
 * (default 1), `max_indirect_segments=N` (default 32), `max_pages=N` (pool pages per disk,
 * default 1024; the domain's memory may end the pool earlier).
 */
import type { Kernel } from "../../kernel/kernel.ts";
import { FrontRing } from "../../ring/ring.ts";
import { pageBytes } from "../../xen/xen.ts";
import { type XenbusDevice, type XenbusDriver, XenbusState, xenbus } from "../../xenbus/xenbus.ts";
import { BlkfrontDisk } from "./blkfront-disk.ts";
import {
  BLKIF_ENTRY_SIZE,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP,
  SEGS_PER_INDIRECT_FRAME,
  VDISK,
  XEN_IO_PROTO_ABI_NATIVE,
} from "./blkif.ts";
import { BlkifFront, type DiskInfo, type UnfinishedRequest } from "./blkif-front.ts";
import { VBD_BACKEND as BE, VBD_FRONTEND as FE, readUnsigned, ringRefN } from "./blkif-keys.ts";
import { type BlockDevice, blockDevices, devidToVdev } from "./blockdev.ts";
import { uintParam } from "./module-params.ts";
import { PagePool } from "./page-pool.ts";

export const name = "xen_blkfront";

/** Linux blkfront's default max_indirect_segments. */
export const DEFAULT_MAX_INDIRECT_SEGMENTS = 32;

interface Params {
  maxRingPageOrder: number;
  persistent: boolean;
  maxIndirectSegments: number;
  maxPages: number;
}

/** One connection of a frontend device: its ring pages and event channel, the ring and its pool. */
interface Connection {
  readonly ringPages: { gfn: number; ref: number }[];
  port: number;
  readonly front: BlkifFront;
}

/** Ends the ring pages' grants and frees them; false while the backend still maps one. */
function releaseRingPages(k: Kernel, ringPages: { gfn: number; ref: number }[]): boolean {
  let all = true;
  for (const r of ringPages) {
    if (r.ref >= 0) {
      if (!k.endAccess(r.ref)) {
        all = false;
        continue;
      }
      r.ref = -1;
    }
    if (r.gfn >= 0) {
      k.freePage(r.gfn);
      r.gfn = -1;
    }
  }
  return all;
}

/** Every grant of the connection ended and its pages freed: the pool first, then the ring. */
function releaseConnection(k: Kernel, c: Connection): boolean {
  const pool = c.front.pool.release();
  return releaseRingPages(k, c.ringPages) && pool;
}

/** What `save` keeps of a device, as JSON (a write's data in base64). */
interface SavedVbd {
  pages: { gfn: number; ref: number }[];
  requests: { op: number; sector: number; nsec: number; data: string | null }[];
}

class BlkfrontDriver implements XenbusDriver {
  readonly name = "xen_blkfront";
  readonly ids = ["vbd"];
  readonly params: Params;
  /** After a restore: requests to resubmit once the device is Connected again, by nodename. */
  readonly #recover = new Map<string, UnfinishedRequest[]>();

  constructor(params: Params) {
    this.params = params;
  }

  probe(dev: XenbusDevice): void {
    dev.kernel.printk(`xen-blkfront: ${dev.nodename}: probed`);
  }

  async otherendChanged(dev: XenbusDevice, state: number): Promise<void> {
    const c = dev.data as Connection | undefined;
    switch (state) {
      case XenbusState.Initialising:
      case XenbusState.InitWait:
        // The backend left (unloaded: Initialising) or is a new one (InitWait after it was
        // Connected, the Initialising between missed): start over. InitWait while we are only
        // Initialised is no news: the watch's initial event and the event of the backend's own
        // InitWait write both read InitWait when the backend wrote it before our first read.
        // Linux ignores InitWait unless it is Initialising; resetting here ended the grant of the
        // ring-ref the backend was about to map (the attach race: "-1 mapping ring-ref").
        if (
          (state === XenbusState.Initialising &&
            (dev.state === XenbusState.Initialised || dev.state === XenbusState.Connected)) ||
          (state === XenbusState.InitWait && dev.state === XenbusState.Connected)
        ) {
          dev.kernel.printk(`xen-blkfront: ${dev.nodename}: backend went away, starting over`);
          this.#teardown(dev, "backend went away");
          this.#release(dev);
          await dev.switchState(XenbusState.Initialising);
        }
        if (state === XenbusState.InitWait && dev.state === XenbusState.Initialising) {
          await this.#talkToBackend(dev);
        }
        return;
      case XenbusState.Connected:
        if (dev.state === XenbusState.Initialised && c !== undefined) await this.#connect(dev, c);
        return;
      case XenbusState.Closing:
        this.#teardown(dev, "backend is closing");
        if (dev.state !== XenbusState.Closed) await dev.switchState(XenbusState.Closed);
        return;
      case XenbusState.Closed:
        this.#teardown(dev, "backend closed");
        if (dev.state !== XenbusState.Closed) await dev.switchState(XenbusState.Closed);
        this.#release(dev);
        return;
      default:
        return;
    }
  }

  remove(dev: XenbusDevice): void {
    this.#teardown(dev, "device removed");
    this.#release(dev);
    dev.kernel.printk(`xen-blkfront: ${dev.nodename}: removed`);
  }

  save(dev: XenbusDevice): Uint8Array | undefined {
    const c = dev.data as Connection | undefined;
    const requests = (c?.front.unfinished() ?? []).map((r) => ({
      ...r,
      data: r.data === null ? null : Buffer.from(r.data).toString("base64"),
    }));
    const pages = c === undefined ? [] : [...c.ringPages, ...c.front.pool.pages()];
    const saved: SavedVbd = { pages, requests };
    return new TextEncoder().encode(JSON.stringify(saved));
  }

  resume(dev: XenbusDevice, saved?: Uint8Array): void {
    if (saved === undefined) return;
    const s = JSON.parse(new TextDecoder().decode(saved)) as SavedVbd;
    const k = dev.kernel;
    for (const p of s.pages) {
      if (p.ref >= 0 && !k.endAccess(p.ref)) continue;
      if (p.gfn >= 0) k.freePage(p.gfn);
    }
    const requests = s.requests.map((r) => ({
      ...r,
      data: r.data === null ? null : new Uint8Array(Buffer.from(r.data, "base64")),
    }));
    if (requests.length > 0) this.#recover.set(dev.nodename, requests);
    k.printk(
      `xen-blkfront: ${dev.nodename}: resuming: ${s.pages.length} old page(s) freed, ${requests.length} request(s) to resubmit`,
    );
  }

  /** blkif_recover: the requests a save kept go to the new backend. */
  #resubmit(dev: XenbusDevice, c: Connection): void {
    const requests = this.#recover.get(dev.nodename);
    if (requests === undefined) return;
    this.#recover.delete(dev.nodename);
    const log = (line: string) => dev.kernel.printk(`xen-blkfront: ${dev.nodename}: ${line}`);
    const done = requests.map((r) =>
      r.op === BLKIF_OP.discard
        ? c.front.discard(r.sector, r.nsec)
        : c.front.submit(r.op, r.sector, r.nsec, r.data),
    );
    Promise.all(done).then(
      () => log(`${requests.length} resubmitted request(s) completed`),
      (e: unknown) => log(`a resubmitted request failed: ${(e as Error).message}`),
    );
  }

  /** talk_to_blkback: ring, event channel, keys, → Initialised. */
  async #talkToBackend(dev: XenbusDevice): Promise<void> {
    const k = dev.kernel;
    const beMax = Number((await k.xs.tryRead(`${dev.otherend}/${BE.maxRingPageOrder}`)) ?? "0");
    const order = Math.min(this.params.maxRingPageOrder, Number.isInteger(beMax) && beMax >= 0 ? beMax : 0);
    const ringPages: { gfn: number; ref: number }[] = [];
    const views: Uint8Array[] = [];
    let port = -1;
    try {
      for (let i = 0; i < 1 << order; i++) {
        const { gfn, page } = k.allocPage();
        ringPages.push({ gfn, ref: -1 });
        views.push(pageBytes(page));
      }
      const ring = FrontRing.init(views, BLKIF_ENTRY_SIZE);
      for (const r of ringPages) r.ref = await dev.grantRing(r.gfn);
      port = await dev.allocEvtchn();
      const log = (line: string) => k.printk(`xen-blkfront: ${dev.nodename}: ${line}`);
      const pool = new PagePool({
        kernel: k,
        backendId: dev.otherendId,
        maxPages: this.params.maxPages,
        log,
      });
      const c: Connection = {
        ringPages,
        port,
        front: new BlkifFront({ ring, pool, name: dev.nodename, notify: () => k.notify(c.port), log }),
      };
      dev.data = c;
      dev.showRing(ring); // its private indexes, for the live view
      k.bindEvent(port, () => c.front.onEvent());
      await k.xs.transaction(async (t) => {
        const n = dev.nodename;
        if (order === 0) {
          await t.write(`${n}/${FE.ringRef}`, String(ringPages[0]!.ref));
        } else {
          await t.write(`${n}/${FE.ringPageOrder}`, String(order));
          for (let i = 0; i < ringPages.length; i++)
            await t.write(`${n}/${ringRefN(i)}`, String(ringPages[i]!.ref));
        }
        await t.write(`${n}/${FE.eventChannel}`, String(port));
        await t.write(`${n}/${FE.protocol}`, XEN_IO_PROTO_ABI_NATIVE);
        await t.write(`${n}/${FE.featurePersistent}`, this.params.persistent ? "1" : "0");
      });
      await dev.switchState(XenbusState.Initialised);
    } catch (e) {
      if (dev.data === undefined) {
        if (port >= 0) k.closePort(port);
        for (const r of ringPages) {
          if (r.ref >= 0) k.endAccess(r.ref);
          k.freePage(r.gfn);
        }
      }
      // As Linux's talk_to_blkback: the reason goes where the toolstack reads it (the errno first:
      // ENOMEM when the guest has no page left for the ring), and the device goes Closing, so a
      // `block-attach` waiting for Connected fails at once with it.
      await dev.devFatal(e, `talking to the backend: ${(e as Error).message}`);
    }
  }

  /** blkfront_connect: the disk's details, register it, → Connected. */
  async #connect(dev: XenbusDevice, c: Connection): Promise<void> {
    const k = dev.kernel;
    const be = dev.otherend;
    const num = (key: string, dflt?: number): Promise<number> => readUnsigned(k.xs, `${be}/${key}`, dflt);
    let info: DiskInfo;
    try {
      const sectors = await num(BE.sectors);
      const vinfo = await num(BE.info);
      const sectorSize = await num(BE.sectorSize);
      if (sectorSize < 512 || (sectorSize & (sectorSize - 1)) !== 0)
        throw new Error(`bad sector-size ${sectorSize}`);
      const physicalSectorSize = await num(BE.physicalSectorSize, sectorSize);
      const flush = (await num(BE.featureFlushCache, 0)) === 1 || (await num(BE.featureBarrier, 0)) === 1;
      const discard = (await num(BE.featureDiscard, 0)) === 1;
      const persistent = this.params.persistent && (await num(BE.featurePersistent, 0)) === 1;
      const beIndirect = await num(BE.featureMaxIndirectSegments, 0);
      const maxIndirect = Math.min(beIndirect, this.params.maxIndirectSegments, SEGS_PER_INDIRECT_FRAME * 8);
      const devid = Number(dev.nodename.split("/").pop());
      const vd = await k.xs.tryRead(`${dev.nodename}/${FE.virtualDevice}`);
      const vdevId = vd !== undefined && /^\d+$/.test(vd) ? Number(vd) : devid;
      info = {
        vdev: devidToVdev(vdevId),
        devid: vdevId,
        sectors,
        sectorSize,
        physicalSectorSize,
        readonly: (vinfo & VDISK.readonly) !== 0,
        features: {
          flush,
          discard,
          persistent,
          maxIndirectSegments: maxIndirect > BLKIF_MAX_SEGMENTS_PER_REQUEST ? maxIndirect : 0,
          ringPages: c.ringPages.length,
        },
        discardGranularity: discard ? await num(BE.discardGranularity, 512) : 0,
        discardAlignment: discard ? await num(BE.discardAlignment, 0) : 0,
        discardSecure: discard ? (await num(BE.discardSecure, 0)) === 1 : false,
      };
    } catch (e) {
      await dev.devFatal(e, (e as Error).message);
      return;
    }
    c.front.connect(info);
    // The disk first, then Connected (Linux writes Connected first): attachDisk resolves on
    // Connected and promises a usable disk. Someone who finds the disk may see Initialised still.
    blockDevices(k).set(info.vdev, new BlkfrontDisk(c.front, info));
    this.#resubmit(dev, c);
    await dev.switchState(XenbusState.Connected);
    const feats = [
      info.features.flush ? "flush" : "",
      info.features.discard ? "discard" : "",
      info.features.persistent ? "persistent grants" : "",
      info.features.maxIndirectSegments > 0 ? `indirect ${info.features.maxIndirectSegments}` : "",
    ].filter((s) => s !== "");
    k.printk(
      `xen-blkfront: ${info.vdev}: ${info.sectors} sectors of ${info.sectorSize} bytes${info.readonly ? ", read-only" : ""}; ring of ${info.features.ringPages} page(s)${feats.length ? `; ${feats.join(", ")}` : ""}`,
    );
  }

  /** Fails all I/O and unregisters the disk; the ring stays until release(). */
  #teardown(dev: XenbusDevice, why: string): void {
    const c = dev.data as Connection | undefined;
    if (c === undefined) return;
    c.front.failAll(why);
    const info = c.front.info;
    if (info !== null) {
      const reg = blockDevices(dev.kernel);
      const d = reg.get(info.vdev);
      if (d !== undefined) reg.delete(info.vdev);
    }
  }

  /** Closes the port, ends the grants and frees the pages (once the backend has unmapped). */
  #release(dev: XenbusDevice): void {
    const c = dev.data as Connection | undefined;
    if (c === undefined) return;
    const k = dev.kernel;
    dev.hideRing(c.front.ring);
    if (c.port >= 0) {
      try {
        k.closePort(c.port);
      } catch {
        // already closed
      }
      c.port = -1;
    }
    if (releaseConnection(k, c)) {
      dev.data = undefined;
      return;
    }
    k.printk(`xen-blkfront: ${dev.nodename}: backend still maps pages; released later`);
    // Linux's gnttab_end_foreign_access defers the pages to a timer that retries until the
    // backend unmaps them (a forced detach removes our device before the backend has unmapped).
    const retry = (): void => {
      if (releaseConnection(k, c)) {
        if (dev.data === c) dev.data = undefined;
        k.printk(`xen-blkfront: ${dev.nodename}: deferred pages released`);
        return;
      }
      setTimeout(retry, RELEASE_RETRY_MS).unref();
    };
    setTimeout(retry, RELEASE_RETRY_MS).unref();
  }
}

/** How often pages the backend still mapped at release are tried again (Linux: about 1 s). */
const RELEASE_RETRY_MS = 100;

const drivers = new WeakMap<Kernel, BlkfrontDriver>();

function arg(args: readonly string[], key: string, dflt: number): number {
  return uintParam(name, args, key, dflt);
}

export async function init(k: Kernel, args: readonly string[]): Promise<void> {
  const d = new BlkfrontDriver({
    maxRingPageOrder: Math.min(arg(args, "max_ring_page_order", 0), 4),
    persistent: arg(args, "feature_persistent", 1) !== 0,
    maxIndirectSegments: arg(args, "max_indirect_segments", DEFAULT_MAX_INDIRECT_SEGMENTS),
    maxPages: arg(args, "max_pages", 1024),
  });
  drivers.set(k, d);
  k.printk("xen-blkfront: initialised");
  await xenbus(k).registerFrontend(d);
}

export async function exit(k: Kernel): Promise<void> {
  const d = drivers.get(k);
  if (d === undefined) return;
  await xenbus(k).unregister(d);
  drivers.delete(k);
}

function disk(k: Kernel, vdev: unknown): BlockDevice {
  const d = blockDevices(k).get(String(vdev));
  if (d === undefined) throw new Error(`No disk ${String(vdev)} connected`);
  return d;
}

/**
 * Host calls (Hypervisor.call, as a dom0 tool's ioctl on the guest's disk): `list`, `info`,
 * `read`, `write`, `flush`, `discard`: what `blk-cp` is built on (docs/blk-tools.md). `read`
 * takes `into`, a buffer to fill: a caller that passes one over a SharedArrayBuffer (blk-cp's
 * host side) gets the data with no copy through postMessage, as `write`'s `data` over one is
 * read where it lies.
 */
export async function call(k: Kernel, cmd: string, a: unknown): Promise<unknown> {
  const o = (a ?? {}) as {
    vdev?: unknown;
    sector?: unknown;
    count?: unknown;
    data?: unknown;
    into?: unknown;
    zeroCopy?: unknown;
  };
  switch (cmd) {
    case "list":
      return [...blockDevices(k).keys()];
    case "info": {
      const d = disk(k, o.vdev);
      return {
        vdev: d.vdev,
        devid: d.devid,
        sectors: d.sectors,
        sectorSize: d.sectorSize,
        physicalSectorSize: d.physicalSectorSize,
        readonly: d.readonly,
        features: { ...d.features },
      };
    }
    case "read":
      if (o.zeroCopy === true) return readZeroCopy(disk(k, o.vdev), Number(o.sector), Number(o.count));
      if (o.into !== undefined && !(o.into instanceof Uint8Array))
        throw new TypeError("read: into must be a Uint8Array");
      return disk(k, o.vdev).read(Number(o.sector), Number(o.count), o.into);
    case "write": {
      if (!(o.data instanceof Uint8Array)) throw new TypeError("write: data must be a Uint8Array");
      if (o.zeroCopy === true) await writeZeroCopy(disk(k, o.vdev), Number(o.sector), o.data);
      else await disk(k, o.vdev).write(Number(o.sector), o.data);
      return undefined;
    }
    case "flush":
      await disk(k, o.vdev).flush();
      return undefined;
    case "discard":
      await disk(k, o.vdev).discard(Number(o.sector), Number(o.count));
      return undefined;
    default:
      throw new Error(`xen_blkfront: unknown call ${cmd}`);
  }
}

/** The `read` call with `zeroCopy`: through an IoBuffer, copied out for the reply. */
async function readZeroCopy(d: BlockDevice, sector: number, count: number): Promise<Uint8Array> {
  const buf = d.allocBuffer!(count * 512);
  try {
    await d.readBuffer!(sector, count, buf);
    const out = new Uint8Array(count * 512);
    buf.pages.forEach((p, i) => {
      out.set(p.subarray(0, Math.min(4096, out.length - i * 4096)), i * 4096);
    });
    return out;
  } finally {
    buf.free();
  }
}

/** The `write` call with `zeroCopy`: the data put in an IoBuffer's pages, then written from them. */
async function writeZeroCopy(d: BlockDevice, sector: number, data: Uint8Array): Promise<void> {
  if (data.byteLength % 512 !== 0) {
    throw new RangeError(`Cannot write ${data.byteLength} bytes: not a whole number of sectors`);
  }
  const buf = d.allocBuffer!(data.byteLength);
  try {
    buf.pages.forEach((p, i) => {
      p.set(data.subarray(i * 4096, (i + 1) * 4096));
    });
    await d.writeBuffer!(sector, data.byteLength / 512, buf);
  } finally {
    buf.free();
  }
}
