/**
 * libxenvchan's two ends (tools/libs/vchan/init.c and io.c): a server that shares a control page
 * and its rings and publishes them in XenStore, and a client that finds, maps and connects to
 * them. The data path is vchan-io.ts; this file sets up and tears down, and adds the blocking
 * calls on top of its non-blocking ones.
 *
 * What the server and client do, step by step (the order is libxenvchan's, and the differential
 * test holds us to it):
 *
 *   server: port = alloc_unbound(peer)
 *           ctrl = share 1 page with unmap-notify (byte 21 srv_live, port); zero it
 *           orders, cli_live=2, srv_live=1, cli_notify=WRITE
 *           share the left ring's pages, then the right ring's: refs into grants[]
 *           one transaction: <path>/ring-ref, perms [n<self>, r<peer>]; <path>/event-channel, same
 *   client: read <path>/ring-ref and <path>/event-channel (0 or missing: refused)
 *           port = bind_interdomain(server, port)
 *           map ctrl read-write with unmap-notify (byte 20 cli_live, port); check the orders
 *           map the left ring's pages read-write, the right ring's read-only
 *           cli_live=1, srv_notify=WRITE, notify
 *   close:  own live byte 0; unshare/unmap ctrl (the notify fires: byte 0 again, event); notify;
 *           close the port; the server removes <path>.
 *
 * The platform is what libxenvchan gets from libxengntshr/libxengnttab/libxenevtchn/libxenstore:
 * a domain's kernel in xenlab (vchan-kernel.ts), or a recording fake in the tests.
 */
import { XEN_PAGE_SIZE } from "../../xen/xen.ts";
import { VchanClosedError, VchanSetupError, VchanTimeoutError } from "./errors.ts";
import {
  decodeHeader,
  orderProblem,
  ringPages,
  serverOrders,
  VCHAN,
  VCHAN_LIVE,
  VCHAN_NOTIFY,
  type VchanOrders,
} from "./vchan-abi.ts";
import { VchanEnd, VchanRing } from "./vchan-io.ts";

/** Linux gntdev/gntalloc's UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT. */
export interface UnmapNotify {
  readonly offset: number;
  readonly port: number;
}

/** An XenStore node the server writes, with its permissions in xenstore-ls's letters. */
export interface VchanXsEntry {
  readonly path: string;
  readonly value: string;
  readonly perms: readonly string[];
}

/** What a vchan end needs of its domain: grants, event channels, XenStore. */
export interface VchanPlatform {
  readonly domid: number;
  /** EVTCHNOP_alloc_unbound for `peer`. */
  allocUnbound(peer: number): number;
  bindInterdomain(peer: number, port: number): number;
  closePort(port: number): void;
  notify(port: number): void;
  /** Runs `fn` on each event on `port`. */
  onEvent(port: number, fn: () => void): void;
  /** Shares one new page with `peer` (writable); `notify` fires when it is unshared or we die. */
  sharePage(peer: number, notify?: UnmapNotify): { ref: number; page: Uint8Array };
  unsharePage(ref: number): void;
  /** Maps `peer`'s `ref`; `notify` fires when it is unmapped or we die. */
  mapPage(
    peer: number,
    ref: number,
    writable: boolean,
    notify?: UnmapNotify,
  ): { handle: number; page: Uint8Array };
  unmapPage(handle: number): void;
  xsRead(path: string): Promise<string | undefined>;
  /** Writes the nodes and their permissions in one transaction (retried on EAGAIN). */
  xsWrite(entries: readonly VchanXsEntry[]): Promise<void>;
  xsRm(path: string): Promise<void>;
  /** Sleeps until an event is due and runs the domain's upcall (SCHEDOP_block); optional. */
  block?(timeoutMs: number): void;
}

export interface VchanServerOptions {
  readonly peer: number;
  /** The XenStore directory (libxenvchan's xs_base), e.g. /local/domain/0/data/vchan/1/5. */
  readonly path: string;
  /** Bytes of the ring the server reads (left) and writes (right); 0 = in the page. */
  readonly leftMin?: number;
  readonly rightMin?: number;
}

export interface VchanClientOptions {
  readonly peer: number;
  readonly path: string;
}

/** The XenStore keys a server writes (init_xs_srv), in its order. */
export function vchanXsEntries(
  path: string,
  self: number,
  peer: number,
  ref: number,
  port: number,
): VchanXsEntry[] {
  const perms = [`n${self}`, `r${peer}`];
  return [
    { path: `${path}/ring-ref`, value: String(ref), perms },
    { path: `${path}/event-channel`, value: String(port), perms },
  ];
}

/** C's atoi over a XenStore value: leading decimal digits, 0 when there are none. */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m === null ? 0 : Number.parseInt(m[1]!, 10) | 0;
}

/** One end of a vchan, set up and with its event channel bound. */
export class Vchan {
  readonly end: VchanEnd;
  readonly port: number;
  readonly path: string;
  readonly peer: number;
  readonly #p: VchanPlatform;
  readonly #ctrlRef: number;
  readonly #ctrlHandle: number;
  readonly #ringRefs: readonly number[];
  readonly #ringHandles: readonly number[];
  #events = 0;
  #waiters: (() => void)[] = [];
  #closed = false;

  private constructor(
    p: VchanPlatform,
    end: VchanEnd,
    port: number,
    path: string,
    peer: number,
    ctrl: { ref: number; handle: number },
    rings: { refs: readonly number[]; handles: readonly number[] },
  ) {
    this.#p = p;
    this.end = end;
    this.port = port;
    this.path = path;
    this.peer = peer;
    this.#ctrlRef = ctrl.ref;
    this.#ctrlHandle = ctrl.handle;
    this.#ringRefs = rings.refs;
    this.#ringHandles = rings.handles;
    p.onEvent(port, () => {
      this.#events++;
      const w = this.#waiters;
      this.#waiters = [];
      for (const f of w) f();
    });
  }

  /** `libxenvchan_server_init`: shares the page and rings, publishes them, returns at once. */
  static async server(p: VchanPlatform, o: VchanServerOptions): Promise<Vchan> {
    checkPeer(p, o.peer);
    const orders = serverOrders(o.leftMin ?? 0, o.rightMin ?? 0);
    const port = p.allocUnbound(o.peer);
    const shared: number[] = [];
    try {
      const { ref, page: ctrl } = p.sharePage(o.peer, { offset: VCHAN.srvLive, port });
      shared.push(ref);
      ctrl.fill(0);
      const v = new DataView(ctrl.buffer, ctrl.byteOffset, XEN_PAGE_SIZE);
      v.setUint16(VCHAN.leftOrder, orders.left, true);
      v.setUint16(VCHAN.rightOrder, orders.right, true);
      ctrl[VCHAN.cliLive] = VCHAN_LIVE.waiting;
      ctrl[VCHAN.srvLive] = VCHAN_LIVE.connected;
      ctrl[VCHAN.cliNotify] = VCHAN_NOTIFY.write;
      const rings: VchanRing[] = [];
      let g = 0;
      for (const order of [orders.left, orders.right]) {
        const n = ringPages(order);
        if (n === 0) {
          rings.push(VchanRing.inPage(ctrl, order));
          continue;
        }
        const pages: Uint8Array[] = [];
        for (let i = 0; i < n; i++) {
          const s = p.sharePage(o.peer);
          shared.push(s.ref);
          pages.push(s.page);
          v.setUint32(VCHAN.grants + 4 * g++, s.ref, true);
        }
        rings.push(VchanRing.overPages(order, pages));
      }
      const [left, right] = rings as [VchanRing, VchanRing];
      const end = new VchanEnd({
        ctrl,
        server: true,
        read: left,
        write: right,
        notify: () => p.notify(port),
      });
      const domidKey = await p.xsRead("domid");
      if (domidKey === undefined)
        throw new VchanSetupError(
          `Cannot publish vchan ${o.path}: domain ${p.domid} has no domid key (/local/domain/${p.domid}/domid), which the toolstack writes`,
          `/local/domain/${p.domid}/domid`,
        );
      const self = atoi(domidKey);
      await p.xsWrite(vchanXsEntries(o.path, self, o.peer, ref, port));
      return new Vchan(
        p,
        end,
        port,
        o.path,
        o.peer,
        { ref, handle: -1 },
        { refs: shared.slice(1), handles: [] },
      );
    } catch (e) {
      for (const ref of shared) p.unsharePage(ref);
      p.closePort(port);
      throw e;
    }
  }

  /** `libxenvchan_client_init`: finds the server's keys, maps and connects. */
  static async client(p: VchanPlatform, o: VchanClientOptions): Promise<Vchan> {
    checkPeer(p, o.peer);
    const ref = await readKey(p, o.path, "ring-ref", "the server's control page gref");
    const srvPort = await readKey(p, o.path, "event-channel", "the server's event channel");
    const port = p.bindInterdomain(o.peer, srvPort);
    const handles: number[] = [];
    let ctrlHandle = -1;
    try {
      const m = p.mapPage(o.peer, ref, true, { offset: VCHAN.cliLive, port });
      ctrlHandle = m.handle;
      const ctrl = m.page;
      const h = decodeHeader(ctrl);
      // The orders are read once: the page is the peer's and may change under us.
      const orders: VchanOrders = { left: h.leftOrder, right: h.rightOrder };
      const bad = orderProblem(orders);
      if (bad !== undefined)
        throw new VchanSetupError(`Cannot connect to vchan ${o.path}: the server's page is bad (${bad})`);
      const v = new DataView(ctrl.buffer, ctrl.byteOffset, XEN_PAGE_SIZE);
      const rings: VchanRing[] = [];
      let g = 0;
      for (const [order, writable] of [
        [orders.left, true],
        [orders.right, false],
      ] as const) {
        const n = ringPages(order);
        if (n === 0) {
          rings.push(VchanRing.inPage(ctrl, order));
          continue;
        }
        const pages: Uint8Array[] = [];
        for (let i = 0; i < n; i++) {
          const r = p.mapPage(o.peer, v.getUint32(VCHAN.grants + 4 * g++, true), writable);
          handles.push(r.handle);
          pages.push(r.page);
        }
        rings.push(VchanRing.overPages(order, pages));
      }
      const [left, right] = rings as [VchanRing, VchanRing];
      const end = new VchanEnd({
        ctrl,
        server: false,
        read: right,
        write: left,
        notify: () => p.notify(port),
      });
      const vc = new Vchan(p, end, port, o.path, o.peer, { ref, handle: ctrlHandle }, { refs: [], handles });
      ctrl[VCHAN.cliLive] = VCHAN_LIVE.connected;
      ctrl[VCHAN.srvNotify] = VCHAN_NOTIFY.write;
      p.notify(port);
      return vc;
    } catch (e) {
      for (const hd of handles) p.unmapPage(hd);
      if (ctrlHandle >= 0) p.unmapPage(ctrlHandle);
      p.closePort(port);
      throw e;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** `libxenvchan_is_open`. */
  isOpen(): number {
    return this.#closed ? 0 : this.end.isOpen();
  }

  /**
   * `libxenvchan_wait`: resolves at the next event on the port (at once if one came since the
   * last wait), or rejects with VchanTimeoutError after `timeoutMs`.
   */
  wait(timeoutMs?: number): Promise<void> {
    if (this.#events > 0) {
      this.#events = 0;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        this.#events = 0;
        resolve();
      };
      this.#waiters.push(done);
      if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((f) => f !== done);
          reject(new VchanTimeoutError(`Timed out after ${timeoutMs} ms waiting on vchan ${this.path}`));
        }, timeoutMs);
      }
    });
  }

  /**
   * `libxenvchan_read` with blocking set: up to `buf.length` bytes, waiting for the first; 0 at
   * end of stream (the peer closed and everything it wrote was read).
   */
  async read(buf: Uint8Array, timeoutMs?: number): Promise<number> {
    for (;;) {
      const n = this.#readStep(buf);
      if (n !== undefined) return n;
      await this.wait(timeoutMs);
    }
  }

  /** `libxenvchan_write` with blocking set: all of `data`; VchanClosedError if the peer goes. */
  async write(data: Uint8Array, timeoutMs?: number): Promise<void> {
    for (let pos = this.#writeStep(data, 0); pos < data.length; pos = this.#writeStep(data, pos)) {
      await this.wait(timeoutMs);
    }
  }

  /**
   * read() that waits in the caller's thread, as libxenvchan's blocking read of the event-channel
   * device does: the domain's vCPU blocks (SCHEDOP_block) until an event, runs its upcall, and
   * nothing else of the domain runs meanwhile. For a loop that owns the domain (xen_vchan's pump
   * and drain); needs a platform with `block`.
   */
  readSync(buf: Uint8Array, timeoutMs?: number): number {
    for (;;) {
      const n = this.#readStep(buf);
      if (n !== undefined) return n;
      this.#waitSync(timeoutMs);
    }
  }

  /** write() that waits in the caller's thread (see readSync). */
  writeSync(data: Uint8Array, timeoutMs?: number): void {
    for (let pos = this.#writeStep(data, 0); pos < data.length; pos = this.#writeStep(data, pos)) {
      this.#waitSync(timeoutMs);
    }
  }

  // One try of a blocking read: the bytes read, 0 at end of stream, undefined to wait.
  #readStep(buf: Uint8Array): number | undefined {
    this.#checkOpen();
    if (this.end.readyFor(buf.length) > 0) return this.end.read(buf);
    return this.end.isOpen() ? undefined : 0;
  }

  // One try of a blocking write from `pos`: the new position (data.length when done).
  #writeStep(data: Uint8Array, pos: number): number {
    this.#checkOpen();
    if (!this.end.isOpen())
      throw new VchanClosedError(`Cannot write to vchan ${this.path}: the peer is gone`);
    const avail = Math.min(this.end.spaceFor(data.length - pos), data.length - pos);
    return avail > 0 ? pos + this.end.write(data.subarray(pos, pos + avail)) : pos;
  }

  #waitSync(timeoutMs?: number): void {
    const block = this.#p.block?.bind(this.#p);
    if (block === undefined) throw new TypeError("This vchan platform cannot wait synchronously");
    const t0 = performance.now();
    while (this.#events === 0) {
      const left = timeoutMs === undefined ? Number.POSITIVE_INFINITY : timeoutMs - (performance.now() - t0);
      if (left <= 0)
        throw new VchanTimeoutError(`Timed out after ${timeoutMs} ms waiting on vchan ${this.path}`);
      block(left);
    }
    this.#events = 0;
  }

  /** Resolves once a client has connected (cli_live left 2), for a server. */
  async connected(timeoutMs?: number): Promise<void> {
    while (this.end.isOpen() === VCHAN_LIVE.waiting) await this.wait(timeoutMs);
  }

  /** `libxenvchan_close`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const p = this.#p;
    for (const h of this.#ringHandles) p.unmapPage(h);
    for (const r of this.#ringRefs) p.unsharePage(r);
    this.end.markClosed();
    if (this.end.server) p.unsharePage(this.#ctrlRef);
    else p.unmapPage(this.#ctrlHandle);
    p.notify(this.port);
    p.closePort(this.port);
    for (const f of this.#waiters) f();
    this.#waiters = [];
    if (this.end.server) await p.xsRm(this.path);
  }

  #checkOpen(): void {
    if (this.#closed) throw new VchanClosedError(`vchan ${this.path} is closed`);
  }
}

function checkPeer(p: VchanPlatform, peer: number): void {
  if (!Number.isInteger(peer) || peer < 0 || peer > 0x7fef)
    throw new RangeError(`Invalid peer domid: ${peer}`);
  if (peer === p.domid)
    throw new RangeError(`Cannot open a vchan to domain ${peer} from itself: loopback is not supported`);
}

async function readKey(p: VchanPlatform, path: string, key: string, what: string): Promise<number> {
  const full = `${path}/${key}`;
  const raw = await p.xsRead(full);
  if (raw === undefined)
    throw new VchanSetupError(
      `Cannot connect to vchan ${path}: ${full} (${what}) is missing; is the server up?`,
      full,
    );
  const n = atoi(raw);
  if (n === 0)
    throw new VchanSetupError(
      `Cannot connect to vchan ${path}: ${full} is ${JSON.stringify(raw)}, not a ${what}`,
      full,
    );
  return n;
}
