/**
 * Event channels with more than one vCPU per domain: boot records per vCPU, EVTCHNOP_bind_vcpu
 * with Xen 4.17's rules and errno values, each event reaching only the vCPU its port is bound to
 * (and not lost when the port moves while pending), the event memory's vcpu_info slots against
 * Xen's xen.h, and dom0's two threads (a worker on vCPU 0, the main thread on vCPU 1) receiving
 * from a peer domain's worker at once. Counts only; no timings.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { Worker } from "node:worker_threads";
import { EventChannels } from "../../src/hv/evtchn.ts";
import { EventChannelUpcall } from "../../src/kernel/evtchn.ts";
import { spawnWorker } from "../../src/lib/spawn.ts";
import {
  type DomainEventsBoot,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHN_LAYOUT,
  EVTCHN_MAX_VCPUS,
  EVTCHNSTAT,
  XEN_ERRNO,
} from "../../src/xen/evtchn-abi.ts";
import { DOMID_SELF } from "../../src/xen/xen.ts";
import { hasCommand, requirePeer, tempDir } from "../helpers/peers.ts";
import type { VcpuPeerData, VcpuPeerResult } from "./fixtures/evtchn-vcpu-peer.ts";

const { ENOENT, ESRCH, EEXIST, EINVAL } = XEN_ERRNO;
const VIRQ_TIMER = 0; // per vCPU
const VIRQ_DOM_EXC = 3; // global

/**
 * dom0 (privileged, 2 vCPUs), domain 1 (2 vCPUs) and domain 2 (1 vCPU), each vCPU with a guest on
 * this thread: g(d, v); mem(d) is domain d's event memory.
 */
function setup(): {
  ev: EventChannels;
  g: (d: number, v?: number) => EventChannelUpcall;
  mem: (d: number) => SharedArrayBuffer;
} {
  const ev = new EventChannels();
  const boots = new Map<string, DomainEventsBoot>();
  boots.set("0.0", ev.addDomain(0, { privileged: true, vcpus: 2 }));
  boots.set("0.1", ev.vcpuBoot(0, 1));
  boots.set("1.0", ev.addDomain(1, { vcpus: 2 }));
  boots.set("1.1", ev.vcpuBoot(1, 1));
  boots.set("2.0", ev.addDomain(2));
  const guests = new Map<string, EventChannelUpcall>();
  const g = (d: number, v = 0): EventChannelUpcall => {
    const key = `${d}.${v}`;
    let u = guests.get(key);
    if (u === undefined) {
      u = new EventChannelUpcall(boots.get(key)!);
      guests.set(key, u);
    }
    return u;
  };
  return { ev, g, mem: (d) => boots.get(`${d}.0`)!.events };
}

/** Domain `a` offers a port to `b` and `b` binds it: [port in a, port in b]. */
function connect(ev: EventChannels, a: number, b: number): [number, number] {
  const pa = ev.allocUnbound(a, DOMID_SELF, b);
  assert.ok(pa > 0);
  const pb = ev.bindInterdomain(b, a, pa);
  assert.ok(pb > 0);
  return [pa, pb];
}

function vcpuOf(ev: EventChannels, d: number, port: number): number {
  const s = ev.status(0, d, port);
  assert.equal(typeof s, "object");
  return (s as { vcpu: number }).vcpu;
}

/** Record the ports whose handlers run on `u`. */
function recorder(u: EventChannelUpcall, ...ports: number[]): number[] {
  const seen: number[] = [];
  for (const p of ports) u.bind(p, (port) => seen.push(port));
  return seen;
}

describe("EventChannels.addDomain() and vcpuBoot()", () => {
  it("gives each vCPU a boot record with the domain's memory and a hand-off port of its own", () => {
    const ev = new EventChannels();
    const b0 = ev.addDomain(3, { vcpus: 3 });
    const b2 = ev.vcpuBoot(3, 2);
    const b1 = ev.vcpuBoot(3, 1);
    assert.deepEqual([b0.vcpu, b1.vcpu, b2.vcpu], [0, 1, 2]);
    for (const b of [b1, b2]) {
      assert.equal(b.domid, 3);
      assert.equal(b.serial, b0.serial);
      assert.equal(b.events, b0.events);
      assert.equal(b.ports, b0.ports);
    }
    assert.equal(new Set([b0.peers, b1.peers, b2.peers]).size, 3);
    assert.equal(ev.addDomain(4).vcpu, 0);
    assert.equal(ev.addDomain(5, { vcpus: EVTCHN_MAX_VCPUS }).vcpu, 0);
  });

  it("hands each vCPU's record out once, and only for vCPUs the domain has", () => {
    const ev = new EventChannels();
    ev.addDomain(1, { vcpus: 2 });
    ev.vcpuBoot(1, 1);
    assert.throws(() => ev.vcpuBoot(1, 1), RangeError, "twice");
    assert.throws(() => ev.vcpuBoot(1, 0), RangeError, "vCPU 0 is addDomain's");
    assert.throws(() => ev.vcpuBoot(1, 2), RangeError);
    assert.throws(() => ev.vcpuBoot(1, -1), RangeError);
    assert.throws(() => ev.vcpuBoot(9, 1), RangeError, "no such domain");
  });

  it(`rejects a vCPU count outside 1 to ${EVTCHN_MAX_VCPUS}`, () => {
    const ev = new EventChannels();
    for (const vcpus of [0, EVTCHN_MAX_VCPUS + 1, 1.5, -1]) {
      assert.throws(() => ev.addDomain(1, { vcpus }), RangeError, String(vcpus));
    }
    assert.equal(ev.hasDomain(1), false);
  });

  it("posts a peer's event memory to every vCPU, also to one booted after the hand-off", () => {
    const ev = new EventChannels();
    const d0 = ev.addDomain(0, { vcpus: 2 });
    const d1 = ev.addDomain(1);
    const [p0, p1] = connect(ev, 0, 1);
    const late = ev.vcpuBoot(0, 1); // after connect() posted domain 1's event memory
    const g1 = new EventChannelUpcall(d1);
    g1.upcall();
    assert.equal(new EventChannelUpcall(late).send(p0), 0);
    assert.equal(g1.upcall(), 1, "vCPU 1 reached domain 1");
    assert.equal(new EventChannelUpcall(d0).send(p0), 0);
    assert.equal(g1.upcall(), 1, "and so did vCPU 0");
    assert.ok(p1 > 0);
  });

  it("the guest rejects a boot record with a vCPU out of range", () => {
    const ev = new EventChannels();
    const b = ev.addDomain(1);
    assert.throws(() => new EventChannelUpcall({ ...b, vcpu: EVTCHN_MAX_VCPUS }), RangeError);
  });
});

describe("EventChannels.bindVcpu()", () => {
  /** Domain 1 (2 vCPUs) with a port in each state. */
  function ports(ev: EventChannels): Record<string, number> {
    const unbound = ev.allocUnbound(1, DOMID_SELF, 2);
    const [interdomain] = connect(ev, 1, 2);
    return {
      unbound,
      interdomain,
      ipi0: ev.bindIpi(1, 0),
      ipi1: ev.bindIpi(1, 1),
      timer: ev.bindVirq(1, VIRQ_TIMER, 0),
      domExc: ev.bindVirq(1, VIRQ_DOM_EXC, 0),
      free: 100,
    };
  }

  // [port, vcpu, result, why]; the port by name, or a number. Run in order on one setup.
  const table: [string | number, number, number, string][] = [
    ["unbound", 1, 0, "an unbound port moves"],
    ["interdomain", 1, 0, "an interdomain port moves"],
    ["domExc", 1, 0, "a global virq moves"],
    ["unbound", 1, 0, "to the vCPU it has: nothing to do"],
    ["unbound", 0, 0, "and back"],
    ["ipi0", 1, -EINVAL, "an IPI stays on its vCPU"],
    ["ipi1", 1, -EINVAL, "even when asked for the vCPU it has"],
    ["timer", 1, -EINVAL, "a per-vCPU virq stays on its vCPU"],
    ["timer", 0, -EINVAL, "even when asked for the vCPU it has"],
    ["free", 1, -EINVAL, "a free port"],
    [0, 1, -EINVAL, "port 0 (Xen's reserved port)"],
    [EVTCHN_2L_NR_CHANNELS, 1, -EINVAL, "a port out of range"],
    [-1, 1, -EINVAL, "a negative port"],
    ["unbound", 2, -ENOENT, "a vCPU the domain does not have"],
    [EVTCHN_2L_NR_CHANNELS, 2, -ENOENT, "the vCPU is checked before the port, as in Xen"],
    ["ipi0", 7, -ENOENT, "before the state too"],
    ["unbound", -1, -ENOENT, "a negative vCPU"],
    ["unbound", 0.5, -ENOENT, "a vCPU that is not an integer"],
  ];

  it("follows Xen 4.17's evtchn_bind_vcpu rules and errno values", () => {
    const { ev } = setup();
    const p = ports(ev);
    const expectVcpu = new Map<number, number>([
      [p.unbound!, 0],
      [p.interdomain!, 0],
      [p.ipi0!, 0],
      [p.ipi1!, 1],
      [p.timer!, 0],
      [p.domExc!, 0],
    ]);
    for (const [name, vcpu, want, why] of table) {
      const port = typeof name === "number" ? name : p[name]!;
      assert.equal(ev.bindVcpu(1, port, vcpu), want, `${name} → vCPU ${vcpu}: ${why}`);
      if (want === 0) expectVcpu.set(port, vcpu);
      for (const [q, v] of expectVcpu) assert.equal(vcpuOf(ev, 1, q), v, `status of port ${q} after: ${why}`);
    }
  });

  it("returns -ENOENT for any vCPU but 0 on a domain with one vCPU, and -ESRCH for an unknown caller", () => {
    const { ev } = setup();
    const p = ev.allocUnbound(2, DOMID_SELF, 1);
    assert.equal(ev.bindVcpu(2, p, 1), -ENOENT);
    assert.equal(ev.bindVcpu(2, p, 0), 0);
    assert.equal(ev.bindVcpu(9, p, 0), -ESRCH);
  });

  it("acts on the caller's own ports only", () => {
    const { ev } = setup();
    const p = ev.allocUnbound(1, DOMID_SELF, 2);
    assert.equal(ev.bindVcpu(0, p, 1), -EINVAL, "port p of dom0 is free, even though dom0 is privileged");
    assert.equal(vcpuOf(ev, 1, p), 0);
  });

  it("a freed port goes back to vCPU 0 when it is allocated again", () => {
    const { ev, g } = setup();
    const p = ev.allocUnbound(1, DOMID_SELF, 2);
    assert.equal(ev.bindVcpu(1, p, 1), 0);
    assert.equal(ev.close(1, p), 0);
    assert.deepEqual(ev.status(1, 1, p), { status: EVTCHNSTAT.closed, vcpu: 0 });
    const [again, q] = connect(ev, 1, 2);
    assert.equal(again, p);
    assert.equal(vcpuOf(ev, 1, p), 0);
    assert.equal(g(2).send(q), 0);
    assert.equal(g(1, 0).upcallPending, true, "its events go to vCPU 0");
    assert.equal(g(1, 1).upcallPending, false);
  });

  it("keeps the vCPU of an end that reverts to unbound when its peer closes (as Xen's evtchn_close)", () => {
    const { ev } = setup();
    const [p2, p1] = connect(ev, 2, 1);
    assert.equal(ev.bindVcpu(1, p1, 1), 0);
    assert.equal(ev.close(2, p2), 0);
    assert.deepEqual(ev.status(1, 1, p1), { status: EVTCHNSTAT.unbound, vcpu: 1, dom: 2 });
  });

  it("an unbound port moved before the peer binds it wakes the new vCPU from the first event", () => {
    const { ev, g } = setup();
    const p0 = ev.allocUnbound(0, DOMID_SELF, 2); // as xenstored offers a guest its port
    assert.equal(ev.bindVcpu(0, p0, 1), 0);
    const p2 = ev.bindInterdomain(2, 0, p0);
    assert.deepEqual(ev.status(0, 0, p0), { status: EVTCHNSTAT.interdomain, vcpu: 1, dom: 2, port: p2 });
    const seen = recorder(g(0, 1), p0);
    assert.equal(g(2).send(p2), 0);
    assert.equal(g(0, 0).block(0), 0);
    assert.equal(g(0, 1).block(0), 1);
    assert.deepEqual(seen, [p0]);
  });
});

describe("EventChannels.bindIpi() and bindVirq() on other vCPUs", () => {
  it("bind an IPI to any vCPU the domain has", () => {
    const { ev, g } = setup();
    const p = ev.bindIpi(1, 1);
    assert.deepEqual(ev.status(1, 1, p), { status: EVTCHNSTAT.ipi, vcpu: 1 });
    assert.equal(ev.bindIpi(1, 2), -ENOENT);
    assert.equal(ev.bindIpi(1, -1), -ENOENT);
    const seen = recorder(g(1, 1), p);
    assert.equal(g(1, 0).send(p), 0, "vCPU 0 sends an IPI to vCPU 1");
    assert.equal(g(1, 0).upcallPending, false);
    assert.equal(g(1, 1).block(0), 1);
    assert.deepEqual(seen, [p]);
  });

  it("bind a per-vCPU virq once per vCPU, and raise it on the vCPU named", () => {
    const { ev, g } = setup();
    const t1 = ev.bindVirq(1, VIRQ_TIMER, 1);
    assert.deepEqual(ev.status(1, 1, t1), { status: EVTCHNSTAT.virq, vcpu: 1, virq: VIRQ_TIMER });
    assert.equal(ev.bindVirq(1, VIRQ_TIMER, 1), -EEXIST);
    const t0 = ev.bindVirq(1, VIRQ_TIMER, 0);
    assert.ok(t0 > 0, "vCPU 0 has its own timer");
    assert.equal(ev.bindVirq(1, VIRQ_TIMER, 2), -ENOENT);
    assert.equal(ev.bindVirq(1, VIRQ_DOM_EXC, 1), -EINVAL, "a global virq binds on vCPU 0");
    const seen0 = recorder(g(1, 0), t0);
    const seen1 = recorder(g(1, 1), t1);
    assert.equal(ev.raiseVirq(1, VIRQ_TIMER, 1), true);
    assert.equal(g(1, 0).block(0), 0);
    assert.equal(g(1, 1).block(0), 1);
    assert.equal(ev.raiseVirq(1, VIRQ_TIMER), true);
    assert.equal(g(1, 1).block(0), 0);
    assert.equal(g(1, 0).block(0), 1);
    assert.deepEqual([seen0, seen1], [[t0], [t1]]);
    assert.equal(ev.raiseVirq(1, VIRQ_TIMER, 2), false, "no such vCPU");
    assert.equal(ev.close(1, t1), 0);
    assert.equal(ev.raiseVirq(1, VIRQ_TIMER, 1), false, "closing frees vCPU 1's binding");
    assert.equal(ev.raiseVirq(1, VIRQ_TIMER, 0), true, "and only it");
    assert.ok(ev.bindVirq(1, VIRQ_TIMER, 1) > 0);
  });

  it("raise a global virq on the vCPU its port was moved to", () => {
    const { ev, g } = setup();
    const p = ev.bindVirq(1, VIRQ_DOM_EXC);
    assert.equal(ev.bindVcpu(1, p, 1), 0);
    assert.equal(ev.raiseVirq(1, VIRQ_DOM_EXC), true);
    assert.equal(g(1, 0).block(0), 0);
    assert.equal(g(1, 1).block(0), 1);
    assert.equal(ev.close(1, p), 0);
    assert.equal(ev.raiseVirq(1, VIRQ_DOM_EXC), false);
    assert.ok(ev.bindVirq(1, VIRQ_DOM_EXC) > 0);
  });
});

describe("delivery to the port's vCPU", () => {
  const L = EVTCHN_LAYOUT;

  /** vCPU v's selector, upcall byte and wake word in event memory `mem`. */
  function vcpuBits(mem: SharedArrayBuffer, v: number): { sel: bigint; upcall: number; wake: number } {
    return {
      sel: new BigUint64Array(mem, L.vcpuInfo * v + L.pendingSel, 1)[0]!,
      upcall: new Uint8Array(mem)[L.vcpuInfo * v + L.upcallPending]!,
      wake: Atomics.load(new Int32Array(mem), L.wake / 4 + v),
    };
  }

  it("a port bound to vCPU 1 wakes only vCPU 1's block(), and a port on vCPU 0 only vCPU 0's", () => {
    const { ev, g } = setup();
    const [a1, a2] = connect(ev, 1, 2);
    const [b1, b2] = connect(ev, 1, 2);
    g(1, 0).upcall();
    assert.equal(ev.bindVcpu(1, b1, 1), 0);
    const seen0 = recorder(g(1, 0), a1, b1);
    const seen1 = recorder(g(1, 1), a1, b1);
    assert.equal(g(2).send(b2), 0);
    assert.equal(g(1, 0).upcallPending, false);
    assert.equal(g(1, 0).block(20), 0, "vCPU 0 sleeps through it");
    assert.equal(g(1, 1).block(10_000), 1);
    assert.equal(g(2).send(a2), 0);
    assert.equal(g(1, 1).upcallPending, false);
    assert.equal(g(1, 1).block(20), 0, "vCPU 1 sleeps through it");
    assert.equal(g(1, 0).block(10_000), 1);
    assert.deepEqual([seen0, seen1], [[a1], [b1]]);
  });

  it("sets the selector, upcall byte and wake word of the port's vCPU only", () => {
    const { ev, g, mem } = setup();
    const [p1, p2] = connect(ev, 1, 2);
    g(1, 0).upcall();
    assert.equal(ev.bindVcpu(1, p1, 1), 0);
    assert.equal(new Uint8Array(mem(1))[L.vcpu + p1], 1, "the port's vCPU byte");
    const [w0, w1] = [vcpuBits(mem(1), 0).wake, vcpuBits(mem(1), 1).wake];
    assert.equal(g(2).send(p2), 0);
    assert.deepEqual(vcpuBits(mem(1), 0), { sel: 0n, upcall: 0, wake: w0 });
    assert.deepEqual(vcpuBits(mem(1), 1), { sel: 1n << BigInt(p1 >> 6), upcall: 1, wake: w1 + 1 });
  });

  it("vCPU 0's upcall leaves a pending port of vCPU 1 in the same bitmap word alone", () => {
    const { ev, g } = setup();
    const [a1, a2] = connect(ev, 1, 2);
    const [b1, b2] = connect(ev, 1, 2);
    assert.equal(a1 >> 6, b1 >> 6, "one selector bit covers both");
    g(1, 0).upcall();
    assert.equal(ev.bindVcpu(1, b1, 1), 0);
    const seen0 = recorder(g(1, 0), a1, b1);
    const seen1 = recorder(g(1, 1), a1, b1);
    g(2).send(b2);
    g(2).send(a2);
    assert.equal(g(1, 0).upcall(), 1);
    assert.deepEqual(seen0, [a1]);
    assert.equal(ev.isPending(1, b1), true, "still pending for vCPU 1");
    assert.equal(g(1, 1).upcall(), 1);
    assert.deepEqual(seen1, [b1]);
  });

  it("an unmask from any vCPU, or from the hypervisor, kicks the port's vCPU", () => {
    const { ev, g } = setup();
    const [p1, p2] = connect(ev, 1, 2);
    g(1, 0).upcall();
    assert.equal(ev.bindVcpu(1, p1, 1), 0);
    const seen = recorder(g(1, 1), p1);
    g(1, 0).mask(p1);
    g(2).send(p2);
    assert.equal(g(1, 1).upcallPending, false, "masked");
    g(1, 0).unmask(p1);
    assert.equal(g(1, 0).upcallPending, false);
    assert.equal(g(1, 1).block(10_000), 1);
    g(1, 1).mask(p1);
    g(2).send(p2);
    assert.equal(ev.unmask(1, p1), 0);
    assert.equal(g(1, 0).upcallPending, false);
    assert.equal(g(1, 1).block(10_000), 1);
    assert.deepEqual(seen, [p1, p1]);
  });

  it("an event pending when its port moves is delivered to the new vCPU, once", () => {
    const { ev, g } = setup();
    const [p1, p2] = connect(ev, 1, 2);
    g(1, 0).upcall();
    const seen0 = recorder(g(1, 0), p1);
    const seen1 = recorder(g(1, 1), p1);
    g(2).send(p2);
    assert.equal(g(1, 0).upcallPending, true, "raised on vCPU 0");
    assert.equal(ev.bindVcpu(1, p1, 1), 0);
    assert.equal(g(1, 1).upcallPending, true, "and raised again on vCPU 1");
    assert.equal(g(1, 0).upcall(), 0, "vCPU 0 no longer takes it");
    assert.equal(g(1, 1).block(10_000), 1);
    assert.equal(ev.isPending(1, p1), false);
    // Back to vCPU 0, this time with vCPU 1 still holding its selector bit when the port moves.
    g(2).send(p2);
    assert.equal(ev.bindVcpu(1, p1, 0), 0);
    assert.equal(g(1, 1).upcall(), 0);
    assert.equal(g(1, 0).block(10_000), 1);
    assert.deepEqual([seen0, seen1], [[p1], [p1]]);
  });

  it("an event pending and masked when its port moves waits for the unmask, then goes to the new vCPU", () => {
    const { ev, g } = setup();
    const [p1, p2] = connect(ev, 1, 2);
    g(1, 0).upcall();
    g(1, 0).mask(p1);
    g(2).send(p2);
    assert.equal(ev.bindVcpu(1, p1, 1), 0);
    assert.equal(g(1, 1).upcallPending, false);
    g(1, 0).unmask(p1);
    assert.equal(g(1, 0).block(0), 0);
    assert.equal(g(1, 1).block(10_000), 1);
  });
});

describe("event memory layout against Xen's xen.h (gcc, offsetof)", () => {
  const SOURCE = `#define __XEN_TOOLS__ 1
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <xen/xen.h>
#define OFF(f) printf("%s %zu\\n", #f, offsetof(struct shared_info, f))
int main(void)
{
    printf("sizeof.vcpu_info %zu\\n", sizeof(struct vcpu_info));
    printf("XEN_LEGACY_MAX_VCPUS %d\\n", XEN_LEGACY_MAX_VCPUS);
    OFF(vcpu_info[0].evtchn_upcall_pending);
    OFF(vcpu_info[0].evtchn_upcall_mask);
    OFF(vcpu_info[0].evtchn_pending_sel);
    OFF(vcpu_info[1].evtchn_upcall_pending);
    OFF(vcpu_info[1].evtchn_upcall_mask);
    OFF(vcpu_info[1].evtchn_pending_sel);
    OFF(vcpu_info[${EVTCHN_MAX_VCPUS - 1}].evtchn_pending_sel);
    OFF(evtchn_pending);
    OFF(evtchn_mask);
    printf("sizeof.evtchn_mask %zu\\n", sizeof(((struct shared_info *)0)->evtchn_mask));
    return 0;
}
`;
  const HEADER = "/usr/include/xen/xen.h";

  it("puts vcpu_info[0] and [1], the pending and mask bitmaps where x86_64 Xen does", (t) => {
    if (!requirePeer(t, "gcc and Xen's xen.h (Debian libxen-dev)", hasCommand("gcc") && existsSync(HEADER))) {
      return;
    }
    const dir = tempDir("xenlab-evtchn-layout-");
    let out: string;
    try {
      writeFileSync(join(dir, "layout.c"), SOURCE);
      const bin = join(dir, "layout");
      execFileSync("gcc", ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o", bin, join(dir, "layout.c")], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      out = execFileSync(bin, { encoding: "utf8" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const c = new Map(
      out
        .trim()
        .split("\n")
        .map((l) => l.split(" ") as [string, string]),
    );
    const n = (k: string): number => Number(c.get(k));
    const L = EVTCHN_LAYOUT;
    assert.equal(n("sizeof.vcpu_info"), L.vcpuInfo);
    assert.ok(EVTCHN_MAX_VCPUS <= n("XEN_LEGACY_MAX_VCPUS"));
    for (const v of [0, 1]) {
      assert.equal(n(`vcpu_info[${v}].evtchn_upcall_pending`), L.vcpuInfo * v + L.upcallPending);
      assert.equal(n(`vcpu_info[${v}].evtchn_upcall_mask`), L.vcpuInfo * v + L.upcallMask);
      assert.equal(n(`vcpu_info[${v}].evtchn_pending_sel`), L.vcpuInfo * v + L.pendingSel);
    }
    const last = EVTCHN_MAX_VCPUS - 1;
    assert.equal(n(`vcpu_info[${last}].evtchn_pending_sel`), L.vcpuInfo * last + L.pendingSel);
    assert.equal(n("evtchn_pending"), L.pending);
    assert.equal(n("evtchn_mask"), L.mask);
    assert.ok(L.wake >= n("evtchn_mask") + n("sizeof.evtchn_mask"), "our words come after Xen's");
    assert.ok(L.vcpu >= L.wake + 4 * EVTCHN_MAX_VCPUS, "the vCPU bytes come after the wake words");
    assert.equal(L.size, L.vcpu + EVTCHN_2L_NR_CHANNELS);
  });
});

describe("dom0 on two threads", () => {
  const TIMEOUT_MS = 10_000;
  const COUNT = 2000;

  /** The next message of `w` (its worker errors reject). */
  function messages(w: Worker): () => Promise<unknown> {
    const queue: unknown[] = [];
    const waiters: [(m: unknown) => void, (e: unknown) => void][] = [];
    w.on("message", (m: unknown) => {
      const r = waiters.shift();
      if (r) r[0](m);
      else queue.push(m);
    });
    w.on("error", (e) => {
      for (const [, rej] of waiters.splice(0)) rej(e);
    });
    return () =>
      new Promise((res, rej) => {
        if (queue.length > 0) res(queue.shift());
        else waiters.push([res, rej]);
      });
  }

  function start(data: VcpuPeerData): Worker {
    const entry = new URL("./fixtures/evtchn-vcpu-peer.ts", import.meta.url);
    return spawnWorker(entry, data, [data.boot.peers]);
  }

  it(`a worker on vCPU 0 and the main thread on vCPU 1 (async loop) each answer ${COUNT} events of a peer's worker`, {
    timeout: 60_000,
  }, async () => {
    const ev = new EventChannels();
    const d0v0 = ev.addDomain(0, { privileged: true, vcpus: 2 });
    const d0v1 = ev.vcpuBoot(0, 1);
    const d1 = ev.addDomain(1);
    // dom0 offers domain 1 two ports, one for its kernel (vCPU 0), one for xenstored (vCPU 1).
    const kernel = ev.allocUnbound(0, DOMID_SELF, 1);
    const xenstored = ev.allocUnbound(0, DOMID_SELF, 1);
    assert.equal(ev.bindVcpu(0, xenstored, 1), 0);
    const toKernel = ev.bindInterdomain(1, 0, kernel);
    const toXenstored = ev.bindInterdomain(1, 0, xenstored);
    assert.ok(toKernel > 0 && toXenstored > 0);

    // vCPU 1: this thread, in the async loop.
    const main = new EventChannelUpcall(d0v1);
    let answered = 0;
    let stolen = 0;
    main.bind(xenstored, (p) => {
      answered++;
      assert.equal(main.send(p), 0);
    });
    main.bind(kernel, () => stolen++);
    const loop = main.start();

    const guest = start({
      boot: d1,
      role: "ping",
      ports: [toKernel, toXenstored],
      foreign: [],
      count: COUNT,
      timeoutMs: TIMEOUT_MS,
    });
    const vcpu0 = start({
      boot: d0v0,
      role: "pong",
      ports: [kernel],
      foreign: [xenstored],
      count: COUNT,
      timeoutMs: TIMEOUT_MS,
    });
    const fromGuest = messages(guest);
    const fromVcpu0 = messages(vcpu0);
    try {
      assert.deepEqual(await fromGuest(), { ready: true });
      assert.deepEqual(await fromVcpu0(), { ready: true });
      vcpu0.postMessage("go");
      guest.postMessage("go");
      const [rg, r0] = (await Promise.all([fromGuest(), fromVcpu0()])) as [VcpuPeerResult, VcpuPeerResult];
      assert.ok(rg.ok && r0.ok, `guest: ${JSON.stringify(rg)}, vCPU 0: ${JSON.stringify(r0)}`);
      assert.deepEqual(rg.events, [COUNT, COUNT], "the guest got every answer from both vCPUs");
      assert.deepEqual([r0.events, r0.foreign], [[COUNT], 0], "vCPU 0 took only its own port");
      assert.deepEqual([answered, stolen], [COUNT, 0], "vCPU 1 took only its own port");
    } finally {
      await main.stop();
      await loop;
      await Promise.all([guest.terminate(), vcpu0.terminate()]);
    }
  });
});
