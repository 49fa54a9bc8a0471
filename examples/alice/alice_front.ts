/**
 * The seed's frontend driver (alice_domU.c), as a xenlab module: it registers with XenBus for
 * device type `alice_dev` and logs when loaded and when probed. Load it in a guest with
 * `xenlab insmod -d <domU> examples/alice/alice_front.ts`.
 */
import type { Kernel } from "../../src/kernel/kernel.ts";
import { type XenbusDriver, xenbus } from "../../src/xenbus/xenbus.ts";

export const name = "alice_front";

const driver: XenbusDriver = {
  name: "alice_front",
  ids: ["alice_dev"],
  probe(dev) {
    dev.kernel.printk("DomU: Probe called.");
  },
};

export async function init(k: Kernel): Promise<void> {
  k.printk("DomU: Alice_front inited!");
  await xenbus(k).registerFrontend(driver);
}

export async function exit(k: Kernel): Promise<void> {
  await xenbus(k).unregister(driver);
}
