/**
 * A guest's configuration from an xl config file (xl.cfg(5)), read as xl's parse_config_data
 * (tools/xl/xl_parse.c) reads the keys xenlab has, with xl's messages and its habit of warning
 * about and skipping a value of the wrong kind:
 *
 *   name = "guest"                        required: "Domain name must be specified."
 *   memory = 128                          MiB (the domain's target; default 1 MiB, xenlab's)
 *   maxmem = 256                          MiB (its static maximum; default: memory)
 *   vcpus = 2                             below 1 reads as 1, as in xl
 *   disk = [ "guest.img,raw,xvda,rw" ]    xl's disk specs (src/host/disk-spec.ts), attached
 *                                         once the domain is built, as xl does
 *   vif = [ "mac=…,bridge=…" ]            xl's vif specs (src/host/nic-spec.ts), attached after
 *                                         the disks (src/host/nic.ts)
 *   on_poweroff / on_reboot / on_crash    xl's actions; an unknown one is
 *                                         `Unknown on_crash action "x" specified`
 *   xenlab_modules = [ "front.ts a=1" ]   xenlab's own: driver modules loaded into the guest
 *                                         after its disks, each a path relative to the config
 *                                         file and its arguments, split at blanks
 *
 * Every other key is ignored without a word, as xl ignores keys it does not know. A relative
 * disk target stays relative to the caller's directory, as xl passes it on.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { DiskSpec } from "../drivers/blk/blockdev.ts";
import { DiskSpecError, diskSpecOf, parseDiskSpec } from "./disk-spec.ts";
import { type NicSpec, parseNicSpec } from "./nic-spec.ts";
import type { XlConfig } from "./xl-cfg.ts";

/** xl's actions on a guest's shutdown (action_on_shutdown_names in xl_parse.c). */
export const SHUTDOWN_ACTIONS = [
  "destroy",
  "restart",
  "rename-restart",
  "preserve",
  "coredump-destroy",
  "coredump-restart",
  "soft-reset",
] as const;
export type ShutdownAction = (typeof SHUTDOWN_ACTIONS)[number];

export interface GuestActions {
  readonly onPoweroff: ShutdownAction;
  readonly onReboot: ShutdownAction;
  readonly onCrash: ShutdownAction;
}

export interface GuestConfig extends GuestActions {
  readonly name: string;
  /** Target memory, KiB (`memory`). */
  readonly memoryKib?: number;
  /** Static maximum, KiB (`maxmem`). */
  readonly maxmemKib?: number;
  readonly vcpus: number;
  readonly disks: readonly DiskSpec[];
  /** xl's `vif` specs, attached after the disks (absent: none). */
  readonly nics?: readonly NicSpec[];
  /** Module URLs and their arguments, loaded in this order after the disks. */
  readonly modules: readonly { readonly url: string; readonly args: readonly string[] }[];
}

/** A config xl refuses after parsing it; `message` is xl's line(s). */
export class GuestConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GuestConfigError";
  }
}

/**
 * The guest a parsed config describes. `file` is the config file's path (its directory roots
 * xenlab_modules), `cwd` the caller's directory (relative disk targets). Getter warnings are
 * left in `cfg.warnings`.
 */
export function guestConfig(cfg: XlConfig, file: string, cwd: string): GuestConfig {
  const name = cfg.string("name");
  if (name === undefined || name === "") throw new GuestConfigError("Domain name must be specified.");
  const memory = cfg.long("memory");
  const maxmem = cfg.long("maxmem");
  const action = (key: string, dflt: ShutdownAction): ShutdownAction => {
    const v = cfg.string(key) ?? dflt;
    if (!(SHUTDOWN_ACTIONS as readonly string[]).includes(v))
      throw new GuestConfigError(`Unknown ${key} action "${v}" specified`);
    return v as ShutdownAction;
  };
  const onPoweroff = action("on_poweroff", "destroy");
  const onReboot = action("on_reboot", "restart");
  const onCrash = action("on_crash", "destroy");
  const disks: DiskSpec[] = [];
  // xl reads the list up to its first item that is not a string.
  for (const spec of cfg.list("disk") ?? []) {
    if (spec === null) break;
    try {
      disks.push(diskSpecOf(parseDiskSpec(spec), cwd));
    } catch (e) {
      if (!(e instanceof DiskSpecError)) throw e;
      // xl's disk parser reports against the config file, not the command line.
      throw new GuestConfigError(
        e.errors.map((m) => m.replace(/^command line: /, `${cfg.source}: `)).join("\n"),
      );
    }
  }
  const nics: NicSpec[] = [];
  for (const spec of cfg.list("vif") ?? []) {
    if (spec === null) break;
    try {
      nics.push(parseNicSpec([spec]));
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      throw new GuestConfigError(`${cfg.source}: vif: ${e.message}`);
    }
  }
  const modules = [];
  for (const entry of cfg.list("xenlab_modules") ?? []) {
    if (entry === null) break;
    const [path, ...args] = entry.split(/[ \t]+/).filter((w) => w !== "");
    if (path === undefined)
      throw new GuestConfigError(`${cfg.source}: xenlab_modules: an empty entry names no module`);
    const abs = isAbsolute(path) ? path : resolve(dirname(resolve(cwd, file)), path);
    modules.push({ url: pathToFileURL(abs).href, args });
  }
  const l = cfg.long("vcpus");
  return {
    name,
    ...(memory === undefined ? {} : { memoryKib: memory * 1024 }),
    ...(maxmem === undefined ? {} : { maxmemKib: maxmem * 1024 }),
    vcpus: l === undefined || l < 1 ? 1 : l,
    disks,
    ...(nics.length === 0 ? {} : { nics }),
    modules,
    onPoweroff,
    onReboot,
    onCrash,
  };
}
