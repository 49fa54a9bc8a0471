/**
 * The guest's Ethernet devices: what netfront registers (one per connected vif, `eth<devid>`) and
 * what the IP stack (stack/) sends and receives through. A registry per kernel, as blockDevices is.
 */
import type { Kernel } from "../../kernel/kernel.ts";

export interface NetDeviceStats {
  readonly txPackets: number;
  readonly txBytes: number;
  readonly txErrors: number;
  readonly txDropped: number;
  readonly rxPackets: number;
  readonly rxBytes: number;
  readonly rxErrors: number;
}

export interface NetDevice {
  /** `eth0`, ... */
  readonly name: string;
  readonly mac: Uint8Array;
  /** The toolstack's `mtu` key, else 1500. */
  readonly mtu: number;
  /** Sends one Ethernet frame; false when it was dropped. */
  send(frame: Uint8Array): boolean;
  /** Where received frames go; set by the IP stack (frames are dropped while null). */
  onReceive: ((frame: Uint8Array) => void) | null;
  stats(): NetDeviceStats;
}

/**
 * The queue of `n` a frame goes to: one flow, one queue, as Linux picks a queue by the frame's
 * flow hash (netback for RX, netfront for TX). The hash is of an IPv4 frame's addresses and ports
 * (bytes 26..37); anything else (ARP, a short frame) goes to queue 0.
 */
export function flowQueue(frame: Uint8Array, n: number): number {
  if (n === 1 || frame.length < 38 || frame[12] !== 0x08 || frame[13] !== 0x00) return 0;
  let h = 0;
  for (let i = 26; i < 38; i++) h = (Math.imul(h, 31) + frame[i]!) >>> 0;
  return h % n;
}

/**
 * Counters of several queues added up, key by key, onto `zero` (the record of every key at 0,
 * which is also the answer for no queue).
 */
export function sumCounters<T extends { readonly [K in keyof T]: number }>(each: readonly T[], zero: T): T {
  const t = { ...zero };
  for (const c of each) for (const k of Object.keys(t) as (keyof T)[]) (t[k] as number) += c[k];
  return t;
}

interface Registry {
  readonly devices: Map<string, NetDevice>;
  readonly listeners: Set<(dev: NetDevice, up: boolean) => void>;
}

const registries = new WeakMap<Kernel, Registry>();

function registry(k: Kernel): Registry {
  let r = registries.get(k);
  if (r === undefined) {
    r = { devices: new Map(), listeners: new Set() };
    registries.set(k, r);
  }
  return r;
}

/** The domain's Ethernet devices, by name. */
export function netDevices(k: Kernel): ReadonlyMap<string, NetDevice> {
  return registry(k).devices;
}

/** Called for each device registered (up) or removed (down), and at once for each one there is. */
export function watchNetDevices(k: Kernel, fn: (dev: NetDevice, up: boolean) => void): () => void {
  const r = registry(k);
  r.listeners.add(fn);
  for (const d of r.devices.values()) fn(d, true);
  return () => r.listeners.delete(fn);
}

export function registerNetDevice(k: Kernel, dev: NetDevice): void {
  const r = registry(k);
  r.devices.set(dev.name, dev);
  for (const fn of r.listeners) fn(dev, true);
}

export function unregisterNetDevice(k: Kernel, name: string): void {
  const r = registry(k);
  const dev = r.devices.get(name);
  if (dev === undefined) return;
  r.devices.delete(name);
  for (const fn of r.listeners) fn(dev, false);
}
