/**
 * Every XenBus device of a running host, both ends side by side with the line that says why it is
 * where it is (src/xenbus/why-stuck.ts): what `xenlab devices` prints.
 *
 * A device is found from either end, as the toolstack writes them: each guest's
 * `device/<type>/<devid>` (its `backend` key names the other end) and each backend domain's
 * `backend/<type>/<frontend domid>/<devid>` (its `frontend` key), so a device whose frontend
 * directory is gone still shows. Each end's driver is looked up in its own domain's kernel
 * (`bus/xen/drivers`, `bus/xen-backend/drivers`, as Linux's sysfs), and its error node in its
 * own domain's home (xenbus_dev_fatal writes `error/<nodename>/error` there).
 */
import { parseXenbusState } from "../xen/xenbus-abi.ts";
import { BACKEND_BUS, FRONTEND_BUS, type XenbusType } from "../xenbus/bus-type.ts";
import { domainPath, errorPath, XenbusKey } from "../xenbus/keys.ts";
import { type DeviceEnd, type DeviceView, whyStuck } from "../xenbus/why-stuck.ts";
import type { XsOps } from "../xenstore/client.ts";

/** A device and its why-stuck line, as `xenlab devices` reports it. */
export interface DeviceReport extends DeviceView {
  readonly why: string;
}

/** What the collector needs of the host: its XenStore and its domains' kernel attributes. */
export interface DeviceSources {
  /** Only reads: a client, or the live view's reader of the store itself (src/host/live.ts). */
  readonly xs: Pick<XsOps, "directory" | "tryRead">;
  /** The domids of the running domains. */
  domids(): readonly number[];
  /** An attribute a domain's kernel publishes (undefined when none, or when the domain is gone). */
  attribute(domid: number, path: string): Promise<unknown>;
}

async function children(xs: Pick<XsOps, "directory">, path: string): Promise<string[]> {
  try {
    return await xs.directory(path);
  } catch {
    return [];
  }
}

async function keysOf(xs: Pick<XsOps, "directory" | "tryRead">, dir: string): Promise<Map<string, string>> {
  const keys = new Map<string, string>();
  for (const k of await children(xs, dir)) {
    const v = await xs.tryRead(`${dir}/${k}`);
    if (v !== undefined) keys.set(k, v);
  }
  return keys;
}

/** The path of `dir` relative to its domain's home, or undefined when it is not under one. */
function nodename(domid: number, dir: string): string | undefined {
  const home = `${domainPath(domid)}/`;
  return dir.startsWith(home) ? dir.slice(home.length) : undefined;
}

/**
 * Lists the devices of domain `only` (as frontend or backend) or of every domain, ordered by
 * frontend domid, type and devid.
 */
export async function listDevices(src: DeviceSources, only?: number): Promise<DeviceReport[]> {
  const { xs } = src;
  const domids = src.domids();
  // Each kernel's drivers, by bus, asked once.
  const drivers = new Map<string, Promise<Set<string> | undefined>>();
  const hasDriver = async (domid: number, bus: XenbusType, type: string): Promise<boolean | undefined> => {
    if (!domids.includes(domid)) return undefined;
    const key = `${domid}:${bus.kind}`;
    let p = drivers.get(key);
    if (p === undefined) {
      p = src.attribute(domid, bus.driversAttribute).then(
        (v) => new Set(Array.isArray(v) ? v.map(String) : []),
        () => undefined,
      );
      drivers.set(key, p);
    }
    return (await p)?.has(type);
  };

  // Pairs of (frontend dir, backend dir), found from both ends.
  const pairs = new Map<
    string,
    { type: string; devid: string; fe: string; be: string; feDomid: number; beDomid: number }
  >();
  for (const domid of domids) {
    const home = domainPath(domid);
    for (const type of await children(xs, `${home}/${FRONTEND_BUS.root}`)) {
      for (const devid of await children(xs, `${home}/${FRONTEND_BUS.root}/${type}`)) {
        const fe = `${home}/${FRONTEND_BUS.root}/${type}/${devid}`;
        const be = (await xs.tryRead(`${fe}/${XenbusKey.backend}`)) ?? "";
        const beDomid = Number((await xs.tryRead(`${fe}/${XenbusKey.backendId}`)) ?? Number.NaN);
        pairs.set(`${fe}|${be}`, { type, devid, fe, be, feDomid: domid, beDomid });
      }
    }
    for (const type of await children(xs, `${home}/${BACKEND_BUS.root}`)) {
      for (const feDomid of await children(xs, `${home}/${BACKEND_BUS.root}/${type}`)) {
        for (const devid of await children(xs, `${home}/${BACKEND_BUS.root}/${type}/${feDomid}`)) {
          const be = `${home}/${BACKEND_BUS.root}/${type}/${feDomid}/${devid}`;
          const fe = (await xs.tryRead(`${be}/${XenbusKey.frontend}`)) ?? "";
          if (![...pairs.values()].some((p) => p.be === be)) {
            pairs.set(`${fe}|${be}`, { type, devid, fe, be, feDomid: Number(feDomid), beDomid: domid });
          }
        }
      }
    }
  }

  const end = async (domid: number, dir: string, bus: XenbusType, type: string): Promise<DeviceEnd> => {
    const keys = dir === "" ? new Map<string, string>() : await keysOf(xs, dir);
    const stateText = keys.get(XenbusKey.state);
    const node = nodename(domid, dir);
    const errorAt = node === undefined ? undefined : `${domainPath(domid)}/${errorPath(node)}`;
    const errorValue = errorAt === undefined ? undefined : await xs.tryRead(errorAt);
    return {
      domid,
      path: dir,
      state: stateText === undefined ? undefined : parseXenbusState(stateText),
      keys,
      ...(errorAt !== undefined && errorValue !== undefined
        ? { error: { path: errorPath(node ?? ""), value: errorValue } }
        : {}),
      hasDriver: await hasDriver(domid, bus, type),
    };
  };

  const out: DeviceReport[] = [];
  for (const p of pairs.values()) {
    if (only !== undefined && p.feDomid !== only && p.beDomid !== only) continue;
    const view: DeviceView = {
      type: p.type,
      devid: p.devid,
      frontend: await end(p.feDomid, p.fe, FRONTEND_BUS, p.type),
      backend: await end(p.beDomid, p.be, BACKEND_BUS, p.type),
    };
    out.push({ ...view, why: whyStuck(view) });
  }
  return out.sort(
    (a, b) =>
      a.frontend.domid - b.frontend.domid ||
      a.type.localeCompare(b.type) ||
      a.devid.localeCompare(b.devid, undefined, { numeric: true }),
  );
}
