/**
 * The commands that talk to a running `xenlab up` through its control socket, like `xl` and the
 * module tools inside a domain: `create NAME`, `list`, `destroy ID`, `insmod -d ID FILE [ARG…]`,
 * `rmmod -d ID NAME`, `dmesg -d ID [-n N]`. Each takes `--socket PATH` (xenstored's socket of the
 * host, found as `xenlab up` finds it).
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type ControlRequest, controlCall, controlPath } from "../host/control.ts";
import type { DomainInfo } from "../hv/hypervisor.ts";
import { commandArgs } from "./args.ts";
import { socketPath } from "./xenstored.ts";

const USAGES: Record<string, string> = {
  create: "xenlab create NAME [--memory KIB] [--socket PATH]",
  list: "xenlab list [--socket PATH]",
  destroy: "xenlab destroy ID [--socket PATH]",
  insmod: "xenlab insmod -d ID FILE [ARG...] [--socket PATH]",
  rmmod: "xenlab rmmod -d ID NAME [--socket PATH]",
  dmesg: "xenlab dmesg -d ID [-n N] [--socket PATH]",
};

/** `xl list`'s table: Name, ID, Mem (MiB), VCPUs, State. */
export function formatList(domains: readonly DomainInfo[]): string {
  const rows = domains.map((d) => {
    const state = d.state === "running" ? "r-----" : d.state === "paused" ? "--p---" : "----d-";
    const mem = Math.floor((d.maxPages * 4) / 1024);
    return `${d.name.padEnd(40)} ${String(d.domid).padStart(5)} ${String(mem).padStart(5)} ${String(d.privileged ? 2 : 1).padStart(5)}     ${state}`;
  });
  return `${"Name".padEnd(40)} ${"ID".padStart(5)} ${"Mem".padStart(5)} ${"VCPUs".padStart(5)}     State\n${rows.map((r) => `${r}\n`).join("")}`;
}

function domid(v: string | undefined, cmd: string): number {
  if (v === undefined || !/^\d+$/.test(v)) throw new RangeError(`${cmd}: -d ID (a domid) is required`);
  return Number(v);
}

export async function run(cmd: string, argv: string[]): Promise<number> {
  const args = commandArgs(
    `xenlab ${cmd}`,
    `usage: ${USAGES[cmd]}\n`,
    argv,
    {
      socket: { type: "string" },
      domain: { type: "string", short: "d" },
      lines: { type: "string", short: "n" },
      memory: { type: "string" },
    },
    true,
  );
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  const ctl = controlPath(socketPath(values.socket as string | undefined));
  let req: ControlRequest;
  try {
    switch (cmd) {
      case "create": {
        const name = positionals[0];
        if (name === undefined) throw new RangeError("create: NAME is required");
        const kib = values.memory === undefined ? undefined : Number(values.memory);
        if (kib !== undefined && !(Number.isInteger(kib) && kib >= 8 && kib % 4 === 0))
          throw new RangeError("create: --memory must be a multiple of 4 KiB, at least 8");
        req = { op: "create", name, ...(kib === undefined ? {} : { maxPages: kib / 4 }) };
        break;
      }
      case "list":
        req = { op: "list" };
        break;
      case "destroy":
        req = { op: "destroy", domid: domid(positionals[0], cmd) };
        break;
      case "insmod": {
        const file = positionals[0];
        if (file === undefined) throw new RangeError("insmod: FILE is required");
        req = {
          op: "insmod",
          domid: domid(values.domain as string | undefined, cmd),
          url: pathToFileURL(resolve(file)).href,
          args: positionals.slice(1),
        };
        break;
      }
      case "rmmod": {
        const name = positionals[0];
        if (name === undefined) throw new RangeError("rmmod: NAME is required");
        req = { op: "rmmod", domid: domid(values.domain as string | undefined, cmd), name };
        break;
      }
      case "dmesg":
        req = { op: "dmesg", domid: domid(values.domain as string | undefined, cmd) };
        break;
      default:
        throw new RangeError(`unknown command ${cmd}`);
    }
  } catch (e) {
    process.stderr.write(`xenlab ${(e as Error).message}\nusage: ${USAGES[cmd]}\n`);
    return 2;
  }
  try {
    const v = await controlCall(ctl, req);
    switch (cmd) {
      case "create": {
        const d = v as DomainInfo;
        process.stdout.write(`${d.name} created as domain ${d.domid}\n`);
        break;
      }
      case "list":
        process.stdout.write(formatList(v as DomainInfo[]));
        break;
      case "dmesg": {
        const lines = v as string[];
        const n = values.lines === undefined ? lines.length : Number(values.lines);
        for (const l of lines.slice(Math.max(0, lines.length - n))) process.stdout.write(`${l}\n`);
        break;
      }
      case "insmod":
        break;
    }
    return 0;
  } catch (e) {
    process.stderr.write(`xenlab ${cmd}: ${(e as Error).message}\n`);
    return 1;
  }
}
