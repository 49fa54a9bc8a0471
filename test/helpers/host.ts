/**
 * A whole host for a test: Host.start (its log silent unless the test gives one) beside a
 * temporary directory for what the test puts on disk (sockets, disk images, console logs),
 * optionally a first guest, and raw disk images attached as `xl block-attach` does. stop() ends
 * the host and removes the directory, whichever of them fails; a start that fails half-way
 * undoes what it did before it throws.
 *
 *   let fx: GuestHost;
 *   before(async () => {
 *     fx = await startHost({ guest: { name: "guest", maxPages: 1024 } });
 *     ({ host, domU } = fx);
 *     image = await fx.attachDisk(domU, { sectors: 2048 });
 *   });
 *   after(() => fx?.stop());
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import type { DiskSpec } from "../../src/drivers/blk/blockdev.ts";
import { attachDisk } from "../../src/host/disk.ts";
import { Host, type HostOptions } from "../../src/host/host.ts";
import type { CreateOptions } from "../../src/hv/hypervisor.ts";
import { tempDir } from "./peers.ts";

/** Host.start's options (the log optional), and a guest to create once the host runs. */
export type StartOptions = Partial<HostOptions> & {
  /** `xl create` for a first guest: its domid is `domU`. */
  readonly guest?: CreateOptions;
};

/** A raw image in the fixture's directory, attached read-write as a disk. */
export interface TestDisk {
  /** The image's bytes; without them, `sectors` 512-byte sectors of zeros. */
  readonly content?: Uint8Array;
  readonly sectors?: number;
  /** The guest's name for it (default `xvda`). */
  readonly vdev?: string;
  /** The image's file name in the directory (default `<vdev>-<domid>.img`). */
  readonly file?: string;
}

export interface TestHost {
  readonly host: Host;
  /** A temporary directory, removed by stop(). */
  readonly dir: string;
  /** Writes the image and attaches it to `domid`; resolves once Connected, with the image's path. */
  attachDisk(domid: number, disk: TestDisk): Promise<string>;
  /** Stops the host, then removes the directory, even when stopping failed. */
  stop(): Promise<void>;
}

/** A test host started with a guest. */
export type GuestHost = TestHost & {
  /** The guest's domid. */
  readonly domU: number;
};

/** The spec `xl block-attach` gets for a test's disk: a read-write raw disk. */
export function diskSpec(target: string, vdev = "xvda"): DiskSpec {
  return { target, vdev, access: "rw", format: "raw", devtype: "disk" };
}

/** Starts the host; `opts` may be a function of the fixture's directory (e.g. for a log dir). */
export async function startHost(opts: StartOptions & { readonly guest: CreateOptions }): Promise<GuestHost>;
export async function startHost(opts?: StartOptions | ((dir: string) => StartOptions)): Promise<TestHost>;
export async function startHost(
  opts: StartOptions | ((dir: string) => StartOptions) = {},
): Promise<TestHost | GuestHost> {
  const dir = tempDir("xenlab-host-");
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  let host: Host;
  let guest: CreateOptions | undefined;
  try {
    const { guest: g, ...given } = typeof opts === "function" ? opts(dir) : opts;
    guest = g;
    host = await Host.start({ ...given, log: given.log ?? pino({ level: "silent" }) });
  } catch (e) {
    removeDir();
    throw e;
  }
  const stop = async () => {
    try {
      await host.stop();
    } finally {
      removeDir();
    }
  };
  const attach = async (domid: number, disk: TestDisk): Promise<string> => {
    if (disk.content === undefined && disk.sectors === undefined)
      throw new RangeError("Cannot attach a test disk: give its content or its sectors");
    const vdev = disk.vdev ?? "xvda";
    const image = join(dir, disk.file ?? `${vdev}-${domid}.img`);
    writeFileSync(image, disk.content ?? new Uint8Array((disk.sectors ?? 0) * 512));
    await attachDisk(host, domid, diskSpec(image, vdev));
    return image;
  };
  const fx: TestHost = { host, dir, attachDisk: attach, stop };
  if (guest === undefined) return fx;
  try {
    return { ...fx, domU: (await host.createDomain(guest)).domid };
  } catch (e) {
    await stop();
    throw e;
  }
}
