/**
 * `xenlab network-attach | network-detach | network-list`, as xl has them (tools/xl/xl_nic.c), over a
 * running host's control socket (src/host/nic.ts does the work):
 *
 *   xenlab network-attach DOMAIN [VIF-SPEC...]   xl's vif spec: mac=…,bridge=…,ip=…,script=…,
 *                                                vifname=…,rate=…,mtu=…,devid=… (one string or
 *                                                several); prints nothing, as xl, once Connected
 *   xenlab network-detach DOMAIN DEVID|MAC       "Error: Device X not connected." if it is not
 *   xenlab network-list DOMAIN...                xl's table: Idx BE Mac Addr. handle state evt-ch
 *                                                tx-/rx-ring-ref BE-path
 *
 * Each vif gets a passt of its own (bridge=none: no uplink); docs/net.md. DOMAIN is a domid or a
 * name. Each takes `--socket PATH`. Exit codes as xl: 0, or 1 on any error.
 */
import { type ControlRequest, controlCall, controlPath } from "../host/control-client.ts";
import type { NicListRow } from "../host/nic.ts";
import { parseNicSpec } from "../host/nic-spec.ts";
import { errorMessage } from "../lib/errors.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";
import { domainIdOrSay, listEachDomain } from "./domain-id.ts";

const USAGES = {
  "network-attach": "xenlab network-attach <Domain> [mac=<MAC>,bridge=<name>,...] [--socket PATH]",
  "network-detach": "xenlab network-detach <Domain> <DevId|mac> [--socket PATH]",
  "network-list": "xenlab network-list <Domain(s)> [--socket PATH]",
} as const;
type NetworkCommand = keyof typeof USAGES;

/** xl network-list's table. */
export function formatNetworkList(rows: readonly NicListRow[]): string {
  let out = "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path\n";
  for (const r of rows) {
    const refs = `${r.txRingRef}/${r.rxRingRef}`;
    out += `${String(r.devid).padEnd(3)} ${String(r.backendId).padEnd(2)} ${r.mac.padEnd(17)} ${String(r.handle).padStart(6)} ${String(r.state).padStart(5)} ${String(r.evtch).padStart(6)} ${refs.padStart(10).padEnd(17)} ${r.backend}\n`;
  }
  return out;
}

async function main(cmd: NetworkCommand, argv: string[]): Promise<number> {
  const usage = `usage: ${USAGES[cmd]}\n`;
  const args = commandArgs(`xenlab ${cmd}`, usage, argv, { socket: { type: "string" } }, true);
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  const min = cmd === "network-detach" ? 2 : 1;
  if (positionals.length < min || (cmd === "network-detach" && positionals.length > 2)) {
    process.stderr.write(`xenlab ${cmd}: wrong number of arguments\n${usage}`);
    return 2;
  }
  if (cmd === "network-attach") {
    // As xl network-attach: the spec is parsed before the domain is looked for.
    try {
      parseNicSpec(positionals.slice(1));
    } catch (e) {
      process.stderr.write(`xenlab ${cmd}: ${errorMessage(e)}\n`);
      return 1;
    }
  }
  const ctl = controlPath(socketPath(values.socket as string | undefined));
  try {
    if (cmd === "network-list") {
      const { rows, bad } = await listEachDomain(
        ctl,
        positionals,
        async (domid) => (await controlCall(ctl, { op: "network-list", domid })) as NicListRow[],
      );
      process.stdout.write(formatNetworkList(rows));
      return bad ? 1 : 0;
    }
    const [q, ...rest] = positionals as [string, ...string[]];
    const domid = await domainIdOrSay(ctl, q);
    if (domid === undefined) return 1;
    const req: ControlRequest =
      cmd === "network-attach"
        ? { op: "network-attach", domid, spec: rest }
        : { op: "network-detach", domid, which: rest[0]! };
    await controlCall(ctl, req);
    return 0;
  } catch (e) {
    const msg = (e as Error).message;
    if (/^Device .* not connected\.$/.test(msg)) process.stderr.write(`Error: ${msg}\n`);
    else process.stderr.write(`xenlab ${cmd}: ${msg}\n`);
    return 1;
  }
}

export const attach = (argv: string[]): Promise<number> => main("network-attach", argv);
export const detach = (argv: string[]): Promise<number> => main("network-detach", argv);
export const list = (argv: string[]): Promise<number> => main("network-list", argv);
