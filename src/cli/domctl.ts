/**
 * The commands that talk to a running `xenlab up` through its control socket, like `xl` and the
 * module tools inside a domain:
 *
 *   create [-f] FILE [KEY=VALUE...] [-q]    xl create: an xl config file (src/host/xl-cfg.ts and
 *                                           guest-config.ts), parsed here as xl parses it, each
 *                                           KEY=VALUE a line appended to it, as xl appends them
 *   create NAME [--memory KIB]              xenlab's short form: a guest with no config
 *   list [DOMAIN]                           xl list's table, its Time(s) the worker's busy time
 *   destroy DOMAIN
 *   insmod -d DOMAIN FILE [ARG...] | rmmod -d DOMAIN NAME | lsmod -d DOMAIN
 *   dmesg -d DOMAIN [-n N] [-f]             -f follows the log until interrupted
 *
 * DOMAIN is a domid or a name, as xl takes it (libxl_domain_qualifier_to_domid); an unknown name
 * is xl's "NAME is an invalid domain identifier (rc=-6)". Each command takes `--socket PATH`
 * (xenstored's socket of the host, found as `xenlab up` finds it). Exit codes as xl: 0; 1 for a
 * config xl refuses or a failed command; 3 when the host cannot create the domain (ERROR_FAIL);
 * 2 for a usage error.
 */
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import {
  type ControlRequest,
  controlCall,
  controlPath,
  followKernelLog,
  type ListedDomain,
} from "../host/control-client.ts";
import { GuestConfigError, guestConfig } from "../host/guest-config.ts";
import { parseXlConfig, XlConfigError } from "../host/xl-cfg.ts";
import type { DomainInfo } from "../hv/hypervisor.ts";
import { errorMessage } from "../lib/errors.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";
import { domainId, invalidDomain } from "./domain-id.ts";

const USAGES: Record<string, string> = {
  create: "xenlab create [-f] FILE [KEY=VALUE...] [-q] | create NAME [--memory KIB]  [--socket PATH]",
  list: "xenlab list [DOMAIN] [--socket PATH]",
  destroy: "xenlab destroy DOMAIN [--socket PATH]",
  insmod: "xenlab insmod -d DOMAIN FILE [ARG...] [--socket PATH]",
  rmmod: "xenlab rmmod -d DOMAIN NAME [--socket PATH]",
  lsmod: "xenlab lsmod -d DOMAIN [--socket PATH]",
  dmesg: "xenlab dmesg -d DOMAIN [-n N] [-f] [--socket PATH]",
};

/** xl list's state letters: running, blocked, paused, shutdown, crashed, dying. */
function stateLetters(d: DomainInfo): string {
  const flag = (on: boolean, c: string): string => (on ? c : "-");
  return (
    flag(d.state === "running", "r") +
    "-" +
    flag(d.state === "paused", "p") +
    flag(d.state === "suspended", "s") +
    flag(d.state === "crashed", "c") +
    flag(d.state === "dying", "d")
  );
}

/**
 * `xl list`'s table, printed as xl_info.c's list_domains prints it: the header with its tabs,
 * each row `%-40s %5d %5lu %5d     %s  %8.1f` (Mem in MiB, Time(s) in seconds).
 */
export function formatList(domains: readonly ListedDomain[]): string {
  const rows = domains.map(
    (d) =>
      `${d.name.padEnd(40)} ${String(d.domid).padStart(5)} ${String(Math.floor(d.memKib / 1024)).padStart(5)} ` +
      `${String(d.vcpus).padStart(5)}     ${stateLetters(d)}  ${d.cpuTime.toFixed(1).padStart(8)}\n`,
  );
  return `Name                                        ID   Mem VCPUs\tState\tTime(s)\n${rows.join("")}`;
}

/** A usage error (exit 2) as opposed to a failure (exit 1). */
class UsageError extends RangeError {}

/** xl's find_domain failure, printed as xl prints it (no command prefix). */
class InvalidDomainError extends Error {}

/** libxl_domain_qualifier_to_domid: all digits is a domid, anything else a name. */
async function domainOf(ctl: string, q: string | undefined, what: string): Promise<number> {
  if (q === undefined || q === "") throw new UsageError(`${what} (a domid or a name) is required`);
  const domid = await domainId(ctl, q);
  if (domid === undefined) throw new InvalidDomainError(invalidDomain(q));
  return domid;
}

export async function run(cmd: string, argv: string[]): Promise<number> {
  const usage = `usage: ${USAGES[cmd]}\n`;
  const args = commandArgs(
    `xenlab ${cmd}`,
    usage,
    argv,
    {
      socket: { type: "string" },
      domain: { type: "string", short: "d" },
      lines: { type: "string", short: "n" },
      memory: { type: "string" },
      ...(cmd === "create"
        ? { defconfig: { type: "string", short: "f" }, quiet: { type: "boolean", short: "q" } }
        : {}),
      ...(cmd === "dmesg" ? { follow: { type: "boolean", short: "f" } } : {}),
    },
    true,
  );
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  const ctl = controlPath(socketPath(values.socket as string | undefined));
  try {
    switch (cmd) {
      case "create":
        return await create(ctl, values, positionals);
      case "list": {
        let list = (await controlCall(ctl, { op: "list" })) as ListedDomain[];
        if (positionals[0] !== undefined) {
          const domid = await domainOf(ctl, positionals[0], "DOMAIN");
          list = list.filter((d) => d.domid === domid);
        }
        process.stdout.write(formatList(list));
        return 0;
      }
      case "destroy":
        await controlCall(ctl, { op: "destroy", domid: await domainOf(ctl, positionals[0], "DOMAIN") });
        return 0;
      case "insmod": {
        const domid = await domainOf(ctl, values.domain as string | undefined, "-d DOMAIN");
        const file = positionals[0];
        if (file === undefined) throw new UsageError("FILE is required");
        const url = pathToFileURL(resolve(file)).href;
        await controlCall(ctl, { op: "insmod", domid, url, args: positionals.slice(1) });
        return 0;
      }
      case "rmmod": {
        const domid = await domainOf(ctl, values.domain as string | undefined, "-d DOMAIN");
        const name = positionals[0];
        if (name === undefined) throw new UsageError("NAME is required");
        await controlCall(ctl, { op: "rmmod", domid, name });
        return 0;
      }
      case "lsmod": {
        const domid = await domainOf(ctl, values.domain as string | undefined, "-d DOMAIN");
        const names = (await controlCall(ctl, { op: "lsmod", domid })) as string[];
        // One name a line, in load order, as the guest shell's own lsmod prints them.
        process.stdout.write(names.map((n) => `${n}\n`).join(""));
        return 0;
      }
      case "dmesg": {
        const domid = await domainOf(ctl, values.domain as string | undefined, "-d DOMAIN");
        if (values.follow === true) {
          // Until the domain is destroyed or the user interrupts (SIGINT ends the process); a
          // reader that goes away (`| head`) ends it too, quietly, as it ends `dmesg -w`.
          process.stdout.once("error", () => process.exit(0));
          await followKernelLog(ctl, domid, (l) => void process.stdout.write(`${l}\n`));
          return 0;
        }
        const lines = (await controlCall(ctl, { op: "dmesg", domid })) as string[];
        const n = values.lines === undefined ? lines.length : Number(values.lines);
        for (const l of lines.slice(Math.max(0, lines.length - n))) process.stdout.write(`${l}\n`);
        return 0;
      }
      default:
        throw new UsageError(`unknown command ${cmd}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`xenlab ${cmd}: ${e.message}\n${usage}`);
      return 2;
    }
    if (e instanceof InvalidDomainError) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    process.stderr.write(`xenlab ${cmd}: ${errorMessage(e)}\n`);
    return cmd === "create" ? 3 : 1;
  }
}

/**
 * `xl create`: a positional argument with `=` is a KEY=VALUE line; the first without one is the
 * config file if there is such a file (as xl takes it) or -f named one, else the short form's
 * NAME. The config is parsed here, as xl parses it before it asks libxl for anything.
 */
async function create(
  ctl: string,
  values: Record<string, string | boolean | undefined>,
  positionals: string[],
): Promise<number> {
  const extra = positionals.filter((p) => p.includes("="));
  const plain = positionals.filter((p) => !p.includes("="));
  let file = values.defconfig as string | undefined;
  if (file === undefined && plain[0] !== undefined && isFile(plain[0])) file = plain.shift();
  if (file === undefined) {
    const name = plain[0];
    if (name === undefined || plain.length > 1 || extra.length > 0)
      throw new UsageError(
        extra.length > 0 ? "KEY=VALUE needs a config file (-f FILE)" : "FILE or NAME is required",
      );
    const kib = values.memory === undefined ? undefined : Number(values.memory);
    if (kib !== undefined && !(Number.isInteger(kib) && kib >= 8 && kib % 4 === 0))
      throw new UsageError("--memory must be a multiple of 4 KiB, at least 8");
    const req: ControlRequest = { op: "create", name, ...(kib === undefined ? {} : { maxPages: kib / 4 }) };
    const d = (await controlCall(ctl, req)) as DomainInfo;
    process.stdout.write(`${d.name} created as domain ${d.domid}\n`);
    return 0;
  }
  if (plain.length > 0) throw new UsageError(`one config file only, not also '${plain[0]}'`);
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (e) {
    process.stderr.write(`Failed to read config file: ${file}: ${errnoText(e)}\n`);
    return 3;
  }
  // xl appends the command line's settings after the file, a newline before and after.
  if (extra.length > 0)
    data = Buffer.concat([data, Buffer.from(`\n${extra.map((x) => `${x}\n`).join("")}\n`)]);
  if (values.quiet !== true) process.stderr.write(`Parsing config from ${file}\n`);
  let config: ReturnType<typeof guestConfig>;
  try {
    const cfg = parseXlConfig(data, file);
    try {
      config = guestConfig(cfg, file, process.cwd());
    } finally {
      for (const w of cfg.warnings) process.stderr.write(`${w}\n`);
    }
  } catch (e) {
    if (e instanceof XlConfigError) {
      process.stderr.write(`${e.message}\nFailed to parse config: Invalid argument\n`);
      return 1;
    }
    if (e instanceof GuestConfigError) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    throw e;
  }
  const d = (await controlCall(ctl, { op: "create", config })) as DomainInfo;
  process.stdout.write(`${d.name} created as domain ${d.domid}\n`);
  return 0;
}

function isFile(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isFile() === true;
}

/** strerror's words for a file error. */
function errnoText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOENT"
    ? "No such file or directory"
    : code === "EACCES"
      ? "Permission denied"
      : errorMessage(e);
}
