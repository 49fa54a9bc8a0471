/**
 * The live view's HTTP server (`xenlab up --http`, `xenlab demo --http`; docs/live-view.md).
 *
 * Access: like Jupyter, a random token in the URL printed at start; the first request with
 * `?token=` gets it back as a cookie, and any request with neither gets 403. It binds 127.0.0.1
 * unless a host is given. It is read-only: GET and HEAD only.
 *
 * Transport: server-sent events on `/events`. Every tick (100 ms) while a viewer is connected,
 * the aggregator's state (src/host/live.ts) is snapshotted once and, when it changed, written
 * to every viewer, with the requests answered since that viewer's last tick (at most LOG_BATCH).
 * A viewer that stops reading: the first write its socket refuses (`write()` false) marks it
 * behind, and nothing more is written to it until it drains; then it gets a fresh snapshot (a
 * resync). So a stalled viewer holds at most one message beyond the socket's buffer.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { listenTcp } from "../lib/tcp-listen.ts";
import { LOG_BATCH } from "../web/protocol.ts";
import type { Host } from "./host.ts";
import { LiveView } from "./live.ts";

/** The page's files: dist/web, beside this module once built, or under the checkout's dist/ from source. */
export const WEB_DIR = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "../../dist/web/" : "../web/", import.meta.url),
);

/** The seed's script, which the tour steps through (two levels up from src/host and dist/host alike). */
const ACTIVATE_SH = fileURLToPath(new URL("../../examples/alice/activate.sh", import.meta.url));
const TICK_MS = 100;
const COOKIE = "xenlab_token";
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".png": "image/png",
};

/** `--http [HOST:]PORT` parsed; RangeError with the fix when it is not one. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):)?(\d{1,5})$/.exec(text.trim());
  const port = m === null ? Number.NaN : Number(m[2]);
  if (m === null || port > 65535) {
    throw new RangeError(`Invalid --http value '${text}': expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080`);
  }
  const host = m[1] === undefined ? "127.0.0.1" : m[1].replace(/^\[|\]$/g, "");
  return { host, port };
}

interface Viewer {
  readonly res: ServerResponse;
  lastSeq: number;
  lastTick: number;
  behind: boolean;
}

/**
 * The live view's port, bound before the host boots (`xenlab up` binds it first, so a taken
 * port is one line and nothing started); `serve` then puts the host behind it. A request that
 * arrives in between waits in the kernel's backlog.
 */
export class LiveListener {
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  /** Binds `listen`; rejects with one line naming the cause and the fix (also: page not built). */
  static async bind(listen: { host: string; port: number }): Promise<LiveListener> {
    if (!existsSync(join(WEB_DIR, "index.html")))
      throw new Error(`The live page is not built (no ${WEB_DIR}index.html): run npm run build`);
    let route = (_req: IncomingMessage, _res: ServerResponse): void => {};
    const server = createServer((req, res) => route(req, res));
    await listenTcp(server, listen.host, listen.port, "listen", "--http PORT");
    const self = new LiveListener(server);
    route = (req, res) => self.#handle(req, res);
    return self;
  }

  #handle = (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(503, { "content-type": "text/plain; charset=utf-8", "retry-after": "1" });
    res.end("503 Service Unavailable: the host is starting; reload in a second\n");
  };

  serve(host: Host, opts: { readonly socket?: string } = {}): LiveServer {
    const live = LiveServer.serving(this.#server, host, opts);
    this.#handle = (req, res) => live.handle(req, res);
    return live;
  }

  /** Unbinds a port never served (the host did not start). */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export class LiveServer {
  readonly token: string;
  readonly url: string;
  readonly live: LiveView;
  readonly #server: Server;
  readonly #viewers = new Set<Viewer>();
  #timer: NodeJS.Timeout | null = null;
  #busy = false;
  #tourInfo: () => object = () => ({});
  /** Viewers resynchronised after they fell behind (tests and the page's footer read it). */
  resyncs = 0;

  private constructor(server: Server, live: LiveView, token: string, url: string) {
    this.#server = server;
    this.live = live;
    this.token = token;
    this.url = url;
  }

  /**
   * Starts the aggregator and the server on `listen`: LiveListener.bind, then serve. Throws an
   * Error whose message is one line naming the cause and the fix (port in use, host not local,
   * page not built).
   */
  static async start(
    host: Host,
    listen: { host: string; port: number },
    opts: { readonly socket?: string } = {},
  ): Promise<LiveServer> {
    return (await LiveListener.bind(listen)).serve(host, opts);
  }

  /** LiveListener.serve's half of start(): the view of `host` behind the bound `server`. */
  static serving(server: Server, host: Host, opts: { readonly socket?: string }): LiveServer {
    const token = randomBytes(24).toString("hex");
    const live = new LiveView(host);
    const addr = server.address() as AddressInfo;
    const shown = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    const url = `http://${shown === "0.0.0.0" ? "127.0.0.1" : shown}:${addr.port}/?token=${token}`;
    const self = new LiveServer(server, live, token, url);
    self.#tourInfo = () => ({
      socket: opts.socket ?? null,
      domU: host.hv.list().find((d) => d.domid !== 0)?.domid ?? null,
      activate: existsSync(ACTIVATE_SH) ? readFileSync(ACTIVATE_SH, "utf8") : "",
    });
    live.start();
    return self;
  }

  /** Viewers connected, those behind (not read from since their socket refused a write), and the bytes queued for them all. */
  get stats(): { viewers: number; behind: number; queuedBytes: number; resyncs: number } {
    let behind = 0;
    let queuedBytes = 0;
    for (const v of this.#viewers) {
      if (v.behind) behind++;
      queuedBytes += v.res.writableLength;
    }
    return { viewers: this.#viewers.size, behind, queuedBytes, resyncs: this.resyncs };
  }

  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const v of this.#viewers) v.res.end();
    this.#viewers.clear();
    this.live.stop();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** One request to the view (the listener routes them here once the host is served). */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#request(req, res);
  }

  #authorised(req: IncomingMessage, url: URL): boolean {
    if (url.searchParams.get("token") === this.token) return true;
    const cookies = (req.headers.cookie ?? "").split(/;\s*/);
    return cookies.includes(`${COOKIE}=${this.token}`);
  }

  #request(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    if (!this.#authorised(req, url)) {
      res.writeHead(403, { "content-type": "text/plain; charset=utf-8" });
      res.end("403 Forbidden: open the URL with ?token=… that xenlab printed when it started\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" });
      res.end();
      return;
    }
    const headers: Record<string, string> = {
      "set-cookie": `${COOKIE}=${this.token}; HttpOnly; SameSite=Strict; Path=/`,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    };
    if (url.pathname === "/events") {
      this.#attach(req, res, headers);
      return;
    }
    if (url.pathname === "/tour.json") {
      res.writeHead(200, { ...headers, "content-type": "application/json" });
      res.end(JSON.stringify(this.#tourInfo()));
      return;
    }
    const file = url.pathname === "/" ? "index.html" : normalize(url.pathname).replace(/^\/+/, "");
    const type = TYPES[extname(file)];
    if (file.includes("..") || type === undefined || !existsSync(join(WEB_DIR, file))) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("404 Not Found\n");
      return;
    }
    res.writeHead(200, { ...headers, "content-type": type });
    res.end(req.method === "HEAD" ? undefined : readFileSync(join(WEB_DIR, file)));
  }

  #attach(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
    res.writeHead(200, { ...headers, "content-type": "text/event-stream", connection: "keep-alive" });
    res.write(": xenlab live view\n\n");
    // With a viewer, everything is recorded; without one, only the devices' timelines (live.ts).
    this.live.recorder.full = true;
    const v: Viewer = {
      res,
      lastSeq: Math.max(0, this.live.recorder.lastSeq - LOG_BATCH),
      lastTick: -1,
      behind: false,
    };
    this.#viewers.add(v);
    res.on("drain", () => {
      if (!v.behind) return;
      v.behind = false;
      v.lastTick = -1; // a fresh snapshot on the next tick
      this.resyncs++;
    });
    req.on("close", () => {
      this.#viewers.delete(v);
      if (this.#viewers.size === 0) this.live.recorder.full = false;
    });
    if (this.#timer === null) this.#timer = setInterval(() => void this.#tick(), TICK_MS);
  }

  async #tick(): Promise<void> {
    if (this.#viewers.size === 0) {
      if (this.#timer !== null) clearInterval(this.#timer);
      this.#timer = null;
      return;
    }
    if (this.#busy) return; // a slow snapshot: skip this tick rather than pile them up
    this.#busy = true;
    try {
      // Every tick: ring indexes move with no event to say so (a ring is shared memory).
      const state = await this.live.snapshot();
      for (const v of this.#viewers) {
        if (v.behind) continue;
        let ok = true;
        if (v.lastTick !== state.tick) {
          ok = v.res.write(`event: state\ndata: ${state.json}\n\n`);
          v.lastTick = state.tick;
        }
        const log = this.live.recorder.logSince(v.lastSeq, LOG_BATCH);
        if (log.length > 0) {
          v.lastSeq = log[log.length - 1]!.seq;
          ok = v.res.write(`event: log\ndata: ${JSON.stringify(log)}\n\n`) && ok;
        }
        if (!ok) v.behind = true;
      }
    } finally {
      this.#busy = false;
    }
  }
}
