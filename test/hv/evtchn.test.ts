/**
 * Event channels: the hypervisor's operations with Xen's rules and errno values, the 2-level bits
 * (pending, mask, selector, upcall) as a guest sees them, and two workers ping-ponging through real
 * event memory. Counts only; no timings.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import { EventChannels } from "../../src/hv/evtchn.ts";
import { EventChannelUpcall } from "../../src/kernel/evtchn.ts";
import {
  type DomainEventsBoot,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHN_LAYOUT,
  EVTCHNSTAT,
  XEN_ERRNO,
} from "../../src/xen/evtchn-abi.ts";
import { DOMID_SELF } from "../../src/xen/xen.ts";
import type { PeerData, PeerResult } from "./fixtures/evtchn-peer.ts";

const { EPERM, ENOENT, ESRCH, EEXIST, EINVAL, ENOSPC } = XEN_ERRNO;

/** A hypervisor with dom0 (privileged) and domains 1 and 2, each with a guest on this thread. */
function setup(): {
  ev: EventChannels;
  boots: Map<number, DomainEventsBoot>;
  g: (d: number) => EventChannelUpcall;
} {
  const ev = new EventChannels();
  const boots = new Map<number, DomainEventsBoot>();
  const guests = new Map<number, EventChannelUpcall>();
  boots.set(0, ev.addDomain(0, { privileged: true }));
  boots.set(1, ev.addDomain(1));
  boots.set(2, ev.addDomain(2));
  const g = (d: number): EventChannelUpcall => {
    let u = guests.get(d);
    if (u === undefined) {
      u = new EventChannelUpcall(boots.get(d)!);
      guests.set(d, u);
    }
    return u;
  };
  return { ev, boots, g };
}

/** Domain 1 offers a port to 2 and 2 binds it: [port in 1, port in 2]. */
function connect(ev: EventChannels, a = 1, b = 2): [number, number] {
  const pa = ev.allocUnbound(a, DOMID_SELF, b);
  assert.ok(pa > 0);
  const pb = ev.bindInterdomain(b, a, pa);
  assert.ok(pb > 0);
  return [pa, pb];
}

function wakeWord(boot: DomainEventsBoot): number {
  return Atomics.load(new Int32Array(boot.events), EVTCHN_LAYOUT.wake / 4);
}

function selector(boot: DomainEventsBoot): bigint {
  return new BigUint64Array(boot.events, EVTCHN_LAYOUT.pendingSel, 1)[0]!;
}

/** Record the ports whose handlers run. */
function recorder(u: EventChannelUpcall, ...ports: number[]): number[] {
  const seen: number[] = [];
  for (const p of ports) u.bind(p, (port) => seen.push(port));
  return seen;
}

describe("EventChannels.allocUnbound()", () => {
  it("hands out the lowest free port above 0, unbound and accepting the remote domain", () => {
    const { ev } = setup();
    assert.equal(ev.allocUnbound(1, DOMID_SELF, 2), 1);
    assert.equal(ev.allocUnbound(1, 1, 0), 2);
    assert.deepEqual(ev.status(1, DOMID_SELF, 1), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 2 });
    assert.equal(ev.close(1, 1), 0);
    assert.equal(ev.allocUnbound(1, DOMID_SELF, 2), 1, "a closed port is reused");
  });

  it("takes DOMID_SELF as remote_dom to mean the caller (loopback)", () => {
    const { ev } = setup();
    const p = ev.allocUnbound(1, DOMID_SELF, DOMID_SELF);
    assert.deepEqual(ev.status(1, 1, p), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 1 });
  });

  it("refuses another domain's port to an unprivileged caller with -EPERM", () => {
    const { ev } = setup();
    assert.equal(ev.allocUnbound(1, 2, 1), -EPERM);
  });

  it("lets a privileged caller allocate in another domain", () => {
    const { ev } = setup();
    const p = ev.allocUnbound(0, 2, 1);
    assert.ok(p > 0);
    assert.deepEqual(ev.status(0, 2, p), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 1 });
    assert.deepEqual(ev.status(2, DOMID_SELF, p), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 1 });
  });

  it("returns -ESRCH for an unknown domain, and accepts a remote that does not exist yet (as Xen)", () => {
    const { ev } = setup();
    assert.equal(ev.allocUnbound(0, 9, 1), -ESRCH);
    assert.equal(ev.allocUnbound(9, DOMID_SELF, 1), -ESRCH);
    assert.ok(ev.allocUnbound(1, DOMID_SELF, 9) > 0);
  });

  it("returns -ENOSPC once all 4095 ports are in use", () => {
    const { ev } = setup();
    for (let i = 1; i < EVTCHN_2L_NR_CHANNELS; i++) assert.equal(ev.allocUnbound(1, DOMID_SELF, 2), i);
    assert.equal(ev.allocUnbound(1, DOMID_SELF, 2), -ENOSPC);
    assert.equal(ev.bindIpi(1), -ENOSPC);
  });
});

describe("EventChannels.bindInterdomain()", () => {
  it("connects both ends", () => {
    const { ev } = setup();
    const [pa, pb] = connect(ev);
    assert.deepEqual(ev.status(1, 1, pa), { status: EVTCHNSTAT.interdomain, vcpu: 0, dom: 2, port: pb });
    assert.deepEqual(ev.status(2, 2, pb), { status: EVTCHNSTAT.interdomain, vcpu: 0, dom: 1, port: pa });
  });

  it("sets the new local port pending at once, with its selector bit and upcall_pending", () => {
    const { ev, boots, g } = setup();
    const before = wakeWord(boots.get(2)!);
    const [pa, pb] = connect(ev);
    assert.equal(ev.isPending(2, pb), true);
    assert.equal(ev.isPending(1, pa), false, "the remote end is not");
    assert.equal(g(2).upcallPending, true);
    assert.equal(selector(boots.get(2)!), 1n << BigInt(pb >> 6));
    assert.equal(wakeWord(boots.get(2)!), before + 1, "the domain was kicked");
    const seen = recorder(g(2), pb);
    assert.equal(g(2).upcall(), 1);
    assert.deepEqual(seen, [pb]);
  });

  it("returns -EINVAL unless the remote port is unbound and accepting the caller", () => {
    const { ev } = setup();
    const offered = ev.allocUnbound(1, DOMID_SELF, 0);
    assert.equal(ev.bindInterdomain(2, 1, offered), -EINVAL, "offered to dom0, not to 2");
    const [pa] = connect(ev);
    assert.equal(ev.bindInterdomain(2, 1, pa), -EINVAL, "already bound");
    assert.equal(ev.bindInterdomain(2, 1, 77), -EINVAL, "free");
    assert.equal(ev.bindInterdomain(2, 1, 0), -EINVAL, "port 0");
    assert.equal(ev.bindInterdomain(2, 1, EVTCHN_2L_NR_CHANNELS), -EINVAL, "out of range");
    const ipi = ev.bindIpi(1);
    assert.equal(ev.bindInterdomain(2, 1, ipi), -EINVAL, "an IPI port");
    assert.equal(ev.bindInterdomain(0, 1, offered) > 0, true, "the domain it was offered to may bind it");
  });

  it("returns -ESRCH for an unknown remote domain", () => {
    const { ev } = setup();
    assert.equal(ev.bindInterdomain(2, 9, 1), -ESRCH);
  });

  it("connects a domain to itself with DOMID_SELF", () => {
    const { ev, g } = setup();
    const p = ev.allocUnbound(1, DOMID_SELF, DOMID_SELF);
    const q = ev.bindInterdomain(1, DOMID_SELF, p);
    assert.deepEqual(ev.status(1, 1, q), { status: EVTCHNSTAT.interdomain, vcpu: 0, dom: 1, port: p });
    const seen = recorder(g(1), p, q);
    g(1).upcall();
    assert.deepEqual(seen, [q]);
    assert.equal(g(1).send(q), 0);
    assert.equal(g(1).send(p), 0);
    g(1).upcall();
    assert.deepEqual(seen, [q, p, q]);
  });
});

describe("EventChannelUpcall.send()", () => {
  it("sets the peer's port pending and kicks the peer once while it stays pending", () => {
    const { ev, boots, g } = setup();
    const [pa, pb] = connect(ev);
    g(2).upcall();
    const w = wakeWord(boots.get(2)!);
    assert.equal(g(1).send(pa), 0);
    assert.equal(ev.isPending(2, pb), true);
    assert.equal(wakeWord(boots.get(2)!), w + 1);
    assert.equal(g(1).send(pa), 0);
    assert.equal(wakeWord(boots.get(2)!), w + 1, "already pending: no second kick");
    const seen = recorder(g(2), pb);
    assert.equal(g(2).upcall(), 1);
    assert.deepEqual(seen, [pb], "two sends while pending are one event");
    assert.equal(g(2).send(pb), 0);
    assert.equal(ev.isPending(1, pa), true, "and back");
  });

  it("drops an event sent on an unbound port", () => {
    const { ev, boots } = setup();
    const p = ev.allocUnbound(1, DOMID_SELF, 2);
    const w1 = wakeWord(boots.get(1)!);
    const w2 = wakeWord(boots.get(2)!);
    const g1 = new EventChannelUpcall(boots.get(1)!);
    assert.equal(g1.send(p), 0);
    assert.equal(ev.isPending(1, p), false);
    assert.equal(wakeWord(boots.get(1)!), w1);
    assert.equal(wakeWord(boots.get(2)!), w2);
    assert.equal(ev.send(1, p), 0, "through the hypervisor too");
  });

  it("returns -EINVAL for a free port, port 0, a port out of range and a virq port", () => {
    const { ev, g } = setup();
    const v = ev.bindVirq(1, 0);
    for (const u of [g(1)]) {
      assert.equal(u.send(5), -EINVAL);
      assert.equal(u.send(0), -EINVAL);
      assert.equal(u.send(EVTCHN_2L_NR_CHANNELS), -EINVAL);
      assert.equal(u.send(-1), -EINVAL);
      assert.equal(u.send(v), -EINVAL);
    }
    assert.equal(ev.send(1, 5), -EINVAL);
    assert.equal(ev.send(1, v), -EINVAL);
    assert.equal(ev.send(1, EVTCHN_2L_NR_CHANNELS), -EINVAL);
  });

  it("notifies the domain itself on an IPI port", () => {
    const { ev, g } = setup();
    const p = ev.bindIpi(1);
    const seen = recorder(g(1), p);
    assert.equal(g(1).send(p), 0);
    assert.equal(g(1).upcall(), 1);
    assert.equal(ev.send(1, p), 0);
    assert.equal(g(1).upcall(), 1);
    assert.deepEqual(seen, [p, p]);
  });

  it("sends on the sender's own port table only: the same port number in another domain is its own", () => {
    const { ev, g } = setup();
    const [pa, pb] = connect(ev);
    assert.equal(pa, pb, "both are port 1");
    const other = ev.allocUnbound(0, DOMID_SELF, 1);
    assert.ok(other > 0);
    // Domain 2 sends on its port 1: it reaches domain 1's port 1 and nothing of dom0.
    assert.equal(g(2).send(pb), 0);
    assert.equal(ev.isPending(1, pa), true);
    assert.equal(ev.isPending(0, other), false);
  });

  it("the hypervisor's send() sets the same bits", () => {
    const { ev, g } = setup();
    const [pa, pb] = connect(ev);
    g(2).upcall();
    assert.equal(ev.send(1, pa), 0);
    assert.equal(g(2).upcallPending, true);
    assert.equal(ev.isPending(2, pb), true);
  });
});

describe("EventChannels.close()", () => {
  it("reverts the peer's end to unbound, still accepting the closer, which can bind it again", () => {
    const { ev, g } = setup();
    const [pa, pb] = connect(ev);
    assert.equal(ev.close(1, pa), 0);
    assert.deepEqual(ev.status(1, 1, pa), { status: EVTCHNSTAT.closed, vcpu: 0 });
    assert.deepEqual(ev.status(2, 2, pb), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 1 });
    g(1).upcall();
    assert.equal(g(2).send(pb), 0, "sending on the reverted end is dropped");
    assert.equal(g(1).upcallPending, false);
    const again = ev.bindInterdomain(1, 2, pb);
    assert.ok(again > 0);
    assert.deepEqual(ev.status(2, 2, pb), { status: EVTCHNSTAT.interdomain, vcpu: 0, dom: 1, port: again });
  });

  it("clears the closed port's pending bit", () => {
    const { ev } = setup();
    const [, pb] = connect(ev);
    assert.equal(ev.isPending(2, pb), true);
    assert.equal(ev.close(2, pb), 0);
    assert.equal(ev.isPending(2, pb), false);
  });

  it("returns -EINVAL for a free port, port 0 and a port out of range", () => {
    const { ev } = setup();
    assert.equal(ev.close(1, 3), -EINVAL);
    assert.equal(ev.close(1, 0), -EINVAL);
    assert.equal(ev.close(1, EVTCHN_2L_NR_CHANNELS), -EINVAL);
    const p = ev.allocUnbound(1, DOMID_SELF, 2);
    assert.equal(ev.close(1, p), 0);
    assert.equal(ev.close(1, p), -EINVAL, "closing twice");
  });

  it("closes only the caller's own ports", () => {
    const { ev } = setup();
    const p = ev.allocUnbound(1, DOMID_SELF, 2);
    assert.equal(ev.close(2, p), -EINVAL, "port p of domain 2 is free");
    assert.equal(ev.close(0, p), -EINVAL, "even for dom0: close acts on the caller's table");
    assert.deepEqual(ev.status(1, 1, p), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 2 });
  });
});

describe("EventChannels.status()", () => {
  it("reports port 0 and free ports as closed, and rejects ports out of range", () => {
    const { ev } = setup();
    assert.deepEqual(ev.status(1, DOMID_SELF, 0), { status: EVTCHNSTAT.closed, vcpu: 0 });
    assert.deepEqual(ev.status(1, DOMID_SELF, 9), { status: EVTCHNSTAT.closed, vcpu: 0 });
    assert.equal(ev.status(1, DOMID_SELF, EVTCHN_2L_NR_CHANNELS), -EINVAL);
    assert.equal(ev.status(1, 9, 1), -ESRCH);
  });

  it("shows another domain's ports to a privileged caller only", () => {
    const { ev } = setup();
    const [pa] = connect(ev);
    assert.equal(ev.status(2, 1, pa), -EPERM);
    assert.equal((ev.status(0, 1, pa) as { status: number }).status, EVTCHNSTAT.interdomain);
  });
});

describe("masking", () => {
  it("keeps a masked port pending without an upcall, and unmask delivers it", () => {
    const { ev, boots, g } = setup();
    const [pa, pb] = connect(ev);
    const seen = recorder(g(2), pb);
    g(2).upcall();
    g(2).mask(pb);
    assert.equal(g(2).isMasked(pb), true);
    const w = wakeWord(boots.get(2)!);
    g(1).send(pa);
    g(1).send(pa);
    assert.equal(ev.isPending(2, pb), true, "the event is kept");
    assert.equal(g(2).upcallPending, false, "but not delivered");
    assert.equal(selector(boots.get(2)!), 0n);
    assert.equal(wakeWord(boots.get(2)!), w);
    g(2).unmask(pb);
    assert.equal(g(2).upcallPending, true);
    assert.equal(wakeWord(boots.get(2)!), w + 1, "unmask kicks");
    assert.equal(g(2).block(0), 1);
    assert.deepEqual(seen, [pb, pb], "two sends while masked are one event");
  });

  it("masking while the selector is set holds the port back in the upcall", () => {
    const { ev, g } = setup();
    const [pa, pb] = connect(ev);
    const seen = recorder(g(2), pb);
    g(2).upcall();
    g(1).send(pa);
    g(2).mask(pb);
    assert.equal(g(2).upcall(), 0);
    assert.deepEqual(seen, [pb]);
    assert.equal(ev.isPending(2, pb), true, "still pending after the upcall");
    assert.equal(ev.unmask(2, pb), 0, "the hypercall does the same as the local unmask");
    assert.equal(g(2).upcall(), 1);
    assert.deepEqual(seen, [pb, pb]);
  });

  it("unmask of a port that is not pending delivers nothing; EVTCHNOP_unmask range-checks", () => {
    const { ev, g } = setup();
    g(1).mask(7);
    g(1).unmask(7);
    assert.equal(g(1).upcallPending, false);
    assert.equal(ev.unmask(1, EVTCHN_2L_NR_CHANNELS), -EINVAL);
    assert.equal(ev.unmask(9, 1), -ESRCH);
    assert.throws(() => g(1).mask(EVTCHN_2L_NR_CHANNELS), RangeError);
  });
});

describe("EventChannelUpcall.upcall()", () => {
  /** Many IPI ports in domain 1, up to and past `last`. */
  function ipis(ev: EventChannels, last: number): void {
    for (let p = 1; p <= last; p++) assert.equal(ev.bindIpi(1), p);
  }

  it("runs handlers in port order across both selector halves and the sign bits of the words", () => {
    const { ev, boots, g } = setup();
    ipis(ev, 4095);
    const ports = [4095, 2048, 2047, 64, 63, 31, 32, 1];
    const seen = recorder(g(1), ...ports);
    for (const p of ports) g(1).send(p);
    assert.equal(
      selector(boots.get(1)!),
      (1n << 63n) | (1n << 32n) | (1n << 31n) | (1n << 1n) | 1n,
      "words 63, 32, 31, 1 and 0",
    );
    assert.equal(g(1).upcall(), ports.length);
    assert.deepEqual(
      seen,
      [...ports].sort((a, b) => a - b),
    );
    assert.equal(selector(boots.get(1)!), 0n);
    assert.equal(g(1).upcallPending, false);
    for (const p of ports) assert.equal(g(1).isPending(p), false);
  });

  it("clears the pending bit before the handler, so an event sent from the handler is not lost", () => {
    const { ev, g } = setup();
    const p = ev.bindIpi(1);
    let runs = 0;
    g(1).bind(p, () => {
      assert.equal(g(1).isPending(p), false);
      if (++runs < 3) g(1).send(p);
    });
    g(1).send(p);
    assert.equal(g(1).upcall(), 3, "the upcall loops while upcall_pending is set again");
  });

  it("consumes events on ports without a handler", () => {
    const { ev, g } = setup();
    const p = ev.bindIpi(1);
    g(1).send(p);
    assert.equal(g(1).upcall(), 1);
    assert.equal(g(1).isPending(p), false);
  });

  it("runs the other handlers when one throws, then throws its error, or hands it to onError", () => {
    const { ev, boots } = setup();
    const a = ev.bindIpi(1);
    const b = ev.bindIpi(1);
    const u = new EventChannelUpcall(boots.get(1)!);
    const seen: number[] = [];
    u.bind(a, () => {
      throw new Error("boom");
    });
    u.bind(b, (p) => seen.push(p));
    u.send(a);
    u.send(b);
    assert.throws(() => u.upcall(), /boom/);
    assert.deepEqual(seen, [b]);
    const errors: number[] = [];
    const v = new EventChannelUpcall(boots.get(1)!, { onError: (_e, p) => errors.push(p) });
    v.bind(a, () => {
      throw new Error("boom");
    });
    v.send(a);
    assert.equal(v.upcall(), 1);
    assert.deepEqual(errors, [a]);
  });
});

describe("virtual IRQs and IPIs", () => {
  it("binds a virq once, raises it, and frees it on close", () => {
    const { ev, g } = setup();
    const p = ev.bindVirq(1, 0);
    assert.deepEqual(ev.status(1, 1, p), { status: EVTCHNSTAT.virq, vcpu: 0, virq: 0 });
    assert.equal(ev.bindVirq(1, 0), -EEXIST);
    const seen = recorder(g(1), p);
    assert.equal(ev.raiseVirq(1, 0), true);
    assert.equal(ev.raiseVirq(1, 1), false, "not bound");
    g(1).upcall();
    assert.deepEqual(seen, [p]);
    assert.equal(ev.close(1, p), 0);
    assert.ok(ev.bindVirq(1, 0) > 0);
  });

  it("checks the virq and vCPU numbers", () => {
    const { ev } = setup();
    assert.equal(ev.bindVirq(1, 24), -EINVAL);
    assert.equal(ev.bindVirq(1, -1), -EINVAL);
    assert.equal(ev.bindVirq(1, 3, 1), -EINVAL, "a global virq on vCPU 1");
    assert.equal(ev.bindVirq(1, 0, 1), -ENOENT, "a per-vCPU virq on a vCPU that does not exist");
    assert.equal(ev.bindVirq(1, 7, 1), -ENOENT, "VIRQ_XENOPROF is per vCPU");
    assert.equal(ev.bindVirq(1, 13, 1), -ENOENT, "VIRQ_XENPMU is per vCPU");
    assert.equal(ev.bindVirq(1, 5, 1), -EINVAL, "5 is no VIRQ of xen.h: global, as Xen's virq_is_global()");
    assert.equal(ev.bindIpi(1, 1), -ENOENT);
    assert.deepEqual(ev.status(1, 1, ev.bindIpi(1)), { status: EVTCHNSTAT.ipi, vcpu: 0 });
  });
});

describe("EventChannels.destroyDomain()", () => {
  it("closes every port of the domain; its peers see their ends revert to unbound", () => {
    const { ev } = setup();
    const [, pb] = connect(ev, 1, 2);
    const [, p0] = connect(ev, 1, 0);
    const offeredTo1 = ev.allocUnbound(2, DOMID_SELF, 1);
    assert.equal(ev.destroyDomain(1), 0);
    assert.deepEqual(ev.status(2, 2, pb), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 1 });
    assert.deepEqual(ev.status(0, 0, p0), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 1 });
    assert.deepEqual(ev.status(2, 2, offeredTo1), { status: EVTCHNSTAT.unbound, vcpu: 0, dom: 1 });
    assert.equal(ev.hasDomain(1), false);
    assert.equal(ev.allocUnbound(1, DOMID_SELF, 2), -ESRCH);
    assert.equal(ev.send(1, 1), -ESRCH);
    assert.equal(ev.destroyDomain(1), -ESRCH);
  });

  it("a reused domid is a new domain: a peer's sends reach the new event memory", () => {
    const { ev, boots, g } = setup();
    const [pa, pb] = connect(ev);
    g(2).send(pb); // domain 2 now holds the first domain 1's event memory
    assert.equal(ev.isPending(1, pa), true);
    ev.destroyDomain(1);
    const boot = ev.addDomain(1);
    assert.notEqual(boot.serial, boots.get(1)!.serial);
    const fresh = new EventChannelUpcall(boot);
    const q = ev.bindInterdomain(1, 2, pb);
    assert.ok(q > 0);
    fresh.upcall();
    assert.equal(g(2).send(pb), 0);
    assert.equal(fresh.upcallPending, true);
    assert.equal(fresh.isPending(q), true);
  });

  it("rejects a domid in use or out of range", () => {
    const { ev } = setup();
    assert.throws(() => ev.addDomain(1), RangeError);
    assert.throws(() => ev.addDomain(DOMID_SELF), RangeError);
  });
});

describe("EventChannelUpcall waiting", () => {
  it("block() returns 0 after its timeout, and at once when an upcall is pending", () => {
    const { ev, g } = setup();
    const p = ev.bindIpi(1);
    assert.equal(g(1).block(1), 0);
    g(1).send(p);
    assert.equal(g(1).block(60_000), 1);
  });

  it("block() sleeps on after a kick that finds nothing to handle", async () => {
    const { ev, boots, g } = setup();
    const p = ev.bindIpi(1);
    const seen = recorder(g(1), p);
    // Another thread kicks with nothing pending (as a sender preempted between setting
    // upcall_pending and bumping the wake word does), then sends for real.
    const kicker = new Worker(
      `const { workerData: { sab, port } } = require("node:worker_threads");
       const w = new Int32Array(sab), u8 = new Uint8Array(sab), nap = new Int32Array(new SharedArrayBuffer(4));
       Atomics.wait(nap, 0, 0, 30);
       Atomics.add(w, ${EVTCHN_LAYOUT.wake / 4}, 1); Atomics.notify(w, ${EVTCHN_LAYOUT.wake / 4});
       Atomics.wait(nap, 0, 0, 30);
       Atomics.or(w, ${EVTCHN_LAYOUT.pending / 4} + (port >> 5), 1 << (port & 31));
       Atomics.or(w, ${EVTCHN_LAYOUT.pendingSel / 4}, 1 << (port >> 6));
       Atomics.store(u8, 0, 1);
       Atomics.add(w, ${EVTCHN_LAYOUT.wake / 4}, 1); Atomics.notify(w, ${EVTCHN_LAYOUT.wake / 4});`,
      { eval: true, workerData: { sab: boots.get(1)!.events, port: p } },
    );
    const exited = new Promise((res) => kicker.once("exit", res));
    assert.equal(g(1).block(10_000), 1);
    assert.deepEqual(seen, [p]);
    await exited;
  });

  it("the async loop runs handlers on events and stop() ends it", async () => {
    const { ev, g } = setup();
    const p = ev.bindIpi(1);
    const seen: number[] = [];
    let wake: () => void = () => {};
    g(1).bind(p, (port) => {
      seen.push(port);
      wake();
    });
    void g(1).start();
    for (let i = 1; i <= 3; i++) {
      const got = new Promise<void>((res) => {
        wake = res;
      });
      g(1).send(p);
      await got;
    }
    await g(1).stop();
    assert.deepEqual(seen, [p, p, p]);
    g(1).send(p);
    await new Promise((res) => setTimeout(res, 5));
    assert.equal(seen.length, 3, "stopped");
    assert.equal(g(1).upcall(), 1);
  });

  it("delivers events after a restart right after stop()", async () => {
    const { ev, g } = setup();
    const p = ev.bindIpi(1);
    let runs = 0;
    let wake: () => void = () => {};
    g(1).bind(p, () => {
      runs++;
      wake();
    });
    void g(1).start();
    const stopped = g(1).stop();
    void g(1).start();
    await stopped;
    const got = new Promise<void>((res) => {
      wake = res;
    });
    g(1).send(p);
    await got;
    await new Promise((res) => setTimeout(res, 5));
    assert.equal(runs, 1);
    await g(1).stop();
  });

  it("the async loop ends with a handler's error when there is no onError", async () => {
    const { ev, g } = setup();
    const p = ev.bindIpi(1);
    g(1).bind(p, () => {
      throw new Error("boom");
    });
    const loop = g(1).start();
    g(1).send(p);
    await assert.rejects(loop, /boom/);
    await g(1).stop();
  });
});

describe("two domains in two workers", () => {
  const TIMEOUT_MS = 10_000;
  const COUNT = 3000;

  function boot(data: PeerData): Worker {
    // Workers do not inherit tsx's hooks on Node 20: register them in the worker, then load the peer.
    const peer = new URL("./fixtures/evtchn-peer.ts", import.meta.url).href;
    const code = `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))})
      .then(({ register }) => { register(); return import(${JSON.stringify(peer)}); });`;
    return new Worker(code, { eval: true, workerData: data, transferList: [data.boot.peers] });
  }

  async function pingPong(ping: "block" | "async", pong: "block" | "async"): Promise<void> {
    const ev = new EventChannels();
    const a = ev.addDomain(1);
    const b = ev.addDomain(2);
    const [pa, pb] = connect(ev);
    const wa = boot({ boot: a, role: "ping", wait: ping, port: pa, count: COUNT, timeoutMs: TIMEOUT_MS });
    const wb = boot({ boot: b, role: "pong", wait: pong, port: pb, count: COUNT, timeoutMs: TIMEOUT_MS });
    const msgs = (w: Worker): (() => Promise<unknown>) => {
      const queue: unknown[] = [];
      const waiters: ((m: unknown) => void)[] = [];
      w.on("message", (m: unknown) => {
        const r = waiters.shift();
        if (r) r(m);
        else queue.push(m);
      });
      return () =>
        new Promise((res, rej) => {
          if (queue.length > 0) res(queue.shift());
          else waiters.push(res);
          w.once("error", rej);
        });
    };
    const na = msgs(wa);
    const nb = msgs(wb);
    try {
      assert.deepEqual(await na(), { ready: true });
      assert.deepEqual(await nb(), { ready: true });
      wb.postMessage("go");
      wa.postMessage("go");
      const [ra, rb] = (await Promise.all([na(), nb()])) as [PeerResult, PeerResult];
      assert.ok(ra.ok && rb.ok, `ping: ${JSON.stringify(ra)}, pong: ${JSON.stringify(rb)}`);
      assert.deepEqual([ra.sends, ra.events], [COUNT, COUNT]);
      assert.deepEqual([rb.events, rb.sends], [COUNT, COUNT]);
    } finally {
      await Promise.all([wa.terminate(), wb.terminate()]);
    }
  }

  it(`ping-pong ${COUNT} notifications with block() on both sides, losing no wake-up`, async () => {
    await pingPong("block", "block");
  });

  it(`ping-pong ${COUNT} notifications with the async loop on both sides`, async () => {
    await pingPong("async", "async");
  });

  it(`ping-pong ${COUNT} notifications with block() against the async loop`, async () => {
    await pingPong("block", "async");
  });
});
