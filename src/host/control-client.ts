/**
 * The client side of the host's control socket (src/host/control.ts): what the commands send and
 * get back. Kept apart from the server so a command loads only this, not the host.
 */
import { connect } from "node:net";
import type { DomainInfo } from "../hv/hypervisor.ts";
import { controlSocketError } from "../lib/errors.ts";
import type { GuestConfig } from "./guest-config.ts";

/** A row of `xenlab list`: the domain, and its memory target (xl's Mem column), KiB. */
export type ListedDomain = DomainInfo & { readonly memKib: number };

export type ControlRequest =
  | { op: "list" }
  | { op: "create"; name: string; maxPages?: number }
  | { op: "create"; config: GuestConfig }
  | { op: "destroy"; domid: number }
  | { op: "insmod"; domid: number; url: string; args: string[] }
  | { op: "rmmod"; domid: number; name: string }
  | { op: "dmesg"; domid: number }
  | { op: "lsmod"; domid: number }
  | { op: "block-attach"; domid: number; specs: string[]; cwd: string }
  | { op: "block-detach"; domid: number; vdev: string; force?: boolean }
  | { op: "block-list"; domid: number }
  | { op: "blkfront"; domid: number; cmd: string; arg: Record<string, unknown> }
  | { op: "network-attach"; domid: number; spec: string[] }
  | { op: "network-detach"; domid: number; which: string }
  | { op: "network-list"; domid: number }
  | { op: "devices"; domid?: number }
  | { op: "save"; domid: number; file: string; checkpoint: boolean; cwd: string }
  | { op: "restore"; file: string; cwd: string }
  | { op: "migrate"; domid: number; to: string };

export type ControlReply = { ok: true; value: unknown } | { ok: false; error: string };

export function controlPath(xenstoredSocket: string): string {
  return `${xenstoredSocket}.ctl`;
}

/**
 * `xenlab dmesg -f`: calls `onLine` with the domain's log so far and then each new line, and
 * resolves when the host ends the stream (the domain was destroyed, or the host stopped).
 */
export function followKernelLog(path: string, domid: number, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = "";
    let first = true;
    s.setEncoding("utf8");
    s.on("connect", () => s.write(`${JSON.stringify({ op: "dmesg", domid, follow: true })}\n`));
    s.on("data", (d: string) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const msg = JSON.parse(buf.slice(0, nl)) as ControlReply | string;
        buf = buf.slice(nl + 1);
        if (!first) onLine(msg as string);
        else {
          first = false;
          const r = msg as ControlReply;
          if (!r.ok) {
            s.destroy();
            reject(new Error(r.error));
            return;
          }
          for (const l of r.value as string[]) onLine(l);
        }
      }
    });
    s.on("close", () => resolve());
    s.on("error", (e: NodeJS.ErrnoException) => {
      reject(controlSocketError(path, e));
    });
  });
}

/** Sends one request to a running host and returns its value (or throws its error). */
export function controlCall(path: string, req: ControlRequest): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = "";
    s.setEncoding("utf8");
    s.on("connect", () => s.write(`${JSON.stringify(req)}\n`));
    s.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      s.end();
      const r = JSON.parse(buf.slice(0, nl)) as ControlReply;
      if (r.ok) resolve(r.value);
      else reject(new Error(r.error));
    });
    s.on("error", (e: NodeJS.ErrnoException) => {
      reject(controlSocketError(path, e));
    });
  });
}

/** One end of a device as `xenlab devices` gets it over the socket. */
export interface DeviceEndSummary {
  readonly domid: number;
  readonly name: string | undefined;
  readonly state: number | undefined;
}

/** A device as `xenlab devices` gets it over the socket. */
export interface DeviceSummary {
  readonly type: string;
  readonly devid: string;
  readonly frontend: DeviceEndSummary;
  readonly backend: DeviceEndSummary;
  readonly why: string;
}
