/**
 * xen_netfront: the network frontend, a kernel module for a guest serving device type `vif` (Linux's
 * drivers/net/xen-netfront.c). Each connected vif is an Ethernet device `eth<devid>` in
 * `netDevices(kernel)` (netdev.ts); the ring engine is netif-front.ts.
 *
 * The handshake, as Linux's netfront does it (docs/net.md has the keys):
 *
 *   probe               read our `mac` (missing or malformed: fatal)
 *   backend InitWait    (while we are Initialising) talk_to_netback: `feature-rx-copy` must be 1
 *                       (else fatal ENODEV "backend does not support copying receive path");
 *                       queues = min(max_queues, the backend's `multi-queue-max-queues`, 1 when
 *                       absent); per queue a TX and an RX ring page granted to the backend, the
 *                       TX and RX pages, one unbound event channel; in one transaction
 *                       `multi-queue-num-queues` (when the backend offers multi-queue), the
 *                       queue's `tx-ring-ref`, `rx-ring-ref`, `event-channel` (flat for one
 *                       queue, under `queue-N/` for more, as Linux), `request-rx-copy` 1,
 *                       `feature-rx-notify` 1, `feature-sg` 1, `feature-gso-tcpv4` 1,
 *                       `feature-gso-tcpv6` 1, `feature-ipv6-csum-offload` 1; → Connected at once
 *                       (netfront never writes Initialised)
 *   backend Connected   the device's carrier is up: eth<devid> is registered
 *   backend Closing/Closed   the device goes, → Closed; the pages are released once the backend
 *                       has unmapped them
 *   backend back to Initialising while we are Connected, or to InitWait after we saw it
 *                       Connected: it went away (unloaded) or is a new one; start over. An InitWait
 *                       before its first Connected is no news: when netback wrote InitWait before
 *                       our first read, the watch's initial event and the event of that write both
 *                       read InitWait, and the second comes once we are Connected while netback is
 *                       mapping our rings (Linux ignores InitWait unless it is Initialising; starting
 *                       over there ended the grant netback was mapping: "map of ref 8 ... undefined
 *                       error", test/net/netfront-attach-race.test.ts)
 *
 * One event channel per queue (Linux too uses one when the backend offers no split channels). A
 * frame goes out on the queue its flow hashes to (netdev.ts flowQueue), as Linux's
 * xennet_select_queue; each queue's RX frames go up the one device.
 * Module arguments: `tx_bufs=N` (TX pages per queue, default 32), `rx_bufs=N` (RX pages, default
 * 64), `max_queues=N` (default 1: Linux's default is the guest's vCPUs, and a guest here has one;
 * each queue costs about 100 of the guest's pages).
 */
import type { Kernel } from "../../kernel/kernel.ts";
import { FrontRing } from "../../ring/ring.ts";
import { pageBytes } from "../../xen/xen.ts";
import { type XenbusDevice, type XenbusDriver, XenbusState, xenbus } from "../../xenbus/xenbus.ts";
import { uintParam } from "../blk/module-params.ts";
import { flowQueue, type NetDevice, registerNetDevice, sumCounters, unregisterNetDevice } from "./netdev.ts";
import { NETIF_RX_ENTRY_SIZE, NETIF_TX_ENTRY_SIZE } from "./netif.ts";
import { type Buffer4k, NetifFront, NO_FRONT_STATS } from "./netif-front.ts";
import { VIF_BACKEND as BE, VIF_FRONTEND as FE, formatMac, parseMac } from "./netif-keys.ts";

export const name = "xen_netfront";

/** Linux's NET_RX_SLOTS_MIN: netfront keeps at least this many RX requests posted. */
export const NET_RX_SLOTS_MIN = 19;

interface Page {
  gfn: number;
  ref: number;
}

interface Queue {
  port: number;
  readonly front: NetifFront;
}

interface Connection {
  readonly pages: Page[];
  readonly queues: Queue[];
  readonly ifname: string;
  registered: boolean;
}

interface Vif {
  readonly mac: Uint8Array;
  readonly mtu: number;
  conn: Connection | null;
}

/** Ends each page's grant and frees it; false while the backend still maps one. */
function releasePages(k: Kernel, pages: Page[]): boolean {
  let all = true;
  for (const p of pages) {
    if (p.ref >= 0) {
      if (!k.endAccess(p.ref)) {
        all = false;
        continue;
      }
      p.ref = -1;
    }
    if (p.gfn >= 0) {
      k.freePage(p.gfn);
      p.gfn = -1;
    }
  }
  return all;
}

class NetfrontDriver implements XenbusDriver {
  readonly name = "xen_netfront";
  readonly ids = ["vif"];
  readonly txBufs: number;
  readonly rxBufs: number;
  readonly maxQueues: number;

  constructor(txBufs: number, rxBufs: number, maxQueues: number) {
    this.txBufs = txBufs;
    this.rxBufs = rxBufs;
    this.maxQueues = maxQueues;
  }

  async probe(dev: XenbusDevice): Promise<void> {
    const k = dev.kernel;
    const text = await k.xs.tryRead(`${dev.nodename}/${FE.mac}`);
    const mac = parseMac(text);
    if (mac === undefined) {
      await dev.devFatal("ENOENT", `parsing ${dev.nodename}/mac`);
      throw new Error(`${dev.nodename}: bad mac ${text ?? "(none)"}`);
    }
    const mtuText = await k.xs.tryRead(`${dev.nodename}/${FE.mtu}`);
    const mtu = mtuText !== undefined && /^\d+$/.test(mtuText) ? Number(mtuText) : 1500;
    dev.data = { mac, mtu, conn: null } satisfies Vif;
    k.printk(`xen-netfront: ${dev.nodename}: probed, mac ${formatMac(mac)}`);
  }

  async otherendChanged(dev: XenbusDevice, state: number): Promise<void> {
    const vif = dev.data as Vif | undefined;
    if (vif === undefined) return;
    switch (state) {
      case XenbusState.Initialising:
      case XenbusState.InitWait:
        if (
          dev.state === XenbusState.Connected &&
          (state === XenbusState.Initialising || vif.conn === null || vif.conn.registered)
        ) {
          dev.kernel.printk(`xen-netfront: ${dev.nodename}: backend went away, starting over`);
          this.#release(dev, vif);
          await dev.switchState(XenbusState.Initialising);
        }
        if (state === XenbusState.InitWait && dev.state === XenbusState.Initialising) {
          await this.#talkToNetback(dev, vif);
        }
        return;
      case XenbusState.Connected:
        if (vif.conn !== null && !vif.conn.registered) this.#register(dev, vif, vif.conn);
        return;
      case XenbusState.Closing:
      case XenbusState.Closed:
        this.#release(dev, vif);
        if (dev.state !== XenbusState.Closed) await dev.switchState(XenbusState.Closed);
        return;
      default:
        return;
    }
  }

  remove(dev: XenbusDevice): void {
    const vif = dev.data as Vif | undefined;
    if (vif !== undefined) this.#release(dev, vif);
    dev.kernel.printk(`xen-netfront: ${dev.nodename}: removed`);
  }

  async #talkToNetback(dev: XenbusDevice, vif: Vif): Promise<void> {
    const k = dev.kernel;
    const be = dev.otherend;
    if ((await k.xs.tryRead(`${be}/${BE.featureRxCopy}`)) !== "1") {
      await dev.devFatal("ENODEV", "backend does not support copying receive path");
      return;
    }
    const offered = await k.xs.tryRead(`${be}/${BE.multiQueueMaxQueues}`);
    const backendMax = offered !== undefined && /^\d+$/.test(offered) ? Math.max(1, Number(offered)) : 1;
    const nq = Math.min(this.maxQueues, backendMax);
    const pages: Page[] = [];
    const queues: Queue[] = [];
    const alloc = (): Uint8Array => {
      const { gfn, page } = k.allocPage();
      pages.push({ gfn, ref: -1 });
      return pageBytes(page);
    };
    const devid = dev.nodename.split("/").pop()!;
    const ifname = `eth${devid}`;
    let netdev: NetDevice | undefined;
    try {
      const rings: { tx: number; rx: number }[] = [];
      for (let q = 0; q < nq; q++) {
        const tx = FrontRing.init(alloc(), NETIF_TX_ENTRY_SIZE);
        const txRing = pages[pages.length - 1]!;
        const rx = FrontRing.init(alloc(), NETIF_RX_ENTRY_SIZE);
        const rxRing = pages[pages.length - 1]!;
        txRing.ref = await dev.grantRing(txRing.gfn);
        rxRing.ref = await dev.grantRing(rxRing.gfn);
        rings.push({ tx: txRing.ref, rx: rxRing.ref });
        const bufs = (n: number, readonly: boolean): Buffer4k[] =>
          Array.from({ length: n }, () => {
            const page = alloc();
            const p = pages[pages.length - 1]!;
            p.ref = k.grantAccess(dev.otherendId, p.gfn, readonly);
            return { page, ref: p.ref };
          });
        const txBufs = bufs(Math.min(this.txBufs, tx.size), true);
        const rxBufs = bufs(Math.min(this.rxBufs, rx.size), false);
        const queue: Queue = {
          port: -1,
          front: new NetifFront({
            tx,
            rx,
            txBufs,
            rxBufs,
            notify: () => k.notify(queue.port),
            receive: (frame) => {
              netdev?.onReceive?.(frame);
            },
            log: (line) => k.printk(`xen-netfront: ${ifname}${nq > 1 ? ` queue ${q}` : ""}: ${line}`),
          }),
        };
        queues.push(queue);
        queue.port = await dev.allocEvtchn();
      }
      const conn: Connection = { pages, queues, ifname, registered: false };
      const nd: NetDevice = {
        name: ifname,
        mac: vif.mac,
        mtu: vif.mtu,
        onReceive: null,
        send: (frame: Uint8Array) => queues[flowQueue(frame, nq)]!.front.send(frame),
        stats: () =>
          sumCounters(
            queues.map((q) => q.front.stats),
            NO_FRONT_STATS,
          ),
      };
      netdev = nd;
      devices.set(conn, nd);
      vif.conn = conn;
      for (const q of queues) k.bindEvent(q.port, () => q.front.onEvent());
      await k.xs.transaction(async (t) => {
        const n = dev.nodename;
        if (offered !== undefined) await t.write(`${n}/${FE.multiQueueNumQueues}`, String(nq));
        for (let q = 0; q < nq; q++) {
          // One queue: flat keys; more: under queue-N/ (Linux's write_queue_xenstore_keys).
          const dir = nq === 1 ? n : `${n}/queue-${q}`;
          await t.write(`${dir}/${FE.txRingRef}`, String(rings[q]!.tx));
          await t.write(`${dir}/${FE.rxRingRef}`, String(rings[q]!.rx));
          await t.write(`${dir}/${FE.eventChannel}`, String(queues[q]!.port));
        }
        await t.write(`${n}/${FE.requestRxCopy}`, "1");
        await t.write(`${n}/${FE.featureRxNotify}`, "1");
        await t.write(`${n}/${FE.featureSg}`, "1");
        await t.write(`${n}/${FE.featureGsoTcpv4}`, "1");
        await t.write(`${n}/${FE.featureGsoTcpv6}`, "1");
        await t.write(`${n}/${FE.featureIpv6CsumOffload}`, "1");
      });
      for (const q of queues) q.front.start();
      await dev.switchState(XenbusState.Connected);
      // The backend may be Connected already (its event coalesced with ours).
      if ((await k.xs.tryRead(`${be}/state`)) === String(XenbusState.Connected))
        this.#register(dev, vif, conn);
    } catch (e) {
      if (vif.conn === null) {
        for (const q of queues) if (q.port >= 0) k.closePort(q.port);
        releasePages(k, pages);
      }
      await dev.devFatal(e, `talking to the backend: ${(e as Error).message}`);
    }
  }

  #register(dev: XenbusDevice, vif: Vif, conn: Connection): void {
    if (conn.registered) return;
    const nd = devices.get(conn);
    if (nd === undefined) return;
    conn.registered = true;
    registerNetDevice(dev.kernel, nd);
    dev.kernel.printk(`xen-netfront: ${conn.ifname}: up, mac ${formatMac(vif.mac)}, mtu ${vif.mtu}`);
  }

  /** The device goes; the port closes; the pages go once the backend has unmapped them. */
  #release(dev: XenbusDevice, vif: Vif): void {
    const c = vif.conn;
    if (c === null) return;
    vif.conn = null;
    const k = dev.kernel;
    if (c.registered) unregisterNetDevice(k, c.ifname);
    for (const q of c.queues) {
      if (q.port < 0) continue;
      try {
        k.closePort(q.port);
      } catch {
        // already closed
      }
      q.port = -1;
    }
    if (releasePages(k, c.pages)) return;
    // Linux's gnttab_end_foreign_access defers pages the backend still maps.
    const retry = (): void => {
      if (!releasePages(k, c.pages)) setTimeout(retry, 100).unref();
    };
    setTimeout(retry, 100).unref();
  }
}

/** Each connection's Ethernet device (made with it, registered once the backend is Connected). */
const devices = new WeakMap<Connection, NetDevice>();

const drivers = new WeakMap<Kernel, NetfrontDriver>();

export async function init(k: Kernel, args: readonly string[]): Promise<void> {
  const txBufs = uintParam(name, args, "tx_bufs", 32);
  const rxBufs = uintParam(name, args, "rx_bufs", 64);
  const maxQueues = uintParam(name, args, "max_queues", 1);
  if (txBufs < 1 || rxBufs < NET_RX_SLOTS_MIN || maxQueues < 1) {
    throw new RangeError(
      `Cannot load ${name}: tx_bufs and max_queues must be at least 1 and rx_bufs at least ${NET_RX_SLOTS_MIN}`,
    );
  }
  const d = new NetfrontDriver(txBufs, rxBufs, maxQueues);
  drivers.set(k, d);
  k.printk("xen-netfront: initialised");
  await xenbus(k).registerFrontend(d);
}

/** Host calls: `list`, each Ethernet device with its MAC and counters. */
export function call(k: Kernel, cmd: string): unknown {
  if (cmd !== "list") throw new Error(`xen_netfront: unknown call ${cmd}`);
  const out: Record<string, unknown> = {};
  for (const dev of xenbus(k).devices("frontend")) {
    if (dev.driver.name !== "xen_netfront") continue;
    const vif = dev.data as Vif | undefined;
    const c = vif?.conn;
    if (vif === undefined) continue;
    out[dev.nodename] = {
      mac: formatMac(vif.mac),
      ifname: c?.ifname ?? null,
      up: c?.registered ?? false,
      queues: c?.queues.length ?? 0,
      txPerQueue: c?.queues.map((q) => q.front.stats.txPackets) ?? [],
      broken: c?.queues.find((q) => q.front.broken !== null)?.front.broken ?? null,
      ...(c
        ? sumCounters(
            c.queues.map((q) => q.front.stats),
            NO_FRONT_STATS,
          )
        : {}),
    };
  }
  return out;
}

export async function exit(k: Kernel): Promise<void> {
  const d = drivers.get(k);
  if (d === undefined) return;
  await xenbus(k).unregister(d);
  drivers.delete(k);
}
