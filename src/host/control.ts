/**
 * The host's control socket: how `xenlab create|list|destroy|insmod|rmmod|dmesg` reach a running
 * `xenlab up` (as `xl` reaches the hypervisor and libxl). It sits next to xenstored's socket, at
 * `<xenstored socket>.ctl`, and speaks one JSON line per request and per reply:
 *
 *   → {"op":"list"}                          ← {"ok":true,"value":[…DomainInfo]}
 *   → {"op":"insmod","domid":1,"url":"file:///…/alice_front.ts","args":[]}
 *                                            ← {"ok":true,"value":"alice_front"}
 *   → {"op":"destroy","domid":7}             ← {"ok":false,"error":"No domain 7"}
 */

import { connect, createServer, type Server } from "node:net";
import { closeUnix, listenUnix } from "../unix-socket.ts";
import type { Host } from "./host.ts";

export type ControlRequest =
  | { op: "list" }
  | { op: "create"; name: string; maxPages?: number }
  | { op: "destroy"; domid: number }
  | { op: "insmod"; domid: number; url: string; args: string[] }
  | { op: "rmmod"; domid: number; name: string }
  | { op: "dmesg"; domid: number };

export type ControlReply = { ok: true; value: unknown } | { ok: false; error: string };

export function controlPath(xenstoredSocket: string): string {
  return `${xenstoredSocket}.ctl`;
}

export class ControlServer {
  readonly #host: Host;
  readonly #server: Server;
  #path: string | null = null;

  constructor(host: Host) {
    this.#host = host;
    this.#server = createServer((s) => {
      let buf = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => {
        buf += d;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          void this.#handle(line).then((r) => {
            if (!s.destroyed) s.write(`${JSON.stringify(r)}\n`);
          });
        }
      });
      s.on("error", () => {});
    });
  }

  async listen(path: string): Promise<void> {
    await listenUnix(this.#server, path);
    this.#path = path;
  }

  close(): Promise<void> {
    return closeUnix(this.#server, this.#path);
  }

  async #handle(line: string): Promise<ControlReply> {
    try {
      return { ok: true, value: await this.#do(JSON.parse(line) as ControlRequest) };
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  async #do(r: ControlRequest): Promise<unknown> {
    const h = this.#host;
    switch (r.op) {
      case "list":
        return h.hv.list();
      case "create":
        return h.createDomain({
          name: r.name,
          ...(r.maxPages === undefined ? {} : { maxPages: r.maxPages }),
        });
      case "destroy":
        if (h.hv.info(r.domid) === undefined) throw new Error(`No domain ${r.domid}`);
        await h.destroyDomain(r.domid);
        return null;
      case "insmod":
        return h.hv.insmod(r.domid, r.url, r.args);
      case "rmmod":
        await h.hv.rmmod(r.domid, r.name);
        return null;
      case "dmesg":
        return h.hv.dmesg(r.domid);
      default:
        throw new Error(`Unknown control request '${(r as { op: string }).op}'`);
    }
  }
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
      reject(
        e.code === "ENOENT" || e.code === "ECONNREFUSED"
          ? new Error(`No xenlab host at ${path}: start one with 'xenlab up'`)
          : e,
      );
    });
  });
}
