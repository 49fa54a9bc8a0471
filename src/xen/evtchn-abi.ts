/**
 * Event channels, the shared part: the 2-level ABI memory that the hypervisor and a domain share,
 * the port table, and Xen's bit algorithms over them (`xen/common/event_2l.c`).
 *
 * Event memory, one SharedArrayBuffer per domain, laid out as the 2-level part of Xen's
 * `shared_info` on x86_64 (xen.h), whose `vcpu_info[32]` of 64 bytes each come first, plus words
 * of our own after it. For vCPU v < EVTCHN_MAX_VCPUS:
 *
 *   vcpu_info[v].evtchn_upcall_pending  u8   @64v
 *   vcpu_info[v].evtchn_upcall_mask     u8   @64v+1
 *   vcpu_info[v].evtchn_pending_sel     u64  @64v+8   bit w: u64 word w of evtchn_pending may have work
 *   shared_info.evtchn_pending[64]      u64  @2048    bit p: port p is pending
 *   shared_info.evtchn_mask[64]         u64  @2560    bit p: port p is masked
 *   wake[v]                             i32  @3072+4v not Xen's: the word vCPU v sleeps on
 *   notify_vcpu[4096]                   u8   @3136+p  not Xen's: the vCPU port p notifies
 *
 * Bits are reached through an Int32Array: port p is bit (p & 31) of int32 word (p >> 5) from the
 * start of the bitmap, which is where it sits in the little-endian u64 words C sees. A selector is
 * two int32 halves; each half is swapped atomically on its own, which is enough because every set of
 * a selector bit is followed by a set of `upcall_pending` (see EventChannelGuest.upcall()).
 *
 * `notify_vcpu` is Xen's `evtchn->notify_vcpu_id`, copied where a sender can read it: only the
 * hypervisor writes it (bind_ipi, bind_virq, bind_vcpu, and 0 again when a port is freed), and
 * set-pending reads it to pick the vCPU whose selector, upcall byte and wake word it uses. A reader
 * keeps the low bits only (& (EVTCHN_MAX_VCPUS - 1)), so whatever the byte holds, every access
 * stays inside the vcpu_info slots and wake words laid out above. It starts on a cache line of its
 * own (the wake words' line is written on every kick; these bytes are read-mostly).
 *
 * `wake[v]` stands in for the vCPU kick (`vcpu_mark_events_pending` → IPI): whoever sets vCPU v's
 * `upcall_pending` then adds 1 to `wake[v]` and calls Atomics.notify. vCPU v reads `wake[v]`,
 * checks its `upcall_pending`, and only then sleeps with Atomics.wait(wake[v], seen), so a kick
 * between the check and the sleep changes the word and the sleep returns at once: no wake-up is
 * lost.
 *
 * Port table, one SharedArrayBuffer per domain, written only by the hypervisor (the main thread)
 * and read by the domain's worker on the send fast path. Four int32 per port:
 *
 *   [0] seq     even when stable; odd while the hypervisor rewrites the entry (a seqlock)
 *   [1] state   EVTCHNSTAT_* (0 free, 1 unbound, 2 interdomain, 4 virq, 5 ipi) | remote domid << 8
 *   [2] remote port (interdomain)
 *   [3] remote serial: the peer domain's incarnation number, the key of its event memory
 *
 * A domid can be reused after a domain is destroyed; the serial cannot, so a worker never sends into
 * the event memory of a dead domain that had the same domid.
 */

import type { MessagePort } from "node:worker_threads";

/** Ports of the 2-level ABI on a 64-bit guest: 64 × 64 bits. Port 0 is never handed out. */
export const EVTCHN_2L_NR_CHANNELS = 4096;

/** vCPUs a domain may have; a power of two, so that a port's vCPU byte is reduced with a mask. */
export const EVTCHN_MAX_VCPUS = 4;

/**
 * Byte offsets in a domain's event memory. `upcallPending`, `upcallMask` and `pendingSel` are
 * offsets in a `vcpu_info` (vCPU v's is at `vcpuInfo * v`); `wake` is vCPU 0's wake word, vCPU v's
 * is at `wake + 4v`; `vcpu` is port 0's notify_vcpu byte, port p's is at `vcpu + p`.
 */
export const EVTCHN_LAYOUT = {
  vcpuInfo: 64,
  upcallPending: 0,
  upcallMask: 1,
  pendingSel: 8,
  pending: 2048,
  mask: 2560,
  wake: 3072,
  vcpu: 3136,
  size: 3136 + EVTCHN_2L_NR_CHANNELS,
} as const;

/** `EVTCHNSTAT_*` of event_channel.h, also the state stored in the port table. */
export const EVTCHNSTAT = {
  closed: 0,
  unbound: 1,
  interdomain: 2,
  pirq: 3,
  virq: 4,
  ipi: 5,
} as const;
export type EvtchnStat = (typeof EVTCHNSTAT)[keyof typeof EVTCHNSTAT];

/** Xen's errno values; the operations return them negated, as the hypercalls do. */
export const XEN_ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  ENOMEM: 12,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
} as const;

/** int32 word indexes in the event memory; the per-vCPU ones are vCPU 0's. */
export const W_SEL = EVTCHN_LAYOUT.pendingSel / 4;
export const W_PENDING = EVTCHN_LAYOUT.pending / 4;
export const W_MASK = EVTCHN_LAYOUT.mask / 4;
export const W_WAKE = EVTCHN_LAYOUT.wake / 4;
/** int32 words from one vCPU's selector to the next's. */
export const W_VCPU_STRIDE = EVTCHN_LAYOUT.vcpuInfo / 4;

/** int32 words per port in the port table. */
export const PT_WORDS = 4;
export const PORT_TABLE_BYTES = EVTCHN_2L_NR_CHANNELS * PT_WORDS * 4;

/** The views of one domain's event memory that the bit algorithms use. */
export interface EventMemory {
  /** Over the whole buffer: selectors, bitmaps, wake words. */
  readonly words: Int32Array;
  /** Over the whole buffer: `upcall_pending`, `upcall_mask` and the ports' vCPU bytes. */
  readonly bytes: Uint8Array;
}

export function eventMemory(sab: SharedArrayBuffer): EventMemory {
  if (sab.byteLength < EVTCHN_LAYOUT.size) {
    throw new RangeError(`Event memory needs ${EVTCHN_LAYOUT.size} bytes, got ${sab.byteLength}`);
  }
  return {
    words: new Int32Array(sab, 0, EVTCHN_LAYOUT.size >> 2),
    bytes: new Uint8Array(sab, 0, EVTCHN_LAYOUT.size),
  };
}

export function newEventMemory(): SharedArrayBuffer {
  return new SharedArrayBuffer(EVTCHN_LAYOUT.size);
}

/** The vCPU that port `port` notifies (its notify_vcpu byte, reduced to a vCPU that is laid out). */
export function portVcpu(m: EventMemory, port: number): number {
  return Atomics.load(m.bytes, EVTCHN_LAYOUT.vcpu + port) & (EVTCHN_MAX_VCPUS - 1);
}

/** The hypervisor's half: port `port` now notifies vCPU `vcpu`. */
export function setPortVcpu(m: EventMemory, port: number, vcpu: number): void {
  Atomics.store(m.bytes, EVTCHN_LAYOUT.vcpu + port, vcpu);
}

/**
 * What a nudge adds to a wake word (a kick adds 1): a vCPU that slept can tell that the host posted
 * its worker a message meanwhile, `(now - seen) >>> 0 >= NUDGE` (fewer than 65,536 kicks in one sleep).
 */
export const NUDGE = 0x10000;

/**
 * Wake vCPU `vcpu` without an upcall: the host has posted its worker a message, which the worker's
 * event loop takes; a vCPU dozing in a blocking wait (src/kernel/evtchn.ts) returns to its loop and
 * lets the loop take the message before it handles later events.
 */
export function nudge(m: EventMemory, vcpu: number): void {
  Atomics.add(m.words, W_WAKE + vcpu, NUDGE);
  Atomics.notify(m.words, W_WAKE + vcpu);
}

/** Whether a wake word that read `seen` before a sleep and `now` after it was nudged meanwhile. */
export function nudgedSince(seen: number, now: number): boolean {
  return (now - seen) >>> 0 >= NUDGE;
}

/** Mark vCPU `vcpu`'s upcall pending and kick it (Xen's `vcpu_mark_events_pending`). */
export function kick(m: EventMemory, vcpu: number): void {
  Atomics.store(m.bytes, EVTCHN_LAYOUT.vcpuInfo * vcpu + EVTCHN_LAYOUT.upcallPending, 1);
  Atomics.add(m.words, W_WAKE + vcpu, 1);
  Atomics.notify(m.words, W_WAKE + vcpu);
}

/**
 * The common tail of set-pending and unmask, for a port that is pending and unmasked: set the
 * selector bit of its word in its vCPU's `evtchn_pending_sel`; if that bit was clear, mark the
 * vCPU's upcall pending and kick it.
 */
export function raiseSelector(m: EventMemory, port: number): void {
  const v = portVcpu(m, port);
  const w = port >>> 6;
  const sbit = 1 << (w & 31);
  if (Atomics.or(m.words, W_SEL + W_VCPU_STRIDE * v + (w >>> 5), sbit) & sbit) return;
  kick(m, v);
}

/**
 * Xen's `evtchn_2l_set_pending`, in strict order: test-and-set the pending bit (already set: stop,
 * the event is already on its way); if the port is not masked, raise the selector bit of the
 * port's vCPU and, if it was clear, mark that vCPU's upcall pending and kick it. A masked port keeps
 * its pending bit, so nothing is lost: unmask() delivers it.
 */
export function setPending(m: EventMemory, port: number): void {
  const bit = 1 << (port & 31);
  if (Atomics.or(m.words, W_PENDING + (port >>> 5), bit) & bit) return;
  if (Atomics.load(m.words, W_MASK + (port >>> 5)) & bit) return;
  raiseSelector(m, port);
}

/**
 * Xen's `evtchn_2l_unmask`: test-and-clear the mask bit; if it was set and the port is pending,
 * raise the selector bit of the port's vCPU and kick that vCPU if the bit was clear.
 */
export function unmaskPort(m: EventMemory, port: number): void {
  const bit = 1 << (port & 31);
  if (!(Atomics.and(m.words, W_MASK + (port >>> 5), ~bit) & bit)) return;
  if (!(Atomics.load(m.words, W_PENDING + (port >>> 5)) & bit)) return;
  raiseSelector(m, port);
}

export function clearPending(m: EventMemory, port: number): void {
  Atomics.and(m.words, W_PENDING + (port >>> 5), ~(1 << (port & 31)));
}

export function testBit(m: EventMemory, base: number, port: number): boolean {
  return (Atomics.load(m.words, base + (port >>> 5)) & (1 << (port & 31))) !== 0;
}

/** One port-table entry as the domain sees it. */
export interface PortEntry {
  state: number;
  remoteDom: number;
  remotePort: number;
  remoteSerial: number;
}

/**
 * Read a port's entry consistently (the reader half of the seqlock). `out` is filled in and
 * returned, so the send path allocates nothing.
 */
export function readPortEntry(table: Int32Array, port: number, out: PortEntry): PortEntry {
  const i = port * PT_WORDS;
  for (;;) {
    const s1 = Atomics.load(table, i);
    if (s1 & 1) continue; // the hypervisor is mid-write: it finishes without ever blocking
    const w = Atomics.load(table, i + 1);
    out.remotePort = Atomics.load(table, i + 2);
    out.remoteSerial = Atomics.load(table, i + 3);
    if (Atomics.load(table, i) !== s1) continue;
    out.state = w & 0xff;
    out.remoteDom = w >>> 8;
    return out;
  }
}

/** The writer half; only the hypervisor (one thread) calls it. */
export function writePortEntry(
  table: Int32Array,
  port: number,
  state: EvtchnStat,
  remoteDom: number,
  remotePort: number,
  remoteSerial: number,
): void {
  const i = port * PT_WORDS;
  Atomics.add(table, i, 1); // odd: readers retry
  Atomics.store(table, i + 1, state | (remoteDom << 8));
  Atomics.store(table, i + 2, remotePort);
  Atomics.store(table, i + 3, remoteSerial);
  Atomics.add(table, i, 1); // even again
}

/**
 * What one vCPU of a domain needs to use its event channels: pass it in workerData with `peers` in
 * the transfer list (or keep it, for a vCPU on the main thread), and build an EventChannelUpcall
 * from it there.
 */
export interface DomainEventsBoot {
  readonly domid: number;
  /** The vCPU this record is for: its upcall handles the ports bound to this vCPU. */
  readonly vcpu: number;
  /** This incarnation of the domain; never reused, unlike the domid. */
  readonly serial: number;
  /** Event memory (shared_info/vcpu_info 2-level part, plus wake words and the ports' vCPUs). */
  readonly events: SharedArrayBuffer;
  /** Port table; read-only for the domain. */
  readonly ports: SharedArrayBuffer;
  /** Where the hypervisor posts PeerEvents, for this vCPU alone; it takes them synchronously. */
  readonly peers: MessagePort;
}

/**
 * What the hypervisor posts on a domain's peer port before the first port of that domain is bound
 * to the peer: the peer's event memory, keyed by its serial.
 */
export interface PeerEvents {
  readonly serial: number;
  readonly domid: number;
  readonly events: SharedArrayBuffer;
}
