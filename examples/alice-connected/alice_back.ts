/**
 * The alice_dev backend, connected: probed, it goes InitWait; when the frontend is Initialised it
 * reads `ring-ref` and `event-channel`, maps the ring, binds the channel and goes Connected, then
 * answers each ping with value + 1 (notification suppression on both sides). When the frontend
 * closes it unmaps and unbinds and goes Closed, as Linux's backends do.
 */
import type { Kernel, MappedPage } from "../../src/kernel/kernel.ts";
import { BackRing } from "../../src/ring/ring.ts";
import { pageBytes } from "../../src/xen/xen.ts";
import { type XenbusDevice, type XenbusDriver, XenbusState, xenbus } from "../../src/xenbus/xenbus.ts";
import { ALICE_OP_PING, AliceKey, ENTRY_SIZE, readMessage, writeMessage } from "./protocol.ts";

export const name = "alice_back";

interface Back {
  map: MappedPage;
  port: number;
  ring: BackRing;
  served: number;
}

function onEvent(dev: XenbusDevice, b: Back): void {
  const ring = b.ring;
  do {
    while (ring.hasUnconsumedRequests()) {
      const idx = ring.reqCons;
      const req = readMessage(ring.copyRequest(idx));
      ring.reqCons = idx + 1;
      const ok = req.code === ALICE_OP_PING;
      const rspIdx = ring.rspProdPvt;
      writeMessage(ring.getResponse(rspIdx), {
        id: req.id,
        code: ok ? 0 : -38,
        value: ok ? req.value + 1n : 0n,
      });
      ring.rspProdPvt = rspIdx + 1;
      b.served++;
    }
    if (ring.pushResponsesAndCheckNotify()) dev.kernel.notify(b.port);
  } while (ring.finalCheckForRequests());
}

async function connect(dev: XenbusDevice): Promise<void> {
  const ref = Number(await dev.readOtherend(AliceKey.ringRef));
  const evtchn = Number(await dev.readOtherend(AliceKey.eventChannel));
  const map = await dev.mapRing(ref);
  const ring = BackRing.attach(pageBytes(map.page), ENTRY_SIZE);
  dev.showRing(ring); // its private indexes, for the live view
  const b: Back = { map, port: 0, ring, served: 0 };
  dev.data = b;
  b.port = await dev.bindEvtchn(evtchn, () => onEvent(dev, b));
  await dev.switchState(XenbusState.Connected);
  dev.kernel.printk(
    `Dom0: Connected to domain ${dev.otherendId} (ring-ref ${ref}, event-channel ${evtchn}).`,
  );
}

function disconnect(dev: XenbusDevice): void {
  const b = dev.data as Back | undefined;
  if (b === undefined) return;
  dev.data = undefined;
  dev.hideRing(b.ring);
  dev.kernel.closePort(b.port);
  dev.kernel.unmapGrant(b.map.handle);
  dev.kernel.printk(`Dom0: Disconnected from domain ${dev.otherendId} after ${b.served} requests.`);
}

const driver: XenbusDriver = {
  name: "alice_back",
  ids: ["alice_dev"],
  async probe(dev) {
    dev.kernel.printk("Dom0: Probe called.");
    await dev.switchState(XenbusState.InitWait);
  },
  async otherendChanged(dev, state) {
    switch (state) {
      case XenbusState.Initialised:
        if (dev.data === undefined && dev.state !== XenbusState.Connected) await connect(dev);
        return;
      case XenbusState.Closing:
        await dev.switchState(XenbusState.Closing);
        return;
      case XenbusState.Closed:
        disconnect(dev);
        await dev.switchState(XenbusState.Closed);
        return;
    }
  },
  remove(dev) {
    disconnect(dev);
  },
};

export async function init(k: Kernel): Promise<void> {
  k.printk("Dom0: Alice_back inited!");
  await xenbus(k).registerBackend(driver);
}

export async function exit(k: Kernel): Promise<void> {
  await xenbus(k).unregister(driver);
}
