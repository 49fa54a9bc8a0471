/**
 * The host's control socket: how `xenlab create|list|destroy|insmod|rmmod|dmesg` reach a running
 * `xenlab up` (as `xl` reaches the hypervisor and libxl). It sits next to xenstored's socket, at
 * `<xenstored socket>.ctl`, and speaks one JSON line per request and per reply:
 *
 *   → {"op":"list"}                          ← {"ok":true,"value":[…DomainInfo]}
 *   → {"op":"insmod","domid":1,"url":"file:///…/alice_front.ts","args":[]}
 *                                            ← {"ok":true,"value":"alice_front"}
 *   → {"op":"destroy","domid":7}             ← {"ok":false,"error":"No domain 7"}
 *
 * One request, `{"op":"console","domid":N}`, turns the connection into a console's byte stream
 * after its reply line (src/console/stream.ts); two, `blk-write` and `blk-read`, into a stream of
 * a guest disk's bytes for `xenlab blk-cp` (src/host/blk-stream.ts).
 */

import { connect, createServer, type Server } from "node:net";
import { parseConsoleRequest, serveConsole } from "../console/stream.ts";
import { errorMessage } from "../lib/errors.ts";
import { closeUnix, listenUnix } from "../lib/unix-socket.ts";
import { parseBlkStreamRequest, serveBlkStream } from "./blk-stream.ts";
import { blkfrontCall, blockAttach, blockDetach, blockList } from "./blk-tools.ts";
import type { Host } from "./host.ts";

export type ControlRequest =
  | { op: "list" }
  | { op: "create"; name: string; maxPages?: number }
  | { op: "destroy"; domid: number }
  | { op: "insmod"; domid: number; url: string; args: string[] }
  | { op: "rmmod"; domid: number; name: string }
  | { op: "dmesg"; domid: number }
  | { op: "block-attach"; domid: number; specs: string[]; cwd: string }
  | { op: "block-detach"; domid: number; vdev: string; force?: boolean }
  | { op: "block-list"; domid: number }
  | { op: "blkfront"; domid: number; cmd: string; arg: Record<string, unknown> };

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
      let buf = Buffer.alloc(0);
      const onData = (d: Buffer): void => {
        buf = Buffer.concat([buf, d]);
        for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10)) {
          const line = buf.subarray(0, nl).toString("utf8");
          buf = buf.subarray(nl + 1);
          // `xenlab console`: after this request the connection is the console's byte stream.
          const stream = parseConsoleRequest(line);
          if (stream !== undefined) {
            s.off("data", onData);
            void serveConsole(this.#host.console, this.#host.hv.list(), s, stream, buf);
            return;
          }
          // `xenlab blk-cp`: after this request come the disk's bytes, framed (blk-stream.ts).
          const blk = parseBlkStreamRequest(line);
          if (blk !== undefined) {
            s.off("data", onData);
            void serveBlkStream(this.#host, s, blk, buf);
            return;
          }
          void this.#handle(line).then((r) => {
            if (!s.destroyed) s.write(`${JSON.stringify(r)}\n`);
          });
        }
      };
      s.on("data", onData);
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
      return { ok: false, error: errorMessage(e) };
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
      case "block-attach":
        return blockAttach(h, r.domid, r.specs, r.cwd);
      case "block-detach":
        await blockDetach(h, r.domid, r.vdev, r.force === true);
        return null;
      case "block-list":
        return blockList(h, r.domid);
      case "blkfront":
        return blkfrontCall(h, r.domid, r.cmd, r.arg);
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
