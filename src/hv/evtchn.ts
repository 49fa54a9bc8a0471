/**
 * Event channels, the hypervisor side: the authoritative state of every domain's ports and every
 * operation but send's fast path (`xen/common/event_channel.c` semantics, 2-level ABI).
 *
 * It runs on the main thread. Each domain gets, from addDomain(), its event memory (shared_info's
 * pending/mask bitmaps and vCPU 0's upcall bits, see evtchn-abi.ts), a port table the hypervisor
 * alone writes, and a MessagePort on which the hypervisor hands it a peer's event memory. A domain's
 * worker sends without the hypervisor: it reads its own port entry and sets the pending bit in the
 * peer's event memory itself (EventChannelUpcall.send in evtchn-guest.ts), so a notification costs
 * one wake-up, as Xen's EVTCHNOP_send costs one trap.
 *
 * Isolation. Before the first port of domain A is bound to domain B, A receives B's event memory
 * (and B receives A's). That buffer holds B's pending and mask bitmaps, B's selector and upcall
 * bits and B's wake word: no memory page of B, no grant, no port table. The worst a hostile A can do
 * with it is raise or hide events on B's ports (set pending bits, kick B, clear B's bits), i.e.
 * spurious or early events, which Xen drivers must tolerate already since events may be spurious
 * and carry no data; every driver re-reads its ring indexes on each event. It cannot read or write
 * anything else of B. The hypervisor keeps handing out only the memory of domains a port is bound
 * to, and a worker can send only on ports in its own port table, which it cannot write.
 *
 * Operations take the calling domain's domid first, as the hypercall handler knows `current`, and
 * return a port or 0 on success and a negative Xen errno on failure, as the hypercalls do.
 *
 *   const ev = new EventChannels();
 *   const a = ev.addDomain(1), b = ev.addDomain(2);     // boot records for the two workers
 *   const pa = ev.allocUnbound(1, DOMID_SELF, 2);        // 1 offers a port to 2
 *   const pb = ev.bindInterdomain(2, 1, pa);             // 2 binds it; pb is pending in 2
 *   ev.close(1, pa);                                     // pb reverts to unbound, accepting 1
 */
import { MessageChannel, type MessagePort } from "node:worker_threads";
import {
  clearPending,
  DOMID_SELF,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHNSTAT,
  type EventMemory,
  type EvtchnStat,
  eventMemory,
  newEventMemory,
  type PeerEvents,
  PORT_TABLE_BYTES,
  setPending,
  unmaskPort,
  W_MASK,
  W_PENDING,
  writePortEntry,
  XEN_ERRNO,
} from "./evtchn-abi.ts";

export {
  DOMID_SELF,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHN_LAYOUT,
  EVTCHNSTAT,
  type EvtchnStat,
  XEN_ERRNO,
} from "./evtchn-abi.ts";

/** `NR_VIRQS` of xen.h. */
export const NR_VIRQS = 24;

/**
 * Virtual IRQs bound per vCPU ("V." in xen.h; Xen's virq_is_global() is false for them): TIMER,
 * DEBUG, XENOPROF, XENPMU. The others, the arch ones included on x86, are global.
 */
const PER_VCPU_VIRQS: ReadonlySet<number> = new Set([0, 1, 7, 13]);

/** `DOMID_FIRST_RESERVED`: domids from here on are special, never a domain's. */
const DOMID_FIRST_RESERVED = 0x7ff0;

const { EPERM, ENOENT, ESRCH, EEXIST, EINVAL, ENOSPC } = XEN_ERRNO;

/**
 * What a domain's worker needs to use its event channels: pass it in workerData with `peers` in
 * the transfer list, and build an EventChannelUpcall from it there.
 */
export interface DomainEventsBoot {
  readonly domid: number;
  /** This incarnation of the domain; never reused, unlike the domid. */
  readonly serial: number;
  /** Event memory (shared_info/vcpu_info 2-level part, plus the wake word). */
  readonly events: SharedArrayBuffer;
  /** Port table; read-only for the domain. */
  readonly ports: SharedArrayBuffer;
  /** Where the hypervisor posts PeerEvents; the worker takes them synchronously. */
  readonly peers: MessagePort;
}

/** EVTCHNOP_status's answer. */
export type EvtchnStatus =
  | { status: typeof EVTCHNSTAT.closed; vcpu: number }
  | { status: typeof EVTCHNSTAT.unbound; vcpu: number; dom: number }
  | { status: typeof EVTCHNSTAT.interdomain; vcpu: number; dom: number; port: number }
  | { status: typeof EVTCHNSTAT.virq; vcpu: number; virq: number }
  | { status: typeof EVTCHNSTAT.ipi; vcpu: number };

interface Domain {
  readonly domid: number;
  readonly serial: number;
  readonly privileged: boolean;
  readonly mem: EventMemory;
  readonly table: Int32Array;
  /** Hypervisor's end of the peer hand-off channel. */
  readonly handoff: MessagePort;
  /** Serials whose event memory this domain has been given. */
  readonly given: Set<number>;
  /** Per port: EVTCHNSTAT_* (free is closed). */
  readonly state: Uint8Array;
  /** Per port: unbound → the domid it accepts; interdomain → the peer's domid; virq → the virq. */
  readonly remote: Uint16Array;
  /** Per port: interdomain → the peer's port. */
  readonly remotePort: Uint16Array;
  /** virq → port. */
  readonly virqs: Map<number, number>;
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port < EVTCHN_2L_NR_CHANNELS;
}

export class EventChannels {
  readonly #domains = new Map<number, Domain>();
  #nextSerial = 1;

  /**
   * Create the event-channel state of a new domain and return what its worker needs. A domid in use
   * or out of range is a bug of the caller (RangeError), not a guest error.
   */
  addDomain(domid: number, opts: { privileged?: boolean } = {}): DomainEventsBoot {
    if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_FIRST_RESERVED) {
      throw new RangeError(`Cannot add domain ${domid}: domids are 0 to ${DOMID_FIRST_RESERVED - 1}`);
    }
    if (this.#domains.has(domid)) throw new RangeError(`Cannot add domain ${domid}: it exists`);
    const events = newEventMemory();
    const ports = new SharedArrayBuffer(PORT_TABLE_BYTES);
    const { port1, port2 } = new MessageChannel();
    const d: Domain = {
      domid,
      serial: this.#nextSerial++,
      privileged: opts.privileged ?? false,
      mem: eventMemory(events),
      table: new Int32Array(ports),
      handoff: port1,
      given: new Set(),
      state: new Uint8Array(EVTCHN_2L_NR_CHANNELS),
      remote: new Uint16Array(EVTCHN_2L_NR_CHANNELS),
      remotePort: new Uint16Array(EVTCHN_2L_NR_CHANNELS),
      virqs: new Map(),
    };
    this.#domains.set(domid, d);
    return { domid, serial: d.serial, events, ports, peers: port2 };
  }

  hasDomain(domid: number): boolean {
    return this.#domains.has(domid);
  }

  /**
   * EVTCHNOP_alloc_unbound: a new port in `dom` (the caller, unless the caller is privileged),
   * unbound and accepting only `remoteDom` (DOMID_SELF meaning the caller, as in Xen).
   */
  allocUnbound(caller: number, dom: number, remoteDom: number): number {
    const c = this.#domains.get(caller);
    if (c === undefined) return -ESRCH;
    const d = this.#domains.get(dom === DOMID_SELF ? caller : dom);
    if (d === undefined) return -ESRCH;
    if (d !== c && !c.privileged) return -EPERM;
    const port = this.#freePort(d);
    if (port < 0) return port;
    const accept = remoteDom === DOMID_SELF ? caller : remoteDom;
    this.#set(d, port, EVTCHNSTAT.unbound, accept & 0xffff, 0);
    return port;
  }

  /**
   * EVTCHNOP_bind_interdomain: bind a new port of the caller to `remotePort` of `remoteDom`, which
   * must be unbound and accepting the caller. Both ends become interdomain and the new local port
   * is set pending at once (events sent while the remote end was unbound were dropped).
   */
  bindInterdomain(caller: number, remoteDom: number, remotePort: number): number {
    const l = this.#domains.get(caller);
    if (l === undefined) return -ESRCH;
    const r = this.#domains.get(remoteDom === DOMID_SELF ? caller : remoteDom);
    if (r === undefined) return -ESRCH;
    const lport = this.#freePort(l);
    if (lport < 0) return lport;
    if (
      !validPort(remotePort) ||
      r.state[remotePort] !== EVTCHNSTAT.unbound ||
      r.remote[remotePort] !== l.domid
    ) {
      return -EINVAL;
    }
    // Hand each side the other's event memory before either port table says "interdomain".
    this.#give(l, r);
    this.#give(r, l);
    this.#set(l, lport, EVTCHNSTAT.interdomain, r.domid, remotePort, r.serial);
    this.#set(r, remotePort, EVTCHNSTAT.interdomain, l.domid, lport, l.serial);
    setPending(l.mem, lport);
    return lport;
  }

  /** EVTCHNOP_bind_ipi: a port on which the domain notifies itself. One vCPU: `vcpu` must be 0. */
  bindIpi(caller: number, vcpu = 0): number {
    const d = this.#domains.get(caller);
    if (d === undefined) return -ESRCH;
    if (vcpu !== 0) return -ENOENT;
    const port = this.#freePort(d);
    if (port < 0) return port;
    this.#set(d, port, EVTCHNSTAT.ipi, 0, 0);
    return port;
  }

  /**
   * EVTCHNOP_bind_virq: a port for virtual IRQ `virq` (raised with raiseVirq()). Each virq binds
   * once (-EEXIST). Xen's global-virq handler ownership (-EBUSY) is not modelled.
   */
  bindVirq(caller: number, virq: number, vcpu = 0): number {
    const d = this.#domains.get(caller);
    if (d === undefined) return -ESRCH;
    if (!Number.isInteger(virq) || virq < 0 || virq >= NR_VIRQS) return -EINVAL;
    if (!PER_VCPU_VIRQS.has(virq) && vcpu !== 0) return -EINVAL;
    if (vcpu !== 0) return -ENOENT;
    if (d.virqs.has(virq)) return -EEXIST;
    const port = this.#freePort(d);
    if (port < 0) return port;
    this.#set(d, port, EVTCHNSTAT.virq, virq, 0);
    d.virqs.set(virq, port);
    return port;
  }

  /** Raise `virq` in `domid`: sets its port pending if one is bound. Returns whether one is. */
  raiseVirq(domid: number, virq: number): boolean {
    const d = this.#domains.get(domid);
    const port = d?.virqs.get(virq);
    if (d === undefined || port === undefined) return false;
    setPending(d.mem, port);
    return true;
  }

  /**
   * EVTCHNOP_close on a port of the caller. Interdomain: the peer's end reverts to unbound, still
   * accepting the caller's domain. The closed port's pending bit is cleared (as Xen's evtchn_free).
   * Closing a free port, port 0 or a port out of range is -EINVAL.
   */
  close(caller: number, port: number): number {
    const d = this.#domains.get(caller);
    if (d === undefined) return -ESRCH;
    if (!validPort(port) || port === 0) return -EINVAL;
    switch (d.state[port]) {
      case EVTCHNSTAT.closed:
        return -EINVAL;
      case EVTCHNSTAT.virq:
        d.virqs.delete(d.remote[port]!);
        break;
      case EVTCHNSTAT.interdomain: {
        const r = this.#domains.get(d.remote[port]!)!;
        const rport = d.remotePort[port]!;
        this.#free(d, port);
        this.#set(r, rport, EVTCHNSTAT.unbound, d.domid, 0);
        return 0;
      }
    }
    this.#free(d, port);
    return 0;
  }

  /**
   * EVTCHNOP_status of port `port` of `dom` (DOMID_SELF: the caller). Another domain's ports only
   * for a privileged caller (-EPERM). Port 0 reads as closed, as Xen's reserved port does.
   */
  status(caller: number, dom: number, port: number): EvtchnStatus | number {
    const c = this.#domains.get(caller);
    if (c === undefined) return -ESRCH;
    const d = this.#domains.get(dom === DOMID_SELF ? caller : dom);
    if (d === undefined) return -ESRCH;
    if (!validPort(port)) return -EINVAL;
    if (d !== c && !c.privileged) return -EPERM;
    const vcpu = 0;
    switch (d.state[port]) {
      case EVTCHNSTAT.unbound:
        return { status: EVTCHNSTAT.unbound, vcpu, dom: d.remote[port]! };
      case EVTCHNSTAT.interdomain:
        return { status: EVTCHNSTAT.interdomain, vcpu, dom: d.remote[port]!, port: d.remotePort[port]! };
      case EVTCHNSTAT.virq:
        return { status: EVTCHNSTAT.virq, vcpu, virq: d.remote[port]! };
      case EVTCHNSTAT.ipi:
        return { status: EVTCHNSTAT.ipi, vcpu };
      default:
        return { status: EVTCHNSTAT.closed, vcpu };
    }
  }

  /**
   * EVTCHNOP_send through the hypervisor, for a caller without a worker of its own (and as the
   * reference for EventChannelUpcall.send, which does the same from the sender's worker).
   * Interdomain: the peer's port is set pending; IPI: the caller's own; unbound: dropped (0).
   */
  send(caller: number, port: number): number {
    const d = this.#domains.get(caller);
    if (d === undefined) return -ESRCH;
    if (!validPort(port)) return -EINVAL;
    switch (d.state[port]) {
      case EVTCHNSTAT.interdomain: {
        const r = this.#domains.get(d.remote[port]!)!;
        setPending(r.mem, d.remotePort[port]!);
        return 0;
      }
      case EVTCHNSTAT.ipi:
        setPending(d.mem, port);
        return 0;
      case EVTCHNSTAT.unbound:
        return 0;
      default:
        return -EINVAL;
    }
  }

  /**
   * EVTCHNOP_unmask: clear the mask bit; if the port is pending, deliver it (Xen's 2-level unmask).
   * As in Xen, any port in range may be unmasked, whatever its state.
   */
  unmask(caller: number, port: number): number {
    const d = this.#domains.get(caller);
    if (d === undefined) return -ESRCH;
    if (!validPort(port)) return -EINVAL;
    unmaskPort(d.mem, port);
    return 0;
  }

  /** Test views for the hypervisor and tests: a port's pending and mask bits. */
  isPending(domid: number, port: number): boolean {
    return this.#bit(domid, W_PENDING, port);
  }

  isMasked(domid: number, port: number): boolean {
    return this.#bit(domid, W_MASK, port);
  }

  /**
   * Destroy a domain's event channels (Xen's evtchn_destroy): every port is closed, so the peers
   * of its interdomain ports see them revert to unbound (accepting the dead domid, as in Xen), and
   * the hand-off port is closed. Ports of other domains still offered to it stay as they are.
   */
  destroyDomain(domid: number): number {
    const d = this.#domains.get(domid);
    if (d === undefined) return -ESRCH;
    for (let port = 1; port < EVTCHN_2L_NR_CHANNELS; port++) {
      if (d.state[port] !== EVTCHNSTAT.closed) this.close(domid, port);
    }
    d.handoff.close();
    this.#domains.delete(domid);
    return 0;
  }

  #bit(domid: number, base: number, port: number): boolean {
    const d = this.#domains.get(domid);
    if (d === undefined || !validPort(port)) return false;
    return (Atomics.load(d.mem.words, base + (port >>> 5)) & (1 << (port & 31))) !== 0;
  }

  /** The lowest free port above 0 (Xen's get_free_port; port 0 is reserved). */
  #freePort(d: Domain): number {
    const i = d.state.indexOf(EVTCHNSTAT.closed, 1);
    return i < 0 ? -ENOSPC : i;
  }

  #set(d: Domain, port: number, state: EvtchnStat, remote: number, remotePort: number, serial = 0): void {
    d.state[port] = state;
    d.remote[port] = remote;
    d.remotePort[port] = remotePort;
    writePortEntry(d.table, port, state, remote, remotePort, serial);
  }

  #free(d: Domain, port: number): void {
    clearPending(d.mem, port);
    this.#set(d, port, EVTCHNSTAT.closed, 0, 0);
  }

  /** Post `peer`'s event memory to `to`, once per peer incarnation (not to itself: it has its own). */
  #give(to: Domain, peer: Domain): void {
    if (to === peer || to.given.has(peer.serial)) return;
    to.given.add(peer.serial);
    const m: PeerEvents = {
      serial: peer.serial,
      domid: peer.domid,
      events: peer.mem.words.buffer as SharedArrayBuffer,
    };
    to.handoff.postMessage(m);
  }
}
