/**
 * `xenlab devices [DOMAIN]`: every XenBus device of a running `xenlab up`, the frontend's and the
 * backend's state side by side, and under each the line that says what holds it up
 * (src/xenbus/why-stuck.ts). DOMAIN (a domid or a name) keeps the devices it is either end of.
 *
 *   Frontend      Backend       Type       Dev    Frontend state    Backend state
 *   domU (1)      Domain-0 (0)  alice_dev  0      Initialising (1)  InitWait (2)
 *     frontend Initialising: no driver for alice_dev in domain 1
 */

import {
  controlCall,
  controlPath,
  type DeviceEndSummary,
  type DeviceSummary,
} from "../host/control-client.ts";
import { stateText } from "../xenbus/why-stuck.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";
import { domainId, invalidDomain } from "./domain-id.ts";

const USAGE = "usage: xenlab devices [DOMAIN] [--socket PATH]\n";

function who(e: DeviceEndSummary): string {
  return e.name === undefined ? `(${e.domid})` : `${e.name} (${e.domid})`;
}

/** The table, one device a row and its why-stuck line under it. */
export function formatDevices(devices: readonly DeviceSummary[]): string {
  const head = ["Frontend", "Backend", "Type", "Dev", "Frontend state", "Backend state"];
  const rows = devices.map((d) => [
    who(d.frontend),
    who(d.backend),
    d.type,
    d.devid,
    stateText(d.frontend.state),
    stateText(d.backend.state),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cols: string[]) => `${cols.map((c, i) => c.padEnd(widths[i]!)).join("  ")}`.trimEnd();
  return [line(head), ...rows.flatMap((r, i) => [line(r), `  ${devices[i]!.why}`])]
    .map((l) => `${l}\n`)
    .join("");
}

export async function run(argv: string[]): Promise<number> {
  const args = commandArgs("xenlab devices", USAGE, argv, { socket: { type: "string" } }, true);
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  if (positionals.length > 1) {
    process.stderr.write(`xenlab devices: wrong number of arguments\n${USAGE}`);
    return 2;
  }
  const ctl = controlPath(socketPath(values.socket as string | undefined));
  try {
    let domid: number | undefined;
    if (positionals[0] !== undefined) {
      domid = await domainId(ctl, positionals[0]);
      if (domid === undefined) {
        process.stderr.write(`${invalidDomain(positionals[0])}\n`);
        return 1;
      }
    }
    const devices = (await controlCall(ctl, {
      op: "devices",
      ...(domid === undefined ? {} : { domid }),
    })) as DeviceSummary[];
    process.stdout.write(devices.length === 0 ? "no devices\n" : formatDevices(devices));
    return 0;
  } catch (e) {
    process.stderr.write(`xenlab devices: ${(e as Error).message}\n`);
    return 1;
  }
}
