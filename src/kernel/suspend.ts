/**
 * The guest's side of a save, as Linux's drivers/xen/manage.c: a watch on `control/shutdown`
 * (relative to the domain's home). When it reads `suspend`, the kernel acknowledges in a
 * transaction by writing "" (only commands it handles: xenlab guests handle `suspend` alone, so
 * `poweroff` is left for the toolstack to see unanswered), then:
 *
 *   1. the subsystems' suspend: XenBus runs each device's driver `suspend` (dpm_suspend_start);
 *   2. in one turn (nothing else runs in between, as under Linux's stop_machine): each module's
 *      `save()` and each subsystem's state become the kernel image (what Linux leaves in guest
 *      memory, which here is a worker's heap and so must be bytes), and
 *   3. SCHEDOP_shutdown(suspend) with that image: the vCPU stops while the toolstack writes the
 *      domain out. It answers 1 when the domain goes on where it was (`save -c`, a cancelled
 *      save or a failed migration): the devices stay connected, as Linux's xenbus_dev_cancel
 *      leaves them. A saved domain is destroyed in the hypercall; its copy goes on in a restored
 *      domain, whose kernel loads the modules again from the image (domain-worker.ts).
 */
import { errorMessage } from "../lib/errors.ts";
import type { Kernel } from "./kernel.ts";

/** The key the toolstack writes (`control/shutdown`), relative to the domain's home. */
export const CONTROL_SHUTDOWN = "control/shutdown";

/** Watches `control/shutdown` for the rest of the kernel's life (see the module comment). */
export function watchShutdown(kernel: Kernel): void {
  const w = kernel.xs.watch(CONTROL_SHUTDOWN);
  void (async () => {
    for await (const _ of w) await shutdownRequested(kernel);
  })().catch((e: unknown) =>
    kernel.printk(`xen:manage: watch on ${CONTROL_SHUTDOWN} failed: ${errorMessage(e)}`),
  );
}

async function shutdownRequested(kernel: Kernel): Promise<void> {
  let cmd: string | undefined;
  await kernel.xs.transaction(async (t) => {
    cmd = await t.read(CONTROL_SHUTDOWN).catch(() => undefined);
    if (cmd === "suspend") await t.write(CONTROL_SHUTDOWN, "");
  });
  if (cmd !== "suspend") return;
  kernel.printk("xen:manage: suspending: freezing devices");
  try {
    await kernel.suspendDevices();
  } catch (e) {
    // Linux: "dpm_suspend_start failed": the suspend is abandoned and the guest goes on.
    kernel.printk(`xen:manage: suspend failed: ${errorMessage(e)}; going on`);
    return;
  }
  const cancelled = kernel.suspendAndSave();
  if (cancelled) kernel.printk("xen:manage: suspend cancelled (checkpoint): devices stay connected");
}
