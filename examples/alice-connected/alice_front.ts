/**
 * The alice_dev frontend, connected: on the backend's InitWait it grants a ring page and
 * allocates an event channel, writes `ring-ref` and `event-channel` in one transaction and goes
 * Initialised; on the backend's Connected it goes Connected and sends `pings` requests (module
 * argument, default 8) over the ring; the responses come back on the event channel. When the
 * backend closes, it goes Closed (as Linux's xenbus_frontend_closed) and, once the backend has
 * unmapped the ring, ends the grant.
 *
 * With `every_ms=M` it sends one ping every M ms instead of all at once (`pings=0`: for ever), so
 * a save or migration can happen in the middle of them. Saved and restored (docs/save-restore.md),
 * the device keeps its counts and its old ring's page and grant: `resume` ends that grant and frees
 * the page (the new domain's backend is a new one), and the pings sent but not answered go again
 * on the new ring once Connected. `call(k, "stats")` answers `{ sent, answered }`.
 */
import type { Kernel } from "../../src/kernel/kernel.ts";
import { FrontRing } from "../../src/ring/ring.ts";
import { pageBytes } from "../../src/xen/xen.ts";
import { type XenbusDevice, type XenbusDriver, XenbusState, xenbus } from "../../src/xenbus/xenbus.ts";
import { ALICE_OP_PING, AliceKey, ENTRY_SIZE, readMessage, writeMessage } from "./protocol.ts";

export const name = "alice_front";

interface Front {
  gfn: number;
  ref: number;
  port: number;
  ring: FrontRing;
  sent: number;
  answered: number;
}

let pings = 8;
let everyMs = 0;
let timer: ReturnType<typeof setInterval> | null = null;
/** Counts carried from a saved connection to the next one (by nodename). */
const carried = new Map<string, { sent: number; answered: number }>();
const devices = new Set<XenbusDevice>();

/** What `save` keeps of a device: its counts and the page and grant of its ring. */
interface SavedFront {
  gfn: number;
  ref: number;
  answered: number;
}

function due(f: Front): boolean {
  return (pings === 0 || f.sent < pings) && !f.ring.full();
}

function pushPings(dev: XenbusDevice, f: Front): void {
  while (due(f) && (everyMs === 0 || f.sent === f.answered)) {
    const idx = f.ring.reqProdPvt;
    writeMessage(f.ring.getRequest(idx), { id: f.sent, code: ALICE_OP_PING, value: BigInt(f.sent * 10) });
    f.ring.reqProdPvt = idx + 1;
    f.sent++;
  }
  if (f.ring.pushRequestsAndCheckNotify()) dev.kernel.notify(f.port);
}

function onEvent(dev: XenbusDevice, f: Front): void {
  do {
    while (f.ring.hasUnconsumedResponses()) {
      const rsp = readMessage(f.ring.getResponse(f.ring.rspCons));
      f.ring.rspCons = f.ring.rspCons + 1;
      if (rsp.code !== 0 || rsp.value !== BigInt(rsp.id * 10 + 1)) {
        dev.kernel.printk(`DomU: bad response ${rsp.id}: status ${rsp.code}, value ${rsp.value}`);
      }
      f.answered++;
    }
  } while (f.ring.finalCheckForResponses());
  if (f.answered === pings && f.sent === pings) {
    dev.kernel.printk(`DomU: ${pings} pings answered.`);
    f.sent++; // report once
  } else if (everyMs === 0 && f.sent < pings) {
    pushPings(dev, f);
  }
}

async function talkToBackend(dev: XenbusDevice): Promise<void> {
  const k = dev.kernel;
  const { gfn, page } = k.allocPage();
  const ring = FrontRing.init(pageBytes(page), ENTRY_SIZE);
  dev.showRing(ring); // its private indexes, for the live view
  const ref = await dev.grantRing(gfn);
  const port = await dev.allocEvtchn();
  const was = carried.get(dev.nodename);
  carried.delete(dev.nodename);
  const f: Front = { gfn, ref, port, ring, sent: was?.sent ?? 0, answered: was?.answered ?? 0 };
  dev.data = f;
  k.bindEvent(port, () => onEvent(dev, f));
  await k.xs.transaction(async (t) => {
    await t.write(`${dev.nodename}/${AliceKey.ringRef}`, String(ref));
    await t.write(`${dev.nodename}/${AliceKey.eventChannel}`, String(port));
  });
  await dev.switchState(XenbusState.Initialised);
  k.printk(`DomU: ring-ref ${ref}, event-channel ${port}: Initialised.`);
}

/** Ends the grant and frees the page once the backend no longer maps it. */
function release(dev: XenbusDevice): void {
  const f = dev.data as Front | undefined;
  if (f === undefined) return;
  const k = dev.kernel;
  k.closePort(f.port);
  dev.hideRing(f.ring);
  if (k.endAccess(f.ref)) {
    k.freePage(f.gfn);
    dev.data = undefined;
    k.printk("DomU: ring released.");
  }
}

const driver: XenbusDriver = {
  name: "alice_front",
  ids: ["alice_dev"],
  probe(dev) {
    dev.kernel.printk("DomU: Probe called.");
  },
  async otherendChanged(dev, state) {
    switch (state) {
      case XenbusState.InitWait:
        if (dev.state === XenbusState.Initialising) await talkToBackend(dev);
        return;
      case XenbusState.Connected:
        if (dev.state === XenbusState.Connected) return;
        await dev.switchState(XenbusState.Connected);
        dev.kernel.printk("DomU: Connected.");
        devices.add(dev);
        pushPings(dev, dev.data as Front);
        return;
      case XenbusState.Closing:
        // xenbus_frontend_closed: straight to Closed (Closing is skipped on this side).
        if (dev.state !== XenbusState.Closed) await dev.switchState(XenbusState.Closed);
        return;
      case XenbusState.Closed:
        if (dev.state !== XenbusState.Closed) await dev.switchState(XenbusState.Closed);
        if (dev.data !== undefined) {
          release(dev);
        }
        return;
    }
  },
  remove(dev) {
    devices.delete(dev);
    if (dev.data !== undefined) release(dev);
    dev.kernel.printk("DomU: device removed.");
  },
  suspend(dev) {
    const f = dev.data as Front | undefined;
    dev.kernel.printk(`DomU: suspend: ${f?.answered ?? 0} pings answered so far.`);
  },
  save(dev) {
    const f = dev.data as Front | undefined;
    if (f === undefined) return undefined;
    const s: SavedFront = { gfn: f.gfn, ref: f.ref, answered: f.answered };
    return new TextEncoder().encode(JSON.stringify(s));
  },
  resume(dev, saved) {
    if (saved === undefined) return;
    const s = JSON.parse(new TextDecoder().decode(saved)) as SavedFront;
    const k = dev.kernel;
    // The old ring: nobody maps it in this domain, so its grant ends and its page goes.
    if (k.endAccess(s.ref)) k.freePage(s.gfn);
    // Pings sent and not answered were lost with the old ring: they go again.
    carried.set(dev.nodename, { sent: s.answered, answered: s.answered });
    k.printk(`DomU: resume: ${s.answered} pings answered before the save.`);
  },
};

/** One ping on each Connected device, every `every_ms`. */
function tick(): void {
  for (const dev of devices) {
    const f = dev.data as Front | undefined;
    if (f !== undefined && dev.state === XenbusState.Connected && f.sent === f.answered && due(f)) {
      const idx = f.ring.reqProdPvt;
      writeMessage(f.ring.getRequest(idx), { id: f.sent, code: ALICE_OP_PING, value: BigInt(f.sent * 10) });
      f.ring.reqProdPvt = idx + 1;
      f.sent++;
      if (f.ring.pushRequestsAndCheckNotify()) dev.kernel.notify(f.port);
    }
  }
}

export async function init(k: Kernel, args: readonly string[]): Promise<void> {
  for (const a of args) if (a.startsWith("pings=")) pings = Number(a.slice(6));
  for (const a of args) if (a.startsWith("every_ms=")) everyMs = Number(a.slice(9));
  if (everyMs > 0) timer = setInterval(tick, everyMs);
  k.printk("DomU: Alice_front inited!");
  await xenbus(k).registerFrontend(driver);
}

export async function exit(k: Kernel): Promise<void> {
  if (timer !== null) clearInterval(timer);
  await xenbus(k).unregister(driver);
}

/** `stats`: the first device's counts, `{ sent, answered }`. */
export function call(_k: Kernel, cmd: string): unknown {
  if (cmd !== "stats") throw new Error(`alice_front: unknown call ${cmd}`);
  const f = [...devices][0]?.data as Front | undefined;
  return { sent: f?.sent ?? 0, answered: f?.answered ?? 0 };
}
