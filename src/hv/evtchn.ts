/**
 * Event channels, the hypervisor side: the authoritative state of every domain's ports and every
 * operation but send's fast path (`xen/common/event_channel.c` semantics, 2-level ABI).
 *
 * It runs on the main thread. Each domain gets, from addDomain(), its event memory (shared_info's
 * pending/mask bitmaps, each vCPU's upcall bits and wake word, each port's vCPU; see evtchn-abi.ts),
 * a port table the hypervisor alone writes, and per vCPU a MessagePort on which the hypervisor
 * hands it a peer's event memory. A domain's worker sends without the hypervisor: it reads its own
 * port entry and sets the pending bit in the peer's event memory itself (EventChannelUpcall.send in
 * evtchn-guest.ts), so a notification costs one wake-up, as Xen's EVTCHNOP_send costs one trap.
 *
 * vCPUs. A domain has 1 to EVTCHN_MAX_VCPUS vCPUs, each a thread of its own (dom0: vCPU 0 is its
 * worker, where its kernel drivers run, and vCPU 1 the host process's main thread, its user space:
 * xenstored). Each port notifies one vCPU (Xen's notify_vcpu_id): vCPU 0 when allocated, the bound
 * vCPU for IPIs and per-vCPU virqs, and whatever EVTCHNOP_bind_vcpu says for the others. Only that
 * vCPU's selector, upcall byte and wake word are touched by set-pending, and only its upcall handles
 * the port. Every vCPU gets its own boot record (addDomain() for vCPU 0, vcpuBoot() for the others)
 * with its own hand-off port, and each hand-off goes to all of them, since each may send.
 *
 * Isolation. Before the first port of domain A is bound to domain B, A receives B's event memory
 * (and B receives A's). That buffer holds B's pending and mask bitmaps, B's selectors, upcall bits
 * and wake words, and the vCPU byte of each of B's ports: no memory page of B, no grant, no port
 * table. The worst a hostile A can do with it is raise or hide events on B's ports (set pending
 * bits, kick B, clear B's bits, or rewrite a port's vCPU byte so that its events go to another vCPU
 * of B, or to a vCPU B does not run, where nobody takes them), i.e. spurious, early or missing
 * events: the same class of harm, which Xen drivers must tolerate already since events may be
 * spurious and carry no data; every driver re-reads its ring indexes on each event. Readers keep the
 * low bits of the vCPU byte, so no value of it reaches outside B's event memory. A cannot read or
 * write anything else of B. The hypervisor keeps handing out only the memory of domains a port is
 * bound to, keeps its own copy of each port's vCPU (status() reports that one), and a worker can
 * send only on ports in its own port table, which it cannot write.
 *
 * Operations take the calling domain's domid first, as the hypercall handler knows `current`, and
 * return a port or 0 on success and a negative Xen errno on failure, as the hypercalls do.
 *
 *   const ev = new EventChannels();
 *   const a = ev.addDomain(1), b = ev.addDomain(2);     // boot records for the two workers
 *   const pa = ev.allocUnbound(1, DOMID_SELF, 2);        // 1 offers a port to 2
 *   const pb = ev.bindInterdomain(2, 1, pa);             // 2 binds it; pb is pending in 2
 *   ev.close(1, pa);                                     // pb reverts to unbound, accepting 1
 *
 *   const d0 = ev.addDomain(0, { privileged: true, vcpus: 2 });  // vCPU 0: the dom0 worker
 *   const d0v1 = ev.vcpuBoot(0, 1);                      // vCPU 1: the host's main thread
 *   ev.bindVcpu(0, ev.allocUnbound(0, DOMID_SELF, 1), 1);  // this port now wakes vCPU 1 only
 */
import { MessageChannel, type MessagePort } from "node:worker_threads";
import {
  clearPending,
  type DomainEventsBoot,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHN_MAX_VCPUS,
  EVTCHNSTAT,
  type EventMemory,
  type EvtchnStat,
  eventMemory,
  newEventMemory,
  nudge,
  type PeerEvents,
  PORT_TABLE_BYTES,
  raiseSelector,
  setPending,
  setPortVcpu,
  testBit,
  unmaskPort,
  W_MASK,
  W_PENDING,
  writePortEntry,
  XEN_ERRNO,
} from "../xen/evtchn-abi.ts";
import { DOMID_FIRST_RESERVED, DOMID_SELF } from "../xen/xen.ts";

/** `NR_VIRQS` of xen.h. */
export const NR_VIRQS = 24;

/**
 * Virtual IRQs bound per vCPU ("V." in xen.h; Xen's virq_is_global() is false for them): TIMER,
 * DEBUG, XENOPROF, XENPMU. The others, the arch ones included on x86, are global.
 */
const PER_VCPU_VIRQS: ReadonlySet<number> = new Set([0, 1, 7, 13]);

const { EPERM, ENOENT, ESRCH, EEXIST, EINVAL, ENOSPC } = XEN_ERRNO;

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
  /** Number of vCPUs, 0 to vcpus - 1. */
  readonly vcpus: number;
  readonly mem: EventMemory;
  readonly table: Int32Array;
  /** Per vCPU: the hypervisor's end of its peer hand-off channel. */
  readonly handoff: readonly MessagePort[];
  /** Per vCPU: the domain's end of that channel until a boot record hands it out. */
  readonly unclaimed: (MessagePort | undefined)[];
  /** Serials whose event memory this domain has been given. */
  readonly given: Set<number>;
  /** Per port: EVTCHNSTAT_* (free is closed). */
  readonly state: Uint8Array;
  /** Per port: unbound → the domid it accepts; interdomain → the peer's domid; virq → the virq. */
  readonly remote: Uint16Array;
  /** Per port: interdomain → the peer's port. */
  readonly remotePort: Uint16Array;
  /** Per port: the vCPU it notifies (Xen's notify_vcpu_id); the event memory holds a copy. */
  readonly notify: Uint8Array;
  /** Per vCPU: virq → port (Xen's v->virq_to_evtchn; global virqs are in vCPU 0's). */
  readonly virqs: readonly Map<number, number>[];
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port < EVTCHN_2L_NR_CHANNELS;
}

/** Xen's domain_vcpu(d, id) !== NULL. */
function hasVcpu(d: Domain, vcpu: number): boolean {
  return Number.isInteger(vcpu) && vcpu >= 0 && vcpu < d.vcpus;
}

function isGlobalVirq(virq: number): boolean {
  return !PER_VCPU_VIRQS.has(virq);
}

export class EventChannels {
  readonly #domains = new Map<number, Domain>();
  #nextSerial = 1;

  /**
   * Create the event-channel state of a new domain with `vcpus` vCPUs (default 1) and return the
   * boot record of vCPU 0; vcpuBoot() gives the others'. A domid in use or out of range, or a vCPU
   * count out of 1 to EVTCHN_MAX_VCPUS, is a bug of the caller (RangeError), not a guest error.
   */
  addDomain(domid: number, opts: { privileged?: boolean; vcpus?: number } = {}): DomainEventsBoot {
    if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_FIRST_RESERVED) {
      throw new RangeError(`Cannot add domain ${domid}: domids are 0 to ${DOMID_FIRST_RESERVED - 1}`);
    }
    if (this.#domains.has(domid)) throw new RangeError(`Cannot add domain ${domid}: it exists`);
    const vcpus = opts.vcpus ?? 1;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > EVTCHN_MAX_VCPUS) {
      throw new RangeError(`Cannot add domain ${domid} with ${vcpus} vCPUs: 1 to ${EVTCHN_MAX_VCPUS}`);
    }
    const handoff: MessagePort[] = [];
    const unclaimed: MessagePort[] = [];
    for (let v = 0; v < vcpus; v++) {
      const { port1, port2 } = new MessageChannel();
      handoff.push(port1);
      unclaimed.push(port2);
    }
    const d: Domain = {
      domid,
      serial: this.#nextSerial++,
      privileged: opts.privileged ?? false,
      vcpus,
      mem: eventMemory(newEventMemory()),
      table: new Int32Array(new SharedArrayBuffer(PORT_TABLE_BYTES)),
      handoff,
      unclaimed,
      given: new Set(),
      state: new Uint8Array(EVTCHN_2L_NR_CHANNELS),
      remote: new Uint16Array(EVTCHN_2L_NR_CHANNELS),
      remotePort: new Uint16Array(EVTCHN_2L_NR_CHANNELS),
      notify: new Uint8Array(EVTCHN_2L_NR_CHANNELS),
      virqs: Array.from({ length: vcpus }, () => new Map<number, number>()),
    };
    this.#domains.set(domid, d);
    return this.#boot(d, 0);
  }

  /**
   * The boot record of vCPU `vcpu` (1 or more) of `domid`: the domain's event memory and port
   * table, and a hand-off port of its own. Each can be had once (its MessagePort is moved to
   * whoever runs the vCPU); asking again, for vCPU 0 (addDomain() gave it), for a vCPU the domain
   * does not have or for an unknown domain is a RangeError.
   */
  vcpuBoot(domid: number, vcpu: number): DomainEventsBoot {
    const d = this.#domains.get(domid);
    if (d === undefined) throw new RangeError(`Cannot boot a vCPU of domain ${domid}: no such domain`);
    if (vcpu === 0) throw new RangeError(`Cannot boot vCPU 0 of domain ${domid}: addDomain() returned it`);
    if (!hasVcpu(d, vcpu)) {
      throw new RangeError(`Cannot boot vCPU ${vcpu} of domain ${domid}: it has vCPUs 0 to ${d.vcpus - 1}`);
    }
    return this.#boot(d, vcpu);
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

  /**
   * EVTCHNOP_bind_ipi: a port on which the domain notifies its vCPU `vcpu` (-ENOENT if it has no
   * such vCPU). The port stays bound to that vCPU: bindVcpu() refuses it.
   */
  bindIpi(caller: number, vcpu = 0): number {
    const d = this.#domains.get(caller);
    if (d === undefined) return -ESRCH;
    if (!hasVcpu(d, vcpu)) return -ENOENT;
    const port = this.#freePort(d);
    if (port < 0) return port;
    this.#setVcpu(d, port, vcpu);
    this.#set(d, port, EVTCHNSTAT.ipi, 0, 0);
    return port;
  }

  /**
   * EVTCHNOP_bind_virq: a port for virtual IRQ `virq` (raised with raiseVirq()) on vCPU `vcpu`. A
   * global virq must be bound on vCPU 0 (-EINVAL), and may be moved later with bindVcpu(); a
   * per-vCPU virq (TIMER, DEBUG, XENOPROF, XENPMU) binds on any vCPU the domain has (-ENOENT if
   * not), and stays there. Each virq binds once per vCPU (-EEXIST). Xen's global-virq handler
   * ownership (-EBUSY) is not modelled.
   */
  bindVirq(caller: number, virq: number, vcpu = 0): number {
    const d = this.#domains.get(caller);
    if (d === undefined) return -ESRCH;
    if (!Number.isInteger(virq) || virq < 0 || virq >= NR_VIRQS) return -EINVAL;
    if (isGlobalVirq(virq) && vcpu !== 0) return -EINVAL;
    if (!hasVcpu(d, vcpu)) return -ENOENT;
    const virqs = d.virqs[vcpu]!;
    if (virqs.has(virq)) return -EEXIST;
    const port = this.#freePort(d);
    if (port < 0) return port;
    this.#setVcpu(d, port, vcpu);
    this.#set(d, port, EVTCHNSTAT.virq, virq, 0);
    virqs.set(virq, port);
    return port;
  }

  /**
   * Raise `virq` in `domid`: sets its port pending if one is bound. Returns whether one is. A
   * per-vCPU virq is raised on vCPU `vcpu` (Xen's send_guest_vcpu_virq); a global one on the
   * domain, `vcpu` ignored, and it goes to the vCPU its port is bound to (send_guest_global_virq).
   */
  raiseVirq(domid: number, virq: number, vcpu = 0): boolean {
    const d = this.#domains.get(domid);
    if (d === undefined) return false;
    const port = d.virqs[isGlobalVirq(virq) ? 0 : vcpu]?.get(virq);
    if (port === undefined) return false;
    setPending(d.mem, port);
    return true;
  }

  /**
   * EVTCHNOP_bind_vcpu (Xen 4.17's evtchn_bind_vcpu): port `port` of the caller now notifies its
   * vCPU `vcpu`. -ENOENT for a vCPU the domain does not have (checked first, as Xen does), -EINVAL
   * for a port out of range, and for a port whose binding cannot change: free, port 0, IPI, or a
   * per-vCPU virq. Unbound, interdomain and global-virq ports move (PIRQs are not modelled).
   *
   * Not Xen's: Xen's 2-level ABI leaves an event that is already pending where it was (its
   * selector bit on the old vCPU, whose guest now skips the port), and Linux avoids losing it by
   * masking around the call (rebind_irq_to_cpu: mask, bind_vcpu, unmask). Here the hypervisor does
   * the unmask's part itself: if the port is pending and not masked, its selector bit is raised on
   * the new vCPU and that vCPU is kicked. A sender racing with the move sets the pending bit before
   * it reads the vCPU byte, so either it reads the new vCPU or this check sees its bit; the old
   * vCPU may also take the event if it looked first, and the upcall's test-and-clear of the
   * pending bit lets only one of them run the handler.
   */
  bindVcpu(caller: number, port: number, vcpu: number): number {
    const d = this.#domains.get(caller);
    if (d === undefined) return -ESRCH;
    if (!hasVcpu(d, vcpu)) return -ENOENT;
    if (!validPort(port)) return -EINVAL;
    switch (d.state[port]) {
      case EVTCHNSTAT.virq:
        if (!isGlobalVirq(d.remote[port]!)) return -EINVAL;
        break;
      case EVTCHNSTAT.unbound:
      case EVTCHNSTAT.interdomain:
        break;
      default:
        return -EINVAL;
    }
    if (d.notify[port] === vcpu) return 0;
    this.#setVcpu(d, port, vcpu);
    if (testBit(d.mem, W_PENDING, port) && !testBit(d.mem, W_MASK, port)) raiseSelector(d.mem, port);
    return 0;
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
      case EVTCHNSTAT.virq: {
        const virq = d.remote[port]!;
        d.virqs[isGlobalVirq(virq) ? 0 : d.notify[port]!]!.delete(virq);
        break;
      }
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
    const vcpu = d.notify[port]!;
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

  /**
   * Every port of `domid` that is not closed, with its pending and mask bits (`xl debug-keys e`,
   * for the live view). Empty for an unknown domain.
   */
  openPorts(domid: number): { port: number; status: EvtchnStatus; pending: boolean; masked: boolean }[] {
    const d = this.#domains.get(domid);
    const out: { port: number; status: EvtchnStatus; pending: boolean; masked: boolean }[] = [];
    if (d === undefined) return out;
    for (let port = 1; port < EVTCHN_2L_NR_CHANNELS; port++) {
      if (d.state[port] === EVTCHNSTAT.closed) continue;
      const status = this.status(domid, domid, port) as EvtchnStatus;
      out.push({
        port,
        status,
        pending: testBit(d.mem, W_PENDING, port),
        masked: testBit(d.mem, W_MASK, port),
      });
    }
    return out;
  }

  /** Wake every vCPU of `domid` without an upcall (`nudge`): the host has posted it a message. */
  nudge(domid: number): void {
    const d = this.#domains.get(domid);
    if (d === undefined) return;
    for (let v = 0; v < d.vcpus; v++) nudge(d.mem, v);
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
    for (const h of d.handoff) h.close();
    for (const u of d.unclaimed) u?.close();
    this.#domains.delete(domid);
    return 0;
  }

  #bit(domid: number, base: number, port: number): boolean {
    const d = this.#domains.get(domid);
    if (d === undefined || !validPort(port)) return false;
    return testBit(d.mem, base, port);
  }

  /** Hand out vCPU `vcpu`'s boot record, once. */
  #boot(d: Domain, vcpu: number): DomainEventsBoot {
    const peers = d.unclaimed[vcpu];
    if (peers === undefined) {
      throw new RangeError(`Cannot boot vCPU ${vcpu} of domain ${d.domid} twice: its MessagePort is given`);
    }
    d.unclaimed[vcpu] = undefined;
    return {
      domid: d.domid,
      vcpu,
      serial: d.serial,
      events: d.mem.words.buffer as SharedArrayBuffer,
      ports: d.table.buffer as SharedArrayBuffer,
      peers,
    };
  }

  /** Port `port` notifies vCPU `vcpu`: the hypervisor's record, then the copy senders read. */
  #setVcpu(d: Domain, port: number, vcpu: number): void {
    d.notify[port] = vcpu;
    setPortVcpu(d.mem, port, vcpu);
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

  /** Xen's evtchn_free: clear the pending bit, free the port, and bind it back to vCPU 0. */
  #free(d: Domain, port: number): void {
    clearPending(d.mem, port);
    this.#set(d, port, EVTCHNSTAT.closed, 0, 0);
    this.#setVcpu(d, port, 0);
  }

  /**
   * Post `peer`'s event memory to every vCPU of `to`, once per peer incarnation (not to itself: it
   * has its own).
   */
  #give(to: Domain, peer: Domain): void {
    if (to === peer || to.given.has(peer.serial)) return;
    to.given.add(peer.serial);
    const m: PeerEvents = {
      serial: peer.serial,
      domid: peer.domid,
      events: peer.mem.words.buffer as SharedArrayBuffer,
    };
    for (const h of to.handoff) h.postMessage(m);
  }
}
