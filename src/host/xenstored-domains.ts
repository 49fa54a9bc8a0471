/**
 * xenstored's side of the domains (C `xenstored_domain.c`): on XS_INTRODUCE it maps the guest's
 * XenStore page through grant ref 1 (GNTTAB_RESERVED_XENSTORE), binds the guest's unbound port
 * to a port of dom0, and attaches a RingServer to the connection; on release it lets go of all
 * three. Dom0's own kernel is attached the same way at start (C `dom0_init`).
 *
 * xenstored runs in the host process, which is dom0 user space: its ports are dom0's, bound to
 * dom0's vCPU 1, whose upcall loop runs on this thread (dom0's kernel, in its worker, is vCPU 0).
 */

import type { Hypervisor } from "../hv/hypervisor.ts";
import type { EventChannelUpcall } from "../kernel/evtchn.ts";
import { GNTMAP, GNTST, GNTTAB_RESERVED } from "../xen/grant-table-abi.ts";
import { pageBytes } from "../xen/xen.ts";
import type { XenStoreCore } from "../xenstore/core.ts";
import type { Connection, DomainHooks } from "../xenstore/daemon.ts";
import { RingServer } from "../xenstore/transport-ring.ts";

interface Ring {
  readonly server: RingServer;
  /** Dom0's end of the domain's XenStore event channel. */
  port: number;
  readonly handle: number;
}

export class XenstoredDomains implements DomainHooks {
  readonly #hv: Hypervisor;
  readonly #vcpu: EventChannelUpcall;
  readonly #rings = new Map<number, Ring>();
  #core: XenStoreCore | null = null;

  /** `vcpu`: dom0's vCPU 1, whose loop the caller runs on this thread. */
  constructor(hv: Hypervisor, vcpu: EventChannelUpcall) {
    this.#hv = hv;
    this.#vcpu = vcpu;
  }

  /** The core whose hooks these are (it is built with them, so it comes second). */
  attach(core: XenStoreCore): void {
    this.#core = core;
  }

  /** Connects dom0's kernel through its own ring, as xenstored's dom0_init does. */
  attachDom0(): Connection {
    const info = this.#hv.info(0);
    if (info === undefined) throw new Error("Cannot attach dom0's ring: no dom0");
    const conn = this.#attach(0, info.store.port);
    if (conn === null) throw new Error("Cannot attach dom0's ring: mapping or binding failed");
    this.#core!.attachDom0(conn, String(info.store.gfn), info.store.port);
    return conn;
  }

  /** The rings attached now, by domid (for the live view and tests). */
  get attached(): number[] {
    return [...this.#rings.keys()];
  }

  introduce(domid: number, _gfn: string, port: number): Connection | null {
    // A domain the hypervisor does not run (a tool introducing a made-up domid) has no ring,
    // as the socket-only daemon does.
    if (this.#hv.info(domid) === undefined) return null;
    return this.#attach(domid, port);
  }

  reintroduce(domid: number, port: number): void {
    const r = this.#rings.get(domid);
    if (r === undefined) return;
    if (port !== 0) {
      const local = this.#bind(domid, port);
      if (local >= 0) {
        this.#vcpu.unbind(r.port);
        this.#hv.events.close(0, r.port);
        r.port = local;
        this.#vcpu.bind(local, () => r.server.onKick());
      }
    }
    r.server.introduced();
  }

  release(domid: number): void {
    const r = this.#rings.get(domid);
    if (r === undefined) return;
    this.#rings.delete(domid);
    r.server.detach();
    this.#vcpu.unbind(r.port);
    this.#hv.events.close(0, r.port);
    this.#hv.grants.unmapGrantRef(0, r.handle);
  }

  #attach(domid: number, port: number): Connection | null {
    const core = this.#core;
    if (core === null) throw new Error("XenstoredDomains: attach(core) first");
    const map = this.#hv.grants.mapGrantRef(0, {
      flags: GNTMAP.host_map,
      ref: GNTTAB_RESERVED.xenstore,
      dom: domid,
    });
    if (map.status !== GNTST.okay) {
      core.log.warn({ domid, status: map.status }, `cannot map the XenStore page of domain ${domid}`);
      return null;
    }
    const local = this.#bind(domid, port);
    if (local < 0) {
      this.#hv.grants.unmapGrantRef(0, map.handle);
      core.log.warn({ domid, port, errno: -local }, `cannot bind the XenStore port of domain ${domid}`);
      return null;
    }
    const conn = core.connectDomain(domid);
    const r: Ring = {
      handle: map.handle,
      port: local,
      server: new RingServer({
        core,
        conn,
        page: pageBytes(map.page),
        notify: () => this.#vcpu.send(r.port),
      }),
    };
    this.#rings.set(domid, r);
    this.#vcpu.bind(local, () => r.server.onKick());
    // Requests the guest queued before we bound are read now, not at its next kick.
    r.server.onKick();
    return conn;
  }

  /** Binds `domid`'s unbound `port` to a new port of dom0 on vCPU 1. */
  #bind(domid: number, port: number): number {
    const local = this.#hv.events.bindInterdomain(0, domid, port);
    if (local < 0) return local;
    this.#hv.events.bindVcpu(0, local, 1);
    return local;
  }
}
