/**
 * The wait of libxl's device attach (`libxl__wait_device_connection`): until the new device's
 * ends are Connected, or one of them closes (its `devFatal` error named), or the timeout; a
 * device that fails leaves no paths behind (libxl__xs_path_cleanup). `xl block-attach` and
 * `xl network-attach` (disk.ts, nic.ts) both end in it.
 */
import { parseXenbusState, XenbusState, xenbusStateName } from "../xen/xenbus-abi.ts";
import { domainPath, errorPath, XenbusKey as K } from "../xenbus/keys.ts";
import type { XsOps } from "../xenstore/client.ts";
import type { Host } from "./host.ts";

export interface DeviceWait {
  readonly domid: number;
  /** The frontend's, the backend's and libxl's directories of the device. */
  readonly fe: string;
  readonly be: string;
  readonly libxl: string;
  /** The device in messages: `disk xvda`, `nic 0`. */
  readonly what: string;
  /** The drivers' names in messages: `blkfront`, `blkback`. */
  readonly front: string;
  readonly back: string;
  /** Connected when both ends are (netif), else when the frontend is (blkif). */
  readonly bothConnected: boolean;
  /** Appended to a frontend's ENOMEM: how to give the guest more memory. */
  readonly noMemory: string;
  /** Appended to the timeout's message: where the log that says more is. */
  readonly logHint: string;
  readonly timeoutMs: number;
}

export async function waitDeviceConnected(host: Host, w: DeviceWait): Promise<void> {
  const { fe, be } = w;
  const who = `domain ${host.hv.info(w.domid)?.name ?? "?"} (${w.domid})`;
  const feError = `${domainPath(w.domid)}/${errorPath(fe.slice(`${domainPath(w.domid)}/`.length))}`;
  const beError = `${domainPath(0)}/${errorPath(be.slice(`${domainPath(0)}/`.length))}`;
  const timeout = AbortSignal.timeout(w.timeoutMs);
  try {
    await host.xs.wait(
      [`${fe}/${K.state}`, `${be}/${K.state}`],
      async (xs) => {
        const f = await xs.tryRead(`${fe}/${K.state}`);
        const b = await xs.tryRead(`${be}/${K.state}`);
        const connected = (s: string | undefined) => parseXenbusState(s) === XenbusState.Connected;
        if (connected(f) && (!w.bothConnected || connected(b))) return true;
        if (
          f === undefined ||
          b === undefined ||
          parseXenbusState(f) >= XenbusState.Closing ||
          parseXenbusState(b) >= XenbusState.Closing
        ) {
          // Each end's devFatal leaves "<errno> <reason>" in its own domain's error directory,
          // keyed by its nodename: the frontend's under the guest's home, the backend's under
          // dom0's. The frontend's comes first: when it fails, the backend closes because it did.
          const feErr = await xs.tryRead(feError);
          const beErr = feErr === undefined ? await xs.tryRead(beError) : undefined;
          throw new Error(
            `Cannot attach ${w.what} to ${who}: ${
              feErr !== undefined
                ? `the guest's ${w.front} failed: ${feErr}${feErr.startsWith("ENOMEM ") ? w.noMemory : ""}`
                : beErr !== undefined
                  ? `${w.back} failed: ${beErr}`
                  : `the device closed (frontend ${stateName(f)}, backend ${stateName(b)})`
            }`,
          );
        }
        return false;
      },
      { signal: timeout },
    );
  } catch (e) {
    let err = e;
    if (timeout.aborted) {
      const f = await host.xs.tryRead(`${fe}/${K.state}`).catch(() => undefined);
      const b = await host.xs.tryRead(`${be}/${K.state}`).catch(() => undefined);
      err = new Error(
        `Cannot attach ${w.what} to ${who}: not connected after ${w.timeoutMs / 1000} s (frontend ${stateName(f)}, backend ${stateName(b)}); ${w.logHint}`,
      );
    }
    // libxl removes a failed device's paths with libxl__xs_path_cleanup: parents left empty go too.
    for (const p of [fe, be, w.libxl, feError, beError])
      await host.xs.transaction((t) => pathCleanup(t, p)).catch(() => {});
    throw err;
  }
}

/** libxl__xs_path_cleanup: removes `path`, then each parent whose value is "" and has no children. */
export async function pathCleanup(t: XsOps, path: string): Promise<void> {
  await t.rm(path).catch(() => {});
  for (let p = path.slice(0, path.lastIndexOf("/")); p.length > 0; p = p.slice(0, p.lastIndexOf("/"))) {
    const v = await t.tryRead(p);
    if (v !== "" || (await t.directory(p)).length !== 0) break;
    await t.rm(p);
  }
}

export function stateName(s: string | undefined): string {
  return s === undefined ? "gone" : xenbusStateName(parseXenbusState(s));
}
