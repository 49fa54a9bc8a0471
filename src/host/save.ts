/**
 * `xl save`, `xl save -c` and `xl restore` on the host's side (libxl_dom_suspend.c,
 * libxl_create.c's restore path; docs/save-format.md has the file, docs/save-restore.md the
 * sequence):
 *
 *   suspend   write `control/shutdown` = `suspend` and wait (60 s) for the guest to acknowledge
 *             by changing it; on time-out take the request back in a transaction (a conflict is
 *             a last-moment acknowledgement). Then wait for the domain's SCHEDOP_shutdown
 *             (suspend): its drivers have run their suspend callbacks and its kernel handed over
 *             what it keeps (src/kernel/suspend.ts).
 *   image     the suspended domain's pages, grant frames, event channels (for reading), kernel
 *             and module state, its config and devices: one SaveFile (save-format.ts).
 *   resume    a checkpoint (`-c`) or a failed save: the guest goes on in place (its hypercall
 *             answers 1, devices untouched), then XS_RESUME, as libxl__domain_resume.
 *   restore   a new domain (a new domid when the old one is taken) built from the image; its
 *             name must be free (xl's "Domain with name ... already exists."); libxl's keys;
 *             its devices added again with both ends Initialising before it runs; then it runs:
 *             its kernel loads each saved module again, XenBus resumes each device (src/xenbus)
 *             and the frontends reconnect to the new backends.
 */
import type { DomainInfo } from "../hv/hypervisor.ts";
import { EVTCHN_2L_NR_CHANNELS, EVTCHNSTAT } from "../xen/evtchn-abi.ts";
import { parseXenbusState, XenbusState, xenbusStateName } from "../xen/xenbus-abi.ts";
import { domainPath, XenbusKey } from "../xenbus/keys.ts";
import { writeDiskKeys } from "./disk.ts";
import type { Host } from "./host.ts";
import type { SavedDeviceConfig, SavedPort, SaveFile } from "./save-format.ts";

/** libxl's wait for the guest's acknowledgement, and for the suspend itself. */
export const SUSPEND_TIMEOUT_MS = 60_000;

/** The running guest `domid`, or a one-line error naming what is wrong. */
export function requireGuest(host: Host, domid: number, what: string): DomainInfo {
  const d = host.hv.info(domid);
  if (d === undefined) throw new RangeError(`Cannot ${what}: no domain ${domid}`);
  if (domid === 0) throw new RangeError(`Cannot ${what} dom0`);
  if (d.state !== "running") throw new RangeError(`Cannot ${what} ${d.name} (${domid}): it is ${d.state}`);
  return d;
}

/**
 * Asks the guest to suspend and waits until it has (see the module comment). Afterwards the
 * domain is `suspended`: image it, then destroy it or resume it in place.
 */
export async function suspendGuest(host: Host, domid: number, timeoutMs = SUSPEND_TIMEOUT_MS): Promise<void> {
  const d = requireGuest(host, domid, "save");
  const key = `${domainPath(domid)}/control/shutdown`;
  if ((await host.xs.tryRead(key)) === "suspend")
    throw new Error(`Cannot save ${d.name} (${domid}): a suspend request is pending already (another save?)`);
  const suspended = host.hv.suspended(domid, AbortSignal.timeout(timeoutMs));
  suspended.catch(() => {});
  await host.xs.write(key, "suspend");
  try {
    await host.xs.wait(key, async (xs) => (await xs.tryRead(key)) !== "suspend", {
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch {
    let cancelled = false;
    await host.xs.transaction(async (t) => {
      cancelled = (await t.read(key).catch(() => undefined)) === "suspend";
      if (cancelled) await t.write(key, "");
    });
    if (cancelled)
      throw new Error(
        `Cannot save ${d.name} (${domid}): the guest did not acknowledge the suspend request in ${timeoutMs / 1000} s (its kernel must watch control/shutdown)`,
      );
  }
  try {
    await suspended;
  } catch (e) {
    throw new Error(`Cannot save ${d.name} (${domid}): it did not suspend: ${(e as Error).message}`);
  }
}

/** A suspended guest as a SaveFile. */
export async function imageGuest(host: Host, domid: number): Promise<SaveFile> {
  const info = host.hv.info(domid)!;
  const config = host.configs.get(domid);
  const target = await host.xs.tryRead(`${domainPath(domid)}/memory/target`);
  return {
    domain: {
      name: info.name,
      domid,
      maxPages: info.maxPages,
      vcpus: info.vcpus,
      ...(target === undefined ? {} : { targetKib: Number(target) }),
      ...(config === undefined ? {} : { config }),
      devices: await savedDevices(host, domid),
    },
    image: host.hv.image(domid),
    ports: savedPorts(host, domid),
  };
}

/** A checkpoint or a failed save: the guest goes on where it was, then XS_RESUME. */
export async function resumeGuest(host: Host, domid: number): Promise<void> {
  host.hv.resumeSuspended(domid);
  await host.xs.resume(domid).catch(() => {});
}

/** Options of a restore: a migration's receiver builds it paused and under another name. */
export interface RestoreOptions {
  readonly name?: string;
  readonly paused?: boolean;
}

/** `xl restore`: builds the saved guest again (see the module comment). */
export async function restoreGuest(host: Host, f: SaveFile, opts: RestoreOptions = {}): Promise<DomainInfo> {
  const { domain } = f;
  const name = opts.name ?? domain.name;
  if (host.hv.list().some((d) => d.name === name))
    throw new RangeError(
      `Cannot restore ${domain.name}: Domain with name "${name}" already exists. (xenlab destroy it first)`,
    );
  const info = await host.createDomain({
    name,
    maxPages: domain.maxPages,
    vcpus: domain.vcpus,
    restore: f.image,
    ...(domain.targetKib === undefined ? {} : { targetKib: domain.targetKib }),
    ...(opts.paused === undefined ? {} : { paused: opts.paused }),
    beforeUnpause: async (domid) => {
      for (const dev of domain.devices) {
        if (dev.disk !== undefined) await writeDiskKeys(host, domid, { ...dev.disk, format: "raw" });
        else await host.attachDevice(dev.type, domid, dev.devid);
      }
    },
  });
  if (domain.config !== undefined) host.configs.set(info.domid, domain.config);
  // Paused (a migration's receiver): ready to unpause only once its modules are read in.
  if (opts.paused === true) await host.hv.built(info.domid);
  return info;
}

/**
 * Waits until every frontend of `domid` is Connected again; rejects after `timeoutMs` naming
 * the devices that are not, and the state each is in.
 */
export async function waitDevicesConnected(host: Host, domid: number, timeoutMs = 10_000): Promise<void> {
  const states = async (): Promise<string[]> => {
    const out: string[] = [];
    const dev = `${domainPath(domid)}/device`;
    for (const type of await host.xs.directory(dev).catch(() => [] as string[])) {
      for (const id of await host.xs.directory(`${dev}/${type}`).catch(() => [] as string[])) {
        const s = parseXenbusState(await host.xs.tryRead(`${dev}/${type}/${id}/${XenbusKey.state}`));
        if (s !== XenbusState.Connected) out.push(`${type}/${id} ${xenbusStateName(s)}`);
      }
    }
    return out;
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await states();
    if (left.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(
        `Devices of domain ${domid} not Connected after ${timeoutMs / 1000} s: ${left.join(", ")} (is each backend's driver loaded in dom0? 'xenlab devices' says why)`,
      );
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The guest's devices, from its frontend directories and their backends' keys. */
async function savedDevices(host: Host, domid: number): Promise<SavedDeviceConfig[]> {
  const out: SavedDeviceConfig[] = [];
  const dev = `${domainPath(domid)}/device`;
  for (const type of await host.xs.directory(dev).catch(() => [] as string[])) {
    for (const id of await host.xs.directory(`${dev}/${type}`).catch(() => [] as string[])) {
      const devid = Number(id);
      if (!Number.isInteger(devid)) continue;
      const be = await host.xs.tryRead(`${dev}/${type}/${id}/${XenbusKey.backend}`);
      if (type === "vbd" && be !== undefined) {
        const r = (k: string) => host.xs.tryRead(`${be}/${k}`);
        const [target, vdev, mode, devtype] = [
          await r("params"),
          await r("dev"),
          await r("mode"),
          await r("device-type"),
        ];
        if (target === undefined || vdev === undefined) continue;
        out.push({
          type,
          devid,
          disk: {
            target,
            vdev,
            access: mode === "r" ? "ro" : "rw",
            devtype: devtype === "cdrom" ? "cdrom" : "disk",
          },
        });
      } else out.push({ type, devid });
    }
  }
  return out;
}

/** The domain's open event channels (EVTCHNOP_status), with their pending and mask bits. */
function savedPorts(host: Host, domid: number): SavedPort[] {
  const ev = host.hv.events;
  const out: SavedPort[] = [];
  for (let port = 1; port < EVTCHN_2L_NR_CHANNELS; port++) {
    const s = ev.status(0, domid, port);
    if (typeof s === "number" || s.status === EVTCHNSTAT.closed) continue;
    out.push({
      port,
      status: s.status,
      vcpu: s.vcpu,
      ...("dom" in s ? { dom: s.dom } : {}),
      ...("port" in s ? { remotePort: s.port } : {}),
      pending: ev.isPending(domid, port),
      masked: ev.isMasked(domid, port),
    });
  }
  return out;
}
