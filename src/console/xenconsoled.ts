/**
 * The console daemon of dom0 (Xen's xenconsoled, tools/console/daemon/io.c), in the host process:
 * dom0 user space, its event channels on dom0's vCPU 1 beside xenstored's.
 *
 * Finding consoles, as xenconsoled does: a watch on @introduceDomain and @releaseDomain (token
 * `domlist`) enumerates the guests (domid 1 and up: dom0's console is Xen's own); each new guest
 * gets a watch on /local/domain/N/console (token `domN`), and each event there tries to connect:
 * read `ring-ref` and `port` (both needed, else wait for the next event), skip the console if
 * `type` is not `xenconsoled`, read `limit`, map the page through grant ref 0
 * (GNTTAB_RESERVED_CONSOLE, which the domain builder filled), bind the guest's unbound port, and
 * open the log file `guest-<name>.log` in the log directory (append). A guest that is gone at the
 * next `domlist` event is released: its port closed, its page unmapped, its log closed, its
 * clients told.
 *
 * Output (the guest's `out` ring): each event reads what is there once, publishes `out_cons` and
 * notifies the guest (so it can flush what it queued), writes the bytes to the log at once, then
 * gives them to the attached clients, or keeps them in an OutputBuffer capped by `limit` until a
 * client attaches (xenconsoled's buffer with --overflow-data=discard, its default). A client whose
 * socket does not drain (more than `limit` bytes queued) loses output, counted in `outputDropped`,
 * rather than growing the host's memory. The last CONSOLE_TAIL_MAX bytes are also kept in a fixed
 * ring for the live view (`recentOutput()`), whoever took them. Corrupt indexes (`prod − cons > size`) are ignored, as
 * xenconsoled ignores them ("ring is screwed").
 *
 * Input (clients → the guest's `in` ring): queued, and written into the ring as space allows,
 * again at each event from the guest (it notifies after reading). xenconsoled reads its pty only
 * while the ring has space, so a guest that never reads stalls the pty's writer; here clients are
 * sockets of the host process, so the queue is bounded (`inputMax`, default 4 KiB) and what does
 * not fit is dropped and counted (`inputDropped`). Either way nothing waits: not the host, not
 * other consoles, not XenStore.
 *
 * Collaborators come through the constructor (the hypervisor, dom0's vCPU 1, an XsClient of its
 * own, a log sink opener), so tests can pass their own.
 */

import type { Hypervisor } from "../hv/hypervisor.ts";
import type { EventChannelUpcall } from "../kernel/evtchn.ts";
import { errorMessage } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { ConsoleInterface } from "../ring/byte-ring.ts";
import { GNTMAP, GNTST, GNTTAB_RESERVED } from "../xen/grant-table-abi.ts";
import { pageBytes } from "../xen/xen.ts";
import { domainPath } from "../xenbus/keys.ts";
import type { XsClient } from "../xenstore/client.ts";
import type { XsWatch } from "../xenstore/client-watch.ts";
import { ConsoleKey, consoleFrontendPath, LIBXL_XENCONSOLE_LIMIT, parseConsoleKeys } from "./keys.ts";
import { OutputBuffer } from "./output-buffer.ts";
import { OutputTail } from "./output-tail.ts";

/** Input bytes the backend holds for a guest whose in ring is full. */
export const CONSOLE_INPUT_MAX = 4096;

/** The last output bytes of each console kept for the live view (`recentOutput()`). */
export const CONSOLE_TAIL_MAX = 16 * 1024;

/** Where a console's log goes (a file, in the host). */
export interface ConsoleLogSink {
  write(bytes: Uint8Array): void;
  close(): Promise<void>;
}

/** An attached client (`xenlab console`): the backend writes the guest's output to it. */
export interface ConsoleClient {
  write(bytes: Uint8Array): void;
  /** Bytes written to it and not yet delivered (a socket's writableLength). */
  readonly queued: number;
  /** The console went away (the domain was destroyed or the host stops). */
  close(reason: string): void;
}

/** A client's handle on the console it attached to. */
export interface ConsoleSession {
  readonly domid: number;
  readonly name: string;
  /** Bytes typed by the client, for the guest. */
  input(bytes: Uint8Array): void;
  detach(): void;
}

export interface ConsoleStats {
  readonly domid: number;
  readonly name: string;
  /** Dom0's end of the console event channel. */
  readonly port: number;
  readonly clients: number;
  /** Input waiting for room in the guest's in ring, and input dropped past `inputMax`. */
  readonly inputQueued: number;
  readonly inputDropped: number;
  /** Output kept for the next client, and output the `limit` cap discarded. */
  readonly outputBuffered: number;
  readonly outputDiscarded: number;
  /** Output not given to clients whose sockets did not drain. */
  readonly outputDropped: number;
  /** Output bytes read from the guest so far. */
  readonly outputBytes: number;
  /** Events handled from the guest (its notifications, coalesced while pending). */
  readonly events: number;
}

export interface ConsoleBackendOptions {
  readonly hv: Hypervisor;
  /** Dom0's vCPU 1, whose upcall loop runs on this thread. */
  readonly vcpu: EventChannelUpcall;
  /** A XenStore connection of the daemon's own (dom0, privileged). */
  readonly xs: XsClient;
  readonly log: Logger;
  /** Opens `guest-<name>.log` (the file name); none: no log files (xenconsoled --log=none). */
  readonly openLog?: (fileName: string) => ConsoleLogSink;
  readonly inputMax?: number;
}

interface Console {
  readonly domid: number;
  readonly name: string;
  readonly intf: ConsoleInterface;
  readonly handle: number;
  /** Dom0's end of the console event channel. */
  readonly port: number;
  readonly limit: number;
  readonly logSink: ConsoleLogSink | null;
  readonly backlog: OutputBuffer;
  /** The newest output, whoever took it (the live view's Consoles panel). */
  readonly tail: OutputTail;
  readonly clients: Set<ConsoleClient>;
  readonly input: Uint8Array[];
  inputQueued: number;
  inputDropped: number;
  outputDropped: number;
  outputBytes: number;
  events: number;
  corruptLogged: boolean;
}

interface Dom {
  readonly domid: number;
  con: Console | null;
  connecting: boolean;
}

export class ConsoleBackend {
  readonly #hv: Hypervisor;
  readonly #vcpu: EventChannelUpcall;
  readonly #xs: XsClient;
  readonly #log: Logger;
  readonly #openLog: ((fileName: string) => ConsoleLogSink) | undefined;
  readonly #inputMax: number;
  readonly #doms = new Map<number, Dom>();
  readonly #readBuf = new Uint8Array(2048);
  #watch: XsWatch | null = null;
  #loop: Promise<void> | null = null;
  /** Resolvers waiting for a domain's console to connect (tests, `xenlab console` at boot). */
  readonly #waiters = new Map<number, (() => void)[]>();

  constructor(opts: ConsoleBackendOptions) {
    this.#hv = opts.hv;
    this.#vcpu = opts.vcpu;
    this.#xs = opts.xs;
    this.#log = opts.log;
    this.#openLog = opts.openLog;
    this.#inputMax = opts.inputMax ?? CONSOLE_INPUT_MAX;
  }

  /** Starts watching for domains (xenconsoled's `domlist` watch). */
  async start(): Promise<void> {
    if (this.#watch !== null) throw new Error("Cannot start the console backend: it is running");
    const w = this.#xs.watch("@introduceDomain", "domlist");
    this.#watch = w;
    await w.ready;
    await w.add("@releaseDomain", "domlist");
    this.#loop = (async () => {
      for await (const ev of w) await this.#event(ev.token);
    })().catch((e: unknown) => {
      this.#log.debug({ err: errorMessage(e) }, "console watch ended");
    });
  }

  /** Releases every console and stops watching. */
  async stop(): Promise<void> {
    const w = this.#watch;
    this.#watch = null;
    for (const d of [...this.#doms.values()]) await this.#forget(d, "the host is stopping");
    if (w !== null) await w.close().catch(() => {});
    await this.#loop;
  }

  /** Domids whose console is connected now. */
  get attached(): number[] {
    return [...this.#doms.values()].filter((d) => d.con !== null).map((d) => d.domid);
  }

  stats(domid: number): ConsoleStats | undefined {
    const c = this.#doms.get(domid)?.con;
    if (c == null) return undefined;
    return {
      domid: c.domid,
      name: c.name,
      port: c.port,
      clients: c.clients.size,
      inputQueued: c.inputQueued,
      inputDropped: c.inputDropped,
      outputBuffered: c.backlog.size,
      outputDiscarded: c.backlog.discarded,
      outputDropped: c.outputDropped,
      outputBytes: c.outputBytes,
      events: c.events,
    };
  }

  /**
   * The last CONSOLE_TAIL_MAX bytes `domid` wrote on its console and how many it wrote in all;
   * undefined while its console is not connected. Reading takes nothing from clients.
   */
  recentOutput(domid: number): { bytes: Uint8Array; total: number } | undefined {
    const c = this.#doms.get(domid)?.con;
    return c == null ? undefined : { bytes: c.tail.bytes(), total: c.tail.total };
  }

  /** Resolves once `domid`'s console is connected (rejects after `timeoutMs`). */
  whenConnected(domid: number, timeoutMs = 10_000): Promise<void> {
    if (this.#doms.get(domid)?.con != null) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = this.#waiters.get(domid);
        if (list !== undefined) list.splice(list.indexOf(done), 1);
        reject(new Error(`The console of domain ${domid} did not connect`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const list = this.#waiters.get(domid) ?? [];
      list.push(done);
      this.#waiters.set(domid, list);
    });
  }

  /**
   * Attaches a client to `domid`'s console: it first gets what the backend kept for it, then
   * the live output; its input goes to the guest.
   */
  attach(domid: number, client: ConsoleClient): ConsoleSession {
    const c = this.#doms.get(domid)?.con;
    if (c == null) throw new Error(`Domain ${domid} has no console attached`);
    const kept = c.backlog.take();
    if (kept.length > 0) client.write(kept);
    c.clients.add(client);
    return {
      domid,
      name: c.name,
      input: (bytes) => this.#input(c, bytes),
      detach: () => {
        c.clients.delete(client);
      },
    };
  }

  // ------------------------------------------------------------------ discovery

  async #event(token: string): Promise<void> {
    if (token === "domlist") {
      await this.#enumerate();
      return;
    }
    const m = /^dom(\d+)$/.exec(token);
    if (m === null) return;
    const d = this.#doms.get(Number(m[1]));
    if (d !== undefined) await this.#connect(d);
  }

  /** xenconsoled's enum_domains: new guests get a watch, vanished ones are released. */
  async #enumerate(): Promise<void> {
    const live = new Set<number>();
    for (const info of this.#hv.list()) {
      if (info.domid === 0 || info.state === "dying") continue;
      live.add(info.domid);
      if (this.#doms.has(info.domid)) continue;
      const d: Dom = { domid: info.domid, con: null, connecting: false };
      this.#doms.set(info.domid, d);
      // Its initial event makes the first connection attempt.
      await this.#watch?.add(consoleFrontendPath(d.domid), `dom${d.domid}`).catch(() => {});
    }
    for (const d of [...this.#doms.values()]) {
      if (!live.has(d.domid)) await this.#forget(d, `domain ${d.domid} is gone`);
    }
  }

  /** xenconsoled's console_create_ring. */
  async #connect(d: Dom): Promise<void> {
    if (d.con !== null || d.connecting) return;
    d.connecting = true;
    try {
      const fe = consoleFrontendPath(d.domid);
      const [ringRef, port, type, limit, name] = await Promise.all(
        [ConsoleKey.ringRef, ConsoleKey.port, ConsoleKey.type, ConsoleKey.limit]
          .map((k) => this.#xs.tryRead(`${fe}/${k}`))
          .concat(this.#xs.tryRead(`${domainPath(d.domid)}/name`)),
      );
      const keys = parseConsoleKeys({ ringRef, port, type, limit });
      if (keys === undefined) return;
      if (keys.type !== undefined && keys.type !== "xenconsoled") return;
      if (this.#doms.get(d.domid) !== d) return;
      d.con = this.#map(d.domid, keys.port, keys.limit ?? LIBXL_XENCONSOLE_LIMIT, name ?? `dom${d.domid}`);
    } finally {
      d.connecting = false;
    }
    const c = d.con;
    if (c === null) return;
    this.#log.info({ domid: d.domid, port: c.port }, `console of domain ${d.domid} (${c.name}) attached`);
    for (const w of this.#waiters.get(d.domid) ?? []) w();
    this.#waiters.delete(d.domid);
    // Output the guest wrote before we bound is read now, not at its next kick.
    this.#onEvent(c);
  }

  #map(domid: number, remotePort: number, limit: number, name: string): Console | null {
    const hv = this.#hv;
    const map = hv.grants.mapGrantRef(0, {
      flags: GNTMAP.host_map,
      ref: GNTTAB_RESERVED.console,
      dom: domid,
    });
    if (map.status !== GNTST.okay) {
      this.#log.warn({ domid, status: map.status }, `cannot map the console page of domain ${domid}`);
      return null;
    }
    const port = hv.events.bindInterdomain(0, domid, remotePort);
    if (port < 0) {
      hv.grants.unmapGrantRef(0, map.handle);
      this.#log.warn(
        { domid, port: remotePort, errno: -port },
        `cannot bind the console port of domain ${domid}`,
      );
      return null;
    }
    hv.events.bindVcpu(0, port, 1);
    let logSink: ConsoleLogSink | null = null;
    try {
      logSink = this.#openLog?.(`guest-${name.replace(/\//g, "_")}.log`) ?? null;
    } catch (e) {
      this.#log.error({ domid, err: errorMessage(e) }, "cannot open console log");
    }
    const c: Console = {
      domid,
      name,
      intf: new ConsoleInterface(pageBytes(map.page)),
      handle: map.handle,
      port,
      limit,
      logSink,
      backlog: new OutputBuffer(limit),
      tail: new OutputTail(CONSOLE_TAIL_MAX),
      clients: new Set(),
      input: [],
      inputQueued: 0,
      inputDropped: 0,
      outputDropped: 0,
      outputBytes: 0,
      events: 0,
      corruptLogged: false,
    };
    this.#vcpu.bind(port, () => this.#onEvent(c));
    return c;
  }

  /** Lets go of a domain: unwatch, and release its console (xenconsoled's cleanup_domain). */
  async #forget(d: Dom, reason: string): Promise<void> {
    this.#doms.delete(d.domid);
    const c = d.con;
    d.con = null;
    if (c !== null) {
      this.#vcpu.unbind(c.port);
      this.#hv.events.close(0, c.port);
      this.#hv.grants.unmapGrantRef(0, c.handle);
      for (const client of c.clients) client.close(reason);
      c.clients.clear();
      await c.logSink?.close().catch(() => {});
      this.#log.info({ domid: d.domid }, `console of domain ${d.domid} (${c.name}) released`);
    }
    await this.#xs.unwatch(consoleFrontendPath(d.domid), `dom${d.domid}`).catch(() => {});
  }

  // ------------------------------------------------------------------ data

  /** An event from the guest: it wrote output or read input. */
  #onEvent(c: Console): void {
    c.events++;
    this.#readOutput(c);
    this.#pumpInput(c);
  }

  /** xenconsoled's buffer_append: one read of the out ring per event. */
  #readOutput(c: Console): void {
    const r = c.intf.out.read(this.#readBuf);
    if (!r.ok) {
      if (!c.corruptLogged) {
        c.corruptLogged = true;
        this.#log.warn(
          { domid: c.domid, cons: r.cons, prod: r.prod },
          "console out ring indexes are corrupt",
        );
      }
      return;
    }
    if (r.bytes === 0) return;
    // out_cons moved: the guest may flush what it queued.
    this.#vcpu.send(c.port);
    const bytes = this.#readBuf.slice(0, r.bytes);
    c.outputBytes += bytes.length;
    // The log first, as xenconsoled does: it is complete whether or not anyone is attached.
    c.logSink?.write(bytes);
    c.tail.append(bytes);
    if (c.clients.size === 0) {
      c.backlog.append(bytes);
      return;
    }
    for (const client of c.clients) {
      if (client.queued > c.limit) c.outputDropped += bytes.length;
      else client.write(bytes);
    }
  }

  #input(c: Console, bytes: Uint8Array): void {
    if (this.#doms.get(c.domid)?.con !== c) return;
    const room = Math.max(0, this.#inputMax - c.inputQueued);
    if (bytes.length > room) {
      c.inputDropped += bytes.length - room;
      bytes = bytes.subarray(0, room);
    }
    if (bytes.length > 0) {
      c.input.push(bytes.slice());
      c.inputQueued += bytes.length;
    }
    this.#pumpInput(c);
  }

  /** Moves queued input into the in ring as far as it has room (handle_tty_read). */
  #pumpInput(c: Console): void {
    let moved = false;
    while (c.input.length > 0) {
      const head = c.input[0]!;
      const r = c.intf.in.write(head);
      if (!r.ok) break;
      if (r.bytes > 0) moved = true;
      c.inputQueued -= r.bytes;
      if (r.bytes < head.length) {
        c.input[0] = head.subarray(r.bytes);
        break;
      }
      c.input.shift();
    }
    if (moved) this.#vcpu.send(c.port);
  }
}
