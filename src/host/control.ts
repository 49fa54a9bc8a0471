/**
 * The host's control socket: how `xenlab create|list|destroy|insmod|rmmod|lsmod|dmesg` reach a running
 * `xenlab up` (as `xl` reaches the hypervisor and libxl). It sits next to xenstored's socket, at
 * `<xenstored socket>.ctl`, and speaks one JSON line per request and per reply:
 *
 *   → {"op":"list"}                          ← {"ok":true,"value":[…DomainInfo]}
 *   → {"op":"insmod","domid":1,"url":"file:///…/alice_front.ts","args":[]}
 *                                            ← {"ok":true,"value":"alice_front"}
 *   → {"op":"destroy","domid":7}             ← {"ok":false,"error":"No domain 7"}
 *
 * One request, `{"op":"console","domid":N}`, turns the connection into a console's byte stream
 * after its reply line (src/console/stream.ts); another, `{"op":"dmesg","domid":N,"follow":true}`,
 * into the domain's kernel log, one JSON string a line, until the domain is destroyed; two,
 * `blk-write` and `blk-read`, into a stream of a guest disk's bytes for `xenlab blk-cp`
 * (src/host/blk-stream.ts); `vchan`, into one direction of a vchan for `xenlab vchan`
 * (src/host/vchan-stream.ts); and `migrate-receive` into a migration's receiving end (migrate.ts).
 */

import { createServer, type Server, type Socket } from "node:net";
import { parseConsoleRequest, serveConsole } from "../console/stream.ts";
import { errorMessage } from "../lib/errors.ts";
import { closeUnix, listenUnix, type UnixListener } from "../lib/unix-socket.ts";
import type { DeviceEnd } from "../xenbus/why-stuck.ts";
import { parseBlkStreamRequest, serveBlkStream } from "./blk-stream.ts";
import { blkfrontCall, blockAttach, blockDetach, blockList } from "./blk-tools.ts";
import type {
  ControlReply,
  ControlRequest,
  DeviceEndSummary,
  DeviceSummary,
  ListedDomain,
} from "./control-client.ts";
import { listDevices } from "./devices.ts";
import { createGuest } from "./guest.ts";
import type { Host } from "./host.ts";
import { migrateGuest, receiveMigration } from "./migrate.ts";
import { restoreFromFile, saveToFile } from "./save-file.ts";
import { parseVchanStreamRequest, serveVchanStream } from "./vchan-stream.ts";

function listDomains(h: Host): ListedDomain[] {
  return h.hv.list().map((d) => ({ ...d, memKib: h.configs.get(d.domid)?.memoryKib ?? d.maxPages * 4 }));
}

export class ControlServer {
  readonly #host: Host;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #listener: UnixListener | null = null;

  constructor(host: Host) {
    this.#host = host;
    this.#server = createServer((s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
      let buf = Buffer.alloc(0);
      const onData = (d: Buffer): void => {
        buf = Buffer.concat([buf, d]);
        for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10)) {
          const line = buf.subarray(0, nl).toString("utf8");
          buf = buf.subarray(nl + 1);
          // `xenlab dmesg -f`: the log so far, then each new line, until the domain goes.
          const follow = parseFollowRequest(line);
          if (follow !== undefined) {
            s.off("data", onData);
            this.#followLog(s, follow);
            return;
          }
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
          // `xenlab migrate` from another host: after this line come the migration's messages.
          if (isMigrateReceive(line)) {
            s.off("data", onData);
            void receiveMigration(this.#host, s, buf);
            return;
          }
          // `xenlab vchan`: after this request the connection is one direction of a vchan.
          const vchan = parseVchanStreamRequest(line);
          if (vchan !== undefined) {
            s.off("data", onData);
            void serveVchanStream(this.#host, s, vchan, buf);
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
    this.#listener = await listenUnix(this.#server, path);
  }

  /**
   * Stops listening and ends every connection: a stream (`dmesg -f`, `console`, `blk-cp`) would
   * otherwise hold the server open, and with it the host's exit, as long as its client waits.
   */
  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return closeUnix(this.#server, this.#listener);
  }

  /**
   * Streams a domain's kernel log: the reply line (its lines so far, as `dmesg`), then one JSON
   * string a line for each new line, until the domain is destroyed (the stream ends) or the
   * client goes.
   */
  #followLog(s: Socket, domid: number): void {
    const h = this.#host;
    if (h.hv.info(domid) === undefined) {
      s.end(`${JSON.stringify({ ok: false, error: `No domain ${domid}` })}\n`);
      return;
    }
    const stop = h.watchKernelLog((d, l) => {
      if (d !== domid) return;
      if (l === null) {
        stop();
        s.end();
      } else if (!s.destroyed) s.write(`${JSON.stringify(l)}\n`);
    });
    s.write(`${JSON.stringify({ ok: true, value: h.hv.dmesg(domid) })}\n`);
    s.on("close", stop);
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
        return listDomains(h);
      case "create":
        if ("config" in r) return createGuest(h, r.config);
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
      case "lsmod":
        return h.hv.lsmod(r.domid);
      case "block-attach":
        return blockAttach(h, r.domid, r.specs, r.cwd);
      case "block-detach":
        await blockDetach(h, r.domid, r.vdev, r.force === true);
        return null;
      case "block-list":
        return blockList(h, r.domid);
      case "blkfront":
        return blkfrontCall(h, r.domid, r.cmd, r.arg);
      case "devices":
        return devicesOf(h, r.domid);
      case "save":
        return saveToFile(h, r.domid, r.file, { checkpoint: r.checkpoint, cwd: r.cwd });
      case "restore":
        return restoreFromFile(h, r.file, { cwd: r.cwd });
      case "migrate":
        return migrateGuest(h, r.domid, r.to);
      default:
        throw new Error(`Unknown control request '${(r as { op: string }).op}'`);
    }
  }
}

function isMigrateReceive(line: string): boolean {
  try {
    return (JSON.parse(line) as { op?: unknown }).op === "migrate-receive";
  } catch {
    return false;
  }
}

/** The domid of a `{"op":"dmesg","domid":N,"follow":true}` request, else undefined. */
function parseFollowRequest(line: string): number | undefined {
  try {
    const r = JSON.parse(line) as { op?: unknown; domid?: unknown; follow?: unknown };
    return r.op === "dmesg" && r.follow === true && typeof r.domid === "number" ? r.domid : undefined;
  } catch {
    return undefined;
  }
}

async function devicesOf(h: Host, domid: number | undefined): Promise<DeviceSummary[]> {
  if (domid !== undefined && h.hv.info(domid) === undefined) throw new Error(`No domain ${domid}`);
  const domains = h.hv.list();
  const summary = (e: DeviceEnd): DeviceEndSummary => ({
    domid: e.domid,
    name: domains.find((d) => d.domid === e.domid)?.name,
    state: e.state,
  });
  const devices = await listDevices(
    {
      xs: h.xs,
      domids: () => domains.map((d) => d.domid),
      attribute: (id, path) => h.hv.attribute(id, path),
    },
    domid,
  );
  return devices.map((d) => ({
    type: d.type,
    devid: d.devid,
    frontend: summary(d.frontend),
    backend: summary(d.backend),
    why: d.why,
  }));
}
