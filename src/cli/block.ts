/**
 * `xenlab block-attach | block-detach | block-list`, as xl has them (tools/xl/xl_block.c), over a
 * running host's control socket (src/host/blk-tools.ts does the work):
 *
 *   xenlab block-attach DOMAIN DISK-SPEC...     xl's disk spec (docs/blk-tools.md), one or more
 *                                               strings; a relative target is the caller's
 *   xenlab block-detach [-f] DOMAIN VDEV        "Error: Device VDEV not connected." if it is not
 *   xenlab block-list DOMAIN...                 xl's table: Vdev (the devid) BE handle state
 *                                               evt-ch ring-ref BE-path
 *
 * DOMAIN is a domid or a name, as xl takes them. Each takes `--socket PATH` (xenstored's socket
 * of the host, found as `xenlab up` finds it). Exit codes as xl: 0, or 1 on any error.
 */

import type { BlockListRow } from "../host/blk-tools.ts";
import { type ControlRequest, controlCall, controlPath } from "../host/control-client.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";
import { domainIdOrSay, listEachDomain } from "./domain-id.ts";

const USAGES = {
  "block-attach": "xenlab block-attach <Domain> <disk-spec-component(s)>... [--socket PATH]",
  "block-detach": "xenlab block-detach [-f|--force] <Domain> <DevId> [--socket PATH]",
  "block-list": "xenlab block-list <Domain(s)> [--socket PATH]",
} as const;
type BlockCommand = keyof typeof USAGES;

/** xl block-list's table. */
export function formatBlockList(rows: readonly BlockListRow[]): string {
  const line = (cols: (string | number)[], widths: number[]) =>
    `${cols.map((c, i) => String(c).padEnd(widths[i]!)).join(" ")}\n`;
  const w = [5, 3, 6, 5, 6, 8, 30];
  return (
    line(["Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"], w) +
    rows
      .map((r) => line([r.devid, r.backendId, r.handle, r.state, r.evtch, r.ringRef, r.backend], w))
      .join("")
  );
}

async function main(cmd: BlockCommand, argv: string[]): Promise<number> {
  const usage = `usage: ${USAGES[cmd]}\n`;
  const args = commandArgs(
    `xenlab ${cmd}`,
    usage,
    argv,
    {
      socket: { type: "string" },
      ...(cmd === "block-detach" ? { force: { type: "boolean", short: "f" } } : {}),
    },
    true,
  );
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  const min = cmd === "block-list" ? 1 : 2;
  if (positionals.length < min || (cmd === "block-detach" && positionals.length > 2)) {
    process.stderr.write(`xenlab ${cmd}: wrong number of arguments\n${usage}`);
    return 2;
  }
  const ctl = controlPath(socketPath(values.socket as string | undefined));
  try {
    if (cmd === "block-list") {
      const { rows, bad } = await listEachDomain(
        ctl,
        positionals,
        async (domid) => (await controlCall(ctl, { op: "block-list", domid })) as BlockListRow[],
      );
      process.stdout.write(formatBlockList(rows));
      return bad ? 1 : 0;
    }
    const [q, ...rest] = positionals as [string, ...string[]];
    const domid = await domainIdOrSay(ctl, q);
    if (domid === undefined) return 1;
    const req: ControlRequest =
      cmd === "block-attach"
        ? { op: "block-attach", domid, specs: rest, cwd: process.cwd() }
        : { op: "block-detach", domid, vdev: rest[0]!, force: values.force === true };
    await controlCall(ctl, req);
    return 0;
  } catch (e) {
    const msg = (e as Error).message;
    // xl's words where xl has them; ours otherwise.
    if (/^(command line: |Device .* not connected\.$)/.test(msg) || msg.includes("\ncommand line: "))
      process.stderr.write(`${msg.startsWith("Device") ? "Error: " : ""}${msg}\n`);
    else process.stderr.write(`xenlab ${cmd}: ${msg}\n`);
    return 1;
  }
}

export const attach = (argv: string[]): Promise<number> => main("block-attach", argv);
export const detach = (argv: string[]): Promise<number> => main("block-detach", argv);
export const list = (argv: string[]): Promise<number> => main("block-list", argv);
