/**
 * xen_netback: the network backend, a kernel module for dom0 serving device type `vif` (Linux's
 * drivers/net/xen-netback/xenbus.c; the rings themselves are netif-back.ts). Each vif's frames go to
 * its uplink: a passt process of its own (passt.ts), or nowhere with `bridge=none`.
 *
 * The handshake, as Linux's netback does it (docs/net.md has the keys):
 *
 *   probe        read `handle`, `mac`; in one transaction `feature-sg` 1, `feature-gso-tcpv4` 1,
 *                `feature-gso-tcpv6` 1, `feature-ipv6-csum-offload` 1, `feature-rx-copy` 1,
 *                `feature-rx-flip` 0; then `feature-split-event-channels` 1,
 *                `multi-queue-max-queues` (max_queues, default 4); → InitWait
 *   frontend Connected (netfront goes there straight from Initialising)
 *                read `multi-queue-num-queues` (more than max_queues: fatal), `request-rx-copy`
 *                (must be 1: else fatal EOPNOTSUPP), `feature-rx-notify`, `feature-sg`; per
 *                queue (flat keys for one, `queue-N/` for more) `tx-ring-ref`, `rx-ring-ref`,
 *                `event-channel-tx` + `event-channel-rx` or `event-channel`; map the rings, bind
 *                the port(s), start the uplink; → Connected. A frame from the uplink goes to the
 *                queue its flow hashes to (netdev.ts flowQueue).
 *   frontend Closing → Closing; Closed → disconnect (uplink closed, rings unmapped, ports
 *                closed) → Closed; Initialising while Closed → InitWait (a reconnect)
 *
 * No hotplug script runs: xenlab's toolstack writes no `hotplug-status` and netback connects the
 * uplink itself, so Connected is not held back (Linux waits for the script's "connected").
 *
 * A frontend's fatal TX error (netif-back.ts lists them) disables that vif as Linux's
 * xenvif_fatal_tx_err does: its rings are no longer read, `stats` shows it `disabled`, and it comes
 * back only when the frontend connects again. Other vifs carry on.
 *
 * Captures (`xenlab up --pcap DIR`): at connect netback opens the vif's capture (vif-capture.ts,
 * null when the host captures nothing) and hands it every frame the guest sent (after netback's
 * checks) and every frame it is given (before the ring); it closes it at disconnect.
 *
 * Data pages: Linux copies each slot with GNTTABOP_copy; netback here maps each grant ref once and
 * copies through the mapping (grant-cache.ts), since a hypercall costs a thread wake-up.
 *
 * Module arguments: `fatal_skb_slots=N` (default 20, as Linux), `max_queues=N` (default 4).
 */
import type { Kernel } from "../../kernel/kernel.ts";
import { BackRing } from "../../ring/ring.ts";
import { pageBytes } from "../../xen/xen.ts";
import { type XenbusDevice, type XenbusDriver, XenbusState, xenbus } from "../../xenbus/xenbus.ts";
import { uintParam } from "../blk/module-params.ts";
import { GrantCache } from "./grant-cache.ts";
import { flowQueue, sumCounters } from "./netdev.ts";
import { NETIF_RX_ENTRY_SIZE, NETIF_TX_ENTRY_SIZE } from "./netif.ts";
import { FATAL_SKB_SLOTS_DEFAULT, NetifBack, type NetifBackStats, NO_BACK_STATS } from "./netif-back.ts";
import { VIF_BACKEND as BE, VIF_FRONTEND as FE, formatMac, parseMac } from "./netif-keys.ts";
import { PasstUplink } from "./passt.ts";
import { type FrameTap, openVifCapture, vifName } from "./vif-capture.ts";

export const name = "xen_netback";

/** `max_queues`'s default: Linux's is the number of dom0's CPUs; dom0 here serves every queue in one thread. */
export const MAX_QUEUES_DEFAULT = 4;

/**
 * After a frame goes to passt, dom0's vCPU does not halt-poll for this long (ms): on a machine with
 * few cores a polling dom0 holds the core passt and the service behind it need to answer, which
 * made a UDP round trip up to 2× slower (docs/net.md, issue 18). Longer than a round trip via passt.
 */
export const UPLINK_POLL_HOLD_MS = 2;

/** The uplink a vif's `bridge` key names. */
export const BRIDGE_NONE = "none";

interface Connection {
  readonly maps: number[];
  readonly ports: number[];
  /** One ring engine per queue. */
  readonly queues: NetifBack[];
  /** The frontend's data pages, mapped as they are first named. */
  readonly grants: GrantCache;
  /** The vif's capture, when the host captures. */
  readonly capture: FrameTap | null;
  uplink: PasstUplink | null;
}

interface Vif {
  readonly handle: number;
  /** `vif<domid>.<handle>`, Linux's netdev name. */
  readonly ifname: string;
  readonly mac: Uint8Array;
  readonly bridge: string;
  conn: Connection | null;
  /** The last connection's counters, kept after it goes. */
  lastStats: NetifBackStats | null;
  disabled: boolean;
}

class NetbackDriver implements XenbusDriver {
  readonly name = "xen_netback";
  readonly ids = ["vif"];
  readonly fatalSkbSlots: number;
  readonly maxQueues: number;
  unloading = false;

  constructor(fatalSkbSlots: number, maxQueues: number) {
    this.fatalSkbSlots = fatalSkbSlots;
    this.maxQueues = maxQueues;
  }

  async probe(dev: XenbusDevice): Promise<void> {
    const k = dev.kernel;
    const handleText = (await k.xs.tryRead(`${dev.nodename}/${BE.handle}`)) ?? dev.nodename.split("/").pop()!;
    const handle = /^\d+$/.test(handleText) ? Number(handleText) : Number(dev.nodename.split("/").pop());
    const macText = await k.xs.tryRead(`${dev.nodename}/${BE.mac}`);
    const mac = parseMac(macText);
    if (mac === undefined) {
      await dev.devFatal("EINVAL", `parsing ${dev.nodename}/mac`);
      throw new Error(`${dev.nodename}: bad mac ${macText ?? "(none)"}`);
    }
    const bridge = (await k.xs.tryRead(`${dev.nodename}/${BE.bridge}`)) ?? "";
    const vif: Vif = {
      handle,
      ifname: vifName(dev.otherendId, handle),
      mac,
      bridge,
      conn: null,
      lastStats: null,
      disabled: false,
    };
    dev.data = vif;
    const n = dev.nodename;
    await k.xs.transaction(async (t) => {
      await t.write(`${n}/${BE.featureSg}`, "1");
      await t.write(`${n}/${BE.featureGsoTcpv4}`, "1");
      await t.write(`${n}/${BE.featureGsoTcpv6}`, "1");
      await t.write(`${n}/${BE.featureIpv6CsumOffload}`, "1");
      await t.write(`${n}/${BE.featureRxCopy}`, "1");
      await t.write(`${n}/${BE.featureRxFlip}`, "0");
    });
    await k.xs.write(`${n}/${BE.featureSplitEventChannels}`, "1");
    await k.xs.write(`${n}/${BE.multiQueueMaxQueues}`, String(this.maxQueues));
    k.printk(`xen-netback: ${vif.ifname}: ${formatMac(mac)}, uplink ${uplinkName(bridge)}`);
    await dev.switchState(XenbusState.InitWait);
  }

  async otherendChanged(dev: XenbusDevice, state: number): Promise<void> {
    const vif = dev.data as Vif | undefined;
    if (vif === undefined) return;
    switch (state) {
      case XenbusState.Initialising:
        if (dev.state === XenbusState.Closed) {
          dev.kernel.printk(`xen-netback: ${vif.ifname}: prepare for reconnect`);
          await dev.switchState(XenbusState.InitWait);
        }
        return;
      case XenbusState.Connected:
        if (dev.state === XenbusState.Connected) return;
        await this.#disconnect(dev, vif);
        await this.#connect(dev, vif);
        return;
      case XenbusState.Closing:
        await dev.switchState(XenbusState.Closing);
        return;
      case XenbusState.Closed:
        await this.#disconnect(dev, vif);
        await dev.switchState(XenbusState.Closed);
        return;
      default:
        return;
    }
  }

  async remove(dev: XenbusDevice): Promise<void> {
    const vif = dev.data as Vif | undefined;
    if (vif === undefined) return;
    await this.#disconnect(dev, vif);
    dev.data = undefined;
  }

  /** The keys of one queue (connect_data_rings): ring refs and event channel(s), or a fatal. */
  async #queueKeys(dev: XenbusDevice, dir: string): Promise<{ refs: number[]; ports: string[] } | null> {
    const read = (key: string) => dev.kernel.xs.tryRead(`${dir}/${key}`);
    const refs: number[] = [];
    for (const key of [FE.txRingRef, FE.rxRingRef]) {
      const v = await read(key);
      if (v === undefined || !/^\d+$/.test(v)) {
        await dev.devFatal("EINVAL", `reading ${dir}/${key}`);
        return null;
      }
      refs.push(Number(v));
    }
    // Split event channels first, as Linux: event-channel-tx and -rx, else event-channel.
    const evTx = await read(FE.eventChannelTx);
    const evRx = await read(FE.eventChannelRx);
    const ev = await read(FE.eventChannel);
    const ports = evTx !== undefined && evRx !== undefined ? [evTx, evRx] : ev !== undefined ? [ev] : [];
    if (ports.length === 0 || !ports.every((p) => /^\d+$/.test(p))) {
      await dev.devFatal("EINVAL", `reading ${dir}/event-channel(-tx/-rx)`);
      return null;
    }
    return { refs, ports };
  }

  /** connect(): read the frontend's keys, map, bind, start the uplink, → Connected. */
  async #connect(dev: XenbusDevice, vif: Vif): Promise<void> {
    const k = dev.kernel;
    const fe = dev.otherend;
    const flag = async (key: string, dflt: number) => {
      const v = await k.xs.tryRead(`${fe}/${key}`);
      return v === undefined || !/^\d+$/.test(v) ? dflt : Number(v);
    };
    const nq = await flag(FE.multiQueueNumQueues, 1);
    if (nq < 1 || nq > this.maxQueues) {
      await dev.devFatal(
        "EINVAL",
        `guest requested ${nq} queues, exceeding the maximum of ${this.maxQueues}.`,
      );
      return;
    }
    if ((await flag(FE.requestRxCopy, 0)) !== 1) {
      await dev.devFatal(
        "EOPNOTSUPP",
        "reading request-rx-copy: the frontend must support the copying receive path",
      );
      return;
    }
    const rxNotify = (await flag(FE.featureRxNotify, 0)) === 1;
    const sg = (await flag(FE.featureSg, 0)) === 1;
    // One queue: the keys are flat; more: under queue-N/ (Linux's connect_data_rings).
    const keys: { refs: number[]; ports: string[] }[] = [];
    for (let q = 0; q < nq; q++) {
      const kq = await this.#queueKeys(dev, nq === 1 ? fe : `${fe}/queue-${q}`);
      if (kq === null) return;
      keys.push(kq);
    }
    const grants = new GrantCache(k, dev.otherendId);
    let capture: FrameTap | null;
    try {
      capture = await openVifCapture(k.xs, dev.otherendId, vif.handle);
    } catch (e) {
      await dev.devFatal(e, `opening the capture of ${vif.ifname}: ${(e as Error).message}`);
      return;
    }
    const conn: Connection = { maps: [], ports: [], queues: [], grants, capture, uplink: null };
    const fatal = () => {
      // xenvif_fatal_tx_err disables the whole vif, every queue.
      vif.disabled = true;
      for (const q of conn.queues) q.stop();
    };
    try {
      for (const { refs, ports } of keys) {
        const txMap = k.mapGrant(dev.otherendId, refs[0]!);
        conn.maps.push(txMap.handle);
        const rxMap = k.mapGrant(dev.otherendId, refs[1]!);
        conn.maps.push(rxMap.handle);
        const qPorts: number[] = [];
        const back = new NetifBack({
          tx: BackRing.attach(pageBytes(txMap.page), NETIF_TX_ENTRY_SIZE),
          rx: BackRing.attach(pageBytes(rxMap.page), NETIF_RX_ENTRY_SIZE),
          sg,
          fatalSkbSlots: this.fatalSkbSlots,
          copyFromGuest: (ref, offset, len, into, at) => {
            const page = grants.page(ref, true);
            if (typeof page === "number") return page;
            into.set(page.subarray(offset, offset + len), at);
            return 0;
          },
          copyToGuest: (ref, offset, data) => {
            const page = grants.page(ref, false);
            if (typeof page === "number") return page;
            page.set(data, offset);
            return 0;
          },
          notifyTx: () => k.notify(qPorts[0]!),
          notifyRx: () => k.notify(qPorts[qPorts.length - 1]!),
          deliver: (frame) => {
            capture?.onFrame("from-guest", frame);
            if (conn.uplink === null) return;
            conn.uplink.send(frame);
            // passt and whatever it talks to need a core to answer: dom0 does not poll for it.
            k.events.holdPolling(UPLINK_POLL_HOLD_MS);
          },
          fatal,
          log: (line) => k.printk(`xen-netback: ${vif.ifname}: ${line}`),
        });
        conn.queues.push(back);
        for (const rp of ports) {
          const port = k.bindInterdomain(dev.otherendId, Number(rp));
          qPorts.push(port);
          conn.ports.push(port);
          k.bindEvent(port, () => back.onEvent());
        }
      }
      if (vif.bridge !== BRIDGE_NONE) {
        conn.uplink = await PasstUplink.start({
          name: vif.ifname,
          onFrame: (frame) => {
            capture?.onFrame("to-guest", frame);
            conn.queues[flowQueue(frame, conn.queues.length)]!.receive(frame);
          },
          onClose: (reason) => k.printk(`xen-netback: ${vif.ifname}: uplink closed: ${reason}`),
        });
      }
      vif.conn = conn;
      vif.disabled = false;
      const rings = keys.map((q) => `${q.refs.join("/")} ev ${q.ports.join("/")}`).join("; ");
      k.printk(
        `xen-netback: ${vif.ifname}: connected: ${nq} queue(s), tx/rx-ring-ref ${rings}${sg ? ", sg" : ""}${rxNotify ? "" : ", no rx-notify"}${conn.uplink ? `, passt pid ${conn.uplink.pid}` : ""}`,
      );
      // Frames the frontend queued before we bound the ports.
      for (const q of conn.queues) q.onEvent();
    } catch (e) {
      for (const p of conn.ports) k.closePort(p);
      for (const h of conn.maps) k.unmapGrant(h);
      grants.clear();
      capture?.close();
      await dev.devFatal(e, `connecting ${vif.ifname}: ${(e as Error).message}`);
      return;
    }
    await dev.switchState(XenbusState.Connected);
  }

  /** xenvif_disconnect: idempotent. */
  async #disconnect(dev: XenbusDevice, vif: Vif): Promise<void> {
    const c = vif.conn;
    if (c === null) return;
    vif.conn = null;
    const k = dev.kernel;
    for (const q of c.queues) q.stop();
    vif.lastStats = sumCounters(
      c.queues.map((q) => q.stats),
      NO_BACK_STATS,
    );
    for (const p of c.ports) {
      try {
        k.closePort(p);
      } catch {
        // the frontend may have closed its end already
      }
    }
    await c.uplink?.close();
    for (const h of c.maps) {
      try {
        k.unmapGrant(h);
      } catch (e) {
        k.printk(`xen-netback: ${vif.ifname}: unmapping ring: ${(e as Error).message}`);
      }
    }
    c.grants.clear();
    c.capture?.close();
    const s = vif.lastStats;
    k.printk(
      `xen-netback: ${vif.ifname}: disconnected (tx ${s.txPackets} packets, ${s.txErrors} errors; rx ${s.rxPackets} packets, ${s.rxDropped} dropped)`,
    );
  }
}

function uplinkName(bridge: string): string {
  return bridge === BRIDGE_NONE ? "none" : "passt";
}

const drivers = new WeakMap<Kernel, NetbackDriver>();

export async function init(k: Kernel, args: readonly string[]): Promise<void> {
  const maxQueues = uintParam(name, args, "max_queues", MAX_QUEUES_DEFAULT);
  if (maxQueues < 1) throw new RangeError(`Cannot load ${name}: max_queues must be at least 1`);
  const d = new NetbackDriver(uintParam(name, args, "fatal_skb_slots", FATAL_SKB_SLOTS_DEFAULT), maxQueues);
  drivers.set(k, d);
  k.printk("xen-netback: initialised");
  await xenbus(k).registerBackend(d);
}

/** What `stats` tells of one vif. */
export interface VifStats extends NetifBackStats {
  readonly vif: string;
  readonly mac: string;
  readonly connected: boolean;
  /** A fatal error from the frontend disabled the vif. */
  readonly disabled: boolean;
  readonly uplink: string;
  readonly passtPid: number | null;
}

/** Host calls: `stats`, each vif's counters keyed by the backend's node name. */
export function call(k: Kernel, cmd: string): Record<string, VifStats> {
  if (cmd !== "stats") throw new Error(`xen_netback: unknown call ${cmd}`);
  const out: Record<string, VifStats> = {};
  for (const dev of xenbus(k).devices("backend")) {
    if (dev.driver.name !== "xen_netback") continue;
    const vif = dev.data as Vif | undefined;
    if (vif === undefined) continue;
    const s = (vif.conn !== null
      ? sumCounters(
          vif.conn.queues.map((q) => q.stats),
          NO_BACK_STATS,
        )
      : undefined) ??
      vif.lastStats ?? { txPackets: 0, txBytes: 0, txErrors: 0, rxPackets: 0, rxBytes: 0, rxDropped: 0 };
    out[dev.nodename] = {
      ...s,
      vif: vif.ifname,
      mac: formatMac(vif.mac),
      connected: vif.conn !== null,
      disabled: vif.disabled,
      uplink: uplinkName(vif.bridge),
      passtPid: vif.conn?.uplink?.pid ?? null,
    };
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
