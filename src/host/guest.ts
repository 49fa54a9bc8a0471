/**
 * `xl create -f guest.cfg` on the host's side: the domain built and booted (Host.createDomain),
 * then its disks attached as libxl attaches a config's disks once the domain exists, then the
 * config's driver modules loaded into it; a failure at any step destroys the domain, as xl does
 * (create_domain's error_out), and the error goes back to the caller.
 *
 * What happens when a guest's kernel ends by itself, from its config's on_crash (an uncaught
 * error: the worker died) or on_poweroff (it ended cleanly), as far as xenlab can honour them:
 *
 *   destroy, coredump-destroy             the domain is destroyed (no core is dumped)
 *   restart, rename-restart,              the domain is destroyed and created again from the
 *   coredump-restart, soft-reset          same config (a new domid; no core, no rename)
 *   preserve                              the domain stays, crashed, until `xenlab destroy`
 *
 * A guest created without a config (`xenlab create NAME`) is destroyed, xl's defaults
 * (on_crash and on_poweroff destroy). on_reboot is stored only: a xenlab guest cannot reboot.
 */
import type { DomainInfo } from "../hv/hypervisor.ts";
import { errorMessage } from "../lib/errors.ts";
import { attachDisk } from "./disk.ts";
import type { GuestConfig, ShutdownAction } from "./guest-config.ts";
import type { Host } from "./host.ts";
import { attachNic } from "./nic.ts";

/** One page, 4 KiB: xenlab's memory unit. */
const PAGE_KIB = 4;

/** The steps of createGuest, in order: built and booted, disks Connected, modules loaded. */
export type GuestStep = "booted" | "disks" | "modules";

export interface CreateGuestOptions {
  /** Called as each step ends. */
  readonly onStep?: (step: GuestStep, domid: number) => void;
  /** How long each disk may take to connect (attachDisk's timeout; default its 10 s, libxl's). */
  readonly attachTimeoutMs?: number;
}

export async function createGuest(
  host: Host,
  cfg: GuestConfig,
  opts: CreateGuestOptions = {},
): Promise<DomainInfo> {
  const { onStep } = opts;
  const maxKib = Math.max(cfg.maxmemKib ?? 0, cfg.memoryKib ?? 0);
  const info = await host.createDomain({
    name: cfg.name,
    vcpus: cfg.vcpus,
    ...(maxKib === 0 ? {} : { maxPages: Math.ceil(maxKib / PAGE_KIB) }),
    ...(cfg.memoryKib === undefined ? {} : { targetKib: cfg.memoryKib }),
  });
  const { domid } = info;
  host.configs.set(domid, cfg);
  onStep?.("booted", domid);
  try {
    for (const disk of cfg.disks) await attachDisk(host, domid, disk, opts.attachTimeoutMs);
    onStep?.("disks", domid);
    for (const nic of cfg.nics ?? []) await attachNic(host, domid, nic);
    for (const m of cfg.modules) await host.hv.insmod(domid, m.url, m.args);
    onStep?.("modules", domid);
  } catch (e) {
    await host.destroyDomain(domid);
    throw e;
  }
  return host.hv.info(domid) ?? info;
}

/** Makes the host act on a guest's own end as its config says (see above). */
export function honourShutdownActions(host: Host, log: (msg: string) => void): void {
  host.onGuestExit = (domid, crashed) => {
    const cfg = host.configs.get(domid);
    const action: ShutdownAction = cfg === undefined ? "destroy" : crashed ? cfg.onCrash : cfg.onPoweroff;
    if (action === "preserve") return;
    void (async () => {
      await host.destroyDomain(domid);
      if (cfg === undefined || action === "destroy" || action === "coredump-destroy") return;
      const again = await createGuest(host, cfg);
      log(
        `${cfg.name}: ${crashed ? "on_crash" : "on_poweroff"}=${action}: created again as domain ${again.domid}`,
      );
    })().catch((e: unknown) => log(`domain ${domid}: ${action} failed: ${errorMessage(e)}`));
  };
}
