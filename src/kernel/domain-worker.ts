/**
 * A domain's worker: the entry point of its kernel. It waits on the scheduler word until the
 * hypervisor first unpauses it (domains are created paused), then boots: event channels, the
 * XenStore ring, the modules of the boot record, and in a guest the getty on its PV console
 * (src/kernel/shell.ts). Afterwards it serves the host's `insmod`,
 * `rmmod` and module calls and runs the event-channel upcall loop.
 */
import { parentPort, workerData } from "node:worker_threads";
import { errorMessage } from "../lib/errors.ts";
import { loadModule } from "../lib/module-loader.ts";
import { type DomainBoot, type HostMessage, type KernelMessage, SCHED } from "../xen/domain-boot.ts";
import { Kernel } from "./kernel.ts";
import { GuestShell } from "./shell.ts";
import { watchShutdown } from "./suspend.ts";

const boot = workerData as DomainBoot;
const port = parentPort;
if (port === null) throw new Error("domain-worker must run in a worker thread");

/**
 * Kernel log lines go to the host in one message per turn, not one per line: a guest printing in
 * a loop would otherwise flood the main thread's message queue and delay every event-channel
 * wake-up it runs (the XenStore rings, the consoles). Any other message first flushes the lines
 * before it, so the host sees the log and the replies in the order they happened.
 */
let logLines: string[] = [];
function flushLog(): void {
  if (logLines.length === 0) return;
  port!.postMessage({ kind: "log", lines: logLines } satisfies KernelMessage);
  logLines = [];
}
const post = (m: KernelMessage): void => {
  if (m.kind === "log") {
    if (logLines.length === 0) queueMicrotask(flushLog);
    logLines.push(...m.lines);
    return;
  }
  flushLog();
  port.postMessage(m);
};

// A restored domain's modules are read in while it is still being built, as their code is part
// of the image the receiver loads before it may be unpaused: the kernel's loads below (numbered
// from 1, in the same order) then find them ready, and the unpause does not wait for them.
if (boot.restore !== undefined)
  await Promise.allSettled(boot.restore.modules.map((m, i) => loadModule(m.url, i + 1)));

post({ kind: "built" });
// Created paused: no kernel code runs before the first unpause.
const sched = new Int32Array(boot.sched);
while (Atomics.load(sched, 0) === SCHED.paused) Atomics.wait(sched, 0, SCHED.paused);

const kernel = new Kernel(boot, post);
kernel.printk(`Booting domain ${boot.domid} (${boot.name}) on xenlab, ${boot.maxPages * 4} KiB memory`);
kernel.printk("Grant tables using version 1 layout");
kernel.printk(`xenbus: store page gfn ${boot.store.gfn}, event channel ${boot.store.port}`);
const loop = kernel.events.start();
loop.catch((e: unknown) => post({ kind: "panic", error: errorMessage(e) }));

port.on("message", (m: HostMessage) => {
  switch (m.kind) {
    case "insmod":
      kernel.insmod(m.url, m.args).then(
        (name) => post({ kind: "insmod-done", id: m.id, name }),
        (e: unknown) => {
          kernel.printk(`insmod: ${errorMessage(e)}`);
          post({ kind: "insmod-done", id: m.id, error: errorMessage(e) });
        },
      );
      return;
    case "rmmod":
      kernel.rmmod(m.name).then(
        () => post({ kind: "rmmod-done", id: m.id }),
        (e: unknown) => post({ kind: "rmmod-done", id: m.id, error: errorMessage(e) }),
      );
      return;
    case "attribute":
      try {
        post({ kind: "attribute-done", id: m.id, result: kernel.attribute(m.path) });
      } catch (e) {
        post({ kind: "attribute-done", id: m.id, error: errorMessage(e) });
      }
      return;
    case "lsmod":
      post({ kind: "lsmod-done", id: m.id, names: kernel.modules });
      return;
    case "call":
      kernel.call(m.module, m.cmd, m.arg).then(
        (result) => post({ kind: "call-done", id: m.id, result }),
        (e: unknown) => post({ kind: "call-done", id: m.id, error: errorMessage(e) }),
      );
      return;
  }
});

if (boot.restore === undefined) {
  for (const url of boot.modules) {
    try {
      await kernel.insmod(url);
    } catch (e) {
      kernel.printk(`insmod ${url}: ${errorMessage(e)}`);
    }
  }
} else {
  // A restored domain: its modules come back from the image (src/kernel/suspend.ts).
  kernel.printk(`xen:manage: restored: ${boot.restore.modules.length} module(s) resuming`);
  for (const m of boot.restore.modules) {
    try {
      await kernel.restoreModule(m);
    } catch (e) {
      kernel.printk(`restore of ${m.name}: ${errorMessage(e)}`);
    }
  }
}
if (!boot.privileged) watchShutdown(kernel);
// A guest's getty on hvc0, last, as init starts it after the drivers.
if (kernel.console !== null) new GuestShell(kernel).start();
post({ kind: "ready" });
