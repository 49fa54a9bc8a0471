/**
 * The seed's backend driver (alice_dom0.c, "almost the same as the frontend"), as a xenlab
 * module: it registers with XenBus as the backend of `alice_dev` and logs when loaded and when
 * probed. Load it in dom0 with `xenlab insmod -d 0 examples/alice/alice_back.ts`.
 */
import type { Kernel } from "../../src/kernel/kernel.ts";
import { type XenbusDriver, xenbus } from "../../src/xenbus/xenbus.ts";

export const name = "alice_back";

const driver: XenbusDriver = {
  name: "alice_back",
  ids: ["alice_dev"],
  probe(dev) {
    dev.kernel.printk("Dom0: Probe called.");
  },
};

export async function init(k: Kernel): Promise<void> {
  k.printk("Dom0: Alice_back inited!");
  await xenbus(k).registerBackend(driver);
}

export async function exit(k: Kernel): Promise<void> {
  await xenbus(k).unregister(driver);
}
