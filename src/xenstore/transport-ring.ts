/**
 * XenStore over a domain's shared page: `struct xenstore_domain_interface` (`io/xs_wire.h`)
 * and an event channel, both ends.
 *
 * - `RingServer` is the daemon's side of one domain (C `xenstored_domain.c`: `readchn`,
 *   `writechn`, `domain_can_read`, `ignore_connection`, `domain_conn_reset`). It is the
 *   connection's `PacketSink`.
 * - `RingClientChannel` is the guest's side (Linux `xenbus_comms.c`), an `XsChannel`, so
 *   `new XsClient(channel)` works inside a guest.
 *
 * Neither end signals by itself: each takes a `notify()` callback (the caller kicks the event
 * channel) and has an `onKick()` the caller invokes when the peer's event arrives. Both notify
 * once per round, and only when an index (or a control word) moved.
 *
 * Server round (`onKick`), worked through for a guest that pipelines two READs whose replies
 * are 900 bytes each, with the `outstanding` quota at 2:
 *
 *   1. `connection` = 1?  → reconnect (below) and stop.
 *   2. Write queued output into rsp as space allows.     rsp: —
 *   3. May read? (not ignored; unprivileged: outstanding < quota)
 *      Read the 16-byte header, then the body (a body larger than what is in the ring is
 *      collected over several rounds), step the core, queue what comes out, go to 2.
 *        READ #1 → reply 916 bytes queued → 2 writes all 916          outstanding 0
 *        READ #2 → reply queued → 2 writes 108 bytes (rsp full)       outstanding 1
 *        (req empty) → stop; notify (req_cons and rsp_prod moved).
 *   4. The guest consumes rsp and kicks: 2 writes the remaining 808 bytes, notify.
 *   A third READ in the same batch would have made outstanding 2 and stopped reading until
 *   the guest consumed (C `domain_can_read`).
 *
 * Index checks: every read and write reads the peer's counters once and checks
 * `prod − cons ≤ 1024` (`ByteRing`). A violation sets `error` = 2 (XENSTORE_ERROR_RINGIDX), a
 * header announcing more than 4096 bytes sets `error` = 3 (XENSTORE_ERROR_PROTO); either way
 * the daemon logs it, drops the connection's watches, transactions and buffers and never
 * talks to that ring again (C `ignore_connection`). Other connections are not affected. As in
 * C xenstored 4.17, a later reconnection request does not revive an ignored connection.
 *
 * Reconnection (feature bit 1): the guest sets `connection` = 1 and notifies. The server drops
 * its partial packets in both directions and everything queued, drops the connection's
 * watches and transactions, zeroes the four indexes (C `domain_conn_reset`), then sets
 * `connection` = 0 and notifies. The same reset happens at attach (C `do_introduce`) and on
 * a repeated INTRODUCE (`introduced()`).
 */

import {
  XENSTORE_INTERFACE,
  XenstoreInterface,
  XS_CONNECTION,
  XS_RING_ERROR,
  XS_SERVER_FEATURE,
} from "../ring/byte-ring.ts";
import type { XsChannel, XsChannelSink } from "./client.ts";
import type { XenStoreCore } from "./core.ts";
import { type Connection, deliver, type PacketSink, type XsLogger } from "./daemon.ts";
import { OFFERED_FEATURES } from "./domain.ts";
import { ConnectionClosedError, XsProtocolError, XsRingError } from "./errors.ts";
import { PACKET_OVERHEAD } from "./quota.ts";
import { duplicateKey } from "./watch.ts";
import {
  decodeHeader,
  encodePacket,
  HEADER_SIZE,
  XENSTORE_PAYLOAD_MAX,
  type XsPacket,
  XsType,
} from "./wire.ts";

/** Requests handled in one round before the server yields to other work. */
const ROUND_BUDGET = 256;

/** Names of the `error` values, for logs and client errors. */
const RING_ERROR_NAMES: Readonly<Record<number, string>> = {
  [XS_RING_ERROR.eventChannel]: "event channel",
  [XS_RING_ERROR.badIndex]: "bad ring index",
  [XS_RING_ERROR.payloadTooLong]: "payload too long",
};

export interface RingServerOptions {
  readonly core: XenStoreCore;
  /** The domain's connection, from `core.connectDomain(domid)`. */
  readonly conn: Connection;
  /** The domain's interface page (at least 2080 bytes, 4-byte aligned, usually over a SAB). */
  readonly page: Uint8Array;
  /** Kicks the domain's event channel. */
  readonly notify: () => void;
  /** Default: the core's logger. */
  readonly log?: XsLogger;
  /** Called for each request and reply; default: the core's trace file and tap (`core.io`). */
  readonly trace?: (dir: "IN" | "OUT", conn: Connection, p: XsPacket) => void;
}

/**
 * The daemon's end of one domain's XenStore ring. Construction attaches it: it becomes the
 * connection's sink, advertises `server_features` (OFFERED_FEATURES), resets the ring as
 * INTRODUCE does and answers a reconnection request already pending.
 */
export class RingServer implements PacketSink {
  readonly conn: Connection;
  readonly intf: XenstoreInterface;
  readonly #core: XenStoreCore;
  readonly #notify: () => void;
  readonly #log: XsLogger;
  readonly #trace: RingServerOptions["trace"];

  // Input: a packet being collected, C `conn->in`.
  readonly #hdr = new Uint8Array(HEADER_SIZE);
  #hdrUsed = 0;
  #body: Uint8Array | null = null;
  #bodyUsed = 0;

  // Output: packets queued for the guest; the first may be partly written.
  #out: XsPacket[] = [];
  #head: Uint8Array | null = null;
  #headSent = 0;
  /** Replies (not watch events) queued and not yet fully written: C `nboutstanding`. */
  #outstanding = 0;
  /**
   * The `duplicateKey` of each watch event queued, so the duplicate rule (watch.ts) holds
   * without a scan of a queue that may be long.
   */
  readonly #queuedEvents = new Set<string>();
  /** When each queued watch event of an unprivileged domain times out (C `timeout_msec`). */
  readonly #deadlines = new Map<XsPacket, number>();
  #expiry: ReturnType<typeof setTimeout> | null = null;
  #expiryAt = 0;
  /** The ring is not read until the write-rate limit lets this domain write again. */
  #rateTimer: ReturnType<typeof setTimeout> | null = null;

  #ignored = false;
  #detached = false;
  #inRound = false;
  #again = false;
  #flushQueued = false;
  #resumeQueued = false;
  /** Something the guest can see changed during this round: notify at its end. */
  #moved = false;

  constructor(opts: RingServerOptions) {
    this.#core = opts.core;
    this.conn = opts.conn;
    this.intf = new XenstoreInterface(opts.page);
    this.#notify = opts.notify;
    this.#log = opts.log ?? opts.core.log;
    this.#trace = opts.trace ?? ((dir, conn, p) => opts.core.io(dir, conn, p));
    this.conn.sink = this;
    // Back under its hard memory quota (dom0 removed nodes, events timed out): read it again.
    if (!this.conn.privileged) this.#core.accounts.onRelief(this.conn.domid, () => this.#round());
    this.intf.addServerFeatures(OFFERED_FEATURES);
    this.introduced();
  }

  /** True once the daemon stopped talking to this ring (`error` set). */
  get ignored(): boolean {
    return this.#ignored;
  }

  /** Replies queued and not yet fully written into the ring. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** Packets waiting for room in the rsp ring (the first may be partly written). */
  get queued(): number {
    return this.#out.length;
  }

  /**
   * What INTRODUCE does to the ring (C `do_introduce`): reset the connection and, if the guest
   * is waiting for a reconnection, answer it. Called at attach, and again on a repeated
   * INTRODUCE (the host's `DomainHooks.reintroduce`).
   */
  introduced(): void {
    if (this.#detached) return;
    this.#reset();
    if (this.intf.connection === XS_CONNECTION.reconnecting) {
      // Ordering point: the zeroed indexes are visible before connection = 0 (release store).
      this.intf.connection = XS_CONNECTION.connected;
      this.#notify();
    }
  }

  /** The domain's event arrived: handle a reconnection request, read requests, write output. */
  onKick(): void {
    this.#round();
  }

  /** Queues a packet for the guest (PacketSink); written now if the ring has room. */
  send(conn: Connection, p: XsPacket): void {
    if (conn !== this.conn || this.#ignored || this.#detached) return;
    const accounts = this.#core.accounts;
    const size = PACKET_OVERHEAD + p.payload.byteLength;
    if (p.type === XsType.WATCH_EVENT) {
      // C `send_event`: a duplicate of a queued event is dropped; so is an event that would
      // take the domain to its hard memory quota; an unread event times out.
      const key = duplicateKey(p);
      if (key !== null && this.#queuedEvents.has(key)) return;
      if (!accounts.memoryAdd(this.conn.domid, size, true)) return;
      if (key !== null) this.#queuedEvents.add(key);
      const timeout = accounts.limit(this.conn.domid, "watchEventTimeoutMs");
      if (!this.conn.privileged && timeout > 0) {
        const deadline = performance.now() + timeout;
        this.#deadlines.set(p, deadline);
        if (this.#expiry === null || deadline < this.#expiryAt) this.#armExpiry(deadline);
      }
    } else {
      // C `send_reply`: a reply is charged without a check (it may carry the error).
      accounts.memoryAdd(this.conn.domid, size, false);
      this.#outstanding++;
      accounts.outstandingAdd(this.conn.domid, 1);
    }
    this.#out.push(p);
    // Inside a round the round writes it; outside (an event fired by another connection's
    // request) write it once the current turn is done, so a burst of events is one notify.
    if (this.#inRound || this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#round();
    });
  }

  /** Stops serving this ring (the domain is gone); the connection's fate is the core's. */
  detach(): void {
    this.#detached = true;
    this.#dropBuffers();
    if (!this.conn.privileged) this.#core.accounts.onRelief(this.conn.domid, null);
    if (this.#rateTimer !== null) clearTimeout(this.#rateTimer);
    this.#rateTimer = null;
    if (this.conn.sink === this) this.conn.sink = null;
  }

  // -------------------------------------------------------------------------------------

  #round(): void {
    if (this.#inRound) {
      // A kick delivered synchronously from inside notify(): look again before returning.
      this.#again = true;
      return;
    }
    this.#inRound = true;
    try {
      do {
        this.#again = false;
        this.#work();
      } while (this.#again);
    } finally {
      this.#inRound = false;
    }
    if (this.#moved) {
      this.#moved = false;
      this.#notify();
    }
  }

  #work(): void {
    if (this.#ignored || this.#detached) return;
    if (this.conn.closed) {
      this.detach();
      return;
    }
    if (this.intf.connection === XS_CONNECTION.reconnecting) {
      this.#log.info({ domid: this.conn.domid }, `${this.conn.label}: reconnection requested`);
      this.#reset();
      // Ordering point: the zeroed indexes are visible before connection = 0 (release store).
      this.intf.connection = XS_CONNECTION.connected;
      this.#moved = true;
      return;
    }
    let handled = 0;
    for (;;) {
      if (!this.#writeOut()) return;
      if (!this.#canRead()) return;
      if (handled === ROUND_BUDGET) {
        this.#resumeLater();
        return;
      }
      const p = this.#readPacket();
      if (p === null) return; // not a whole packet yet, or the connection is now ignored
      handled++;
      this.#trace?.("IN", this.conn, p);
      deliver(this.#core.step(this.conn, p).out);
      if (this.conn.closed) {
        this.detach();
        return;
      }
    }
  }

  /**
   * C `domain_can_read`: an unprivileged domain must wait while it has `outstanding` replies
   * unsent, while its memory is at or over its hard quota (a relief callback reads it again)
   * and while its write-rate credit is negative (a timer reads it again).
   */
  #canRead(): boolean {
    if (this.conn.privileged) return true;
    const domid = this.conn.domid;
    if (!this.#core.accounts.mayRead(domid)) return false;
    if (this.#rateTimer !== null) return false;
    const wait = this.#core.writeRate.wakeIn(domid);
    if (wait > 0) {
      this.#rateTimer = setTimeout(() => {
        this.#rateTimer = null;
        this.#round();
      }, wait);
      this.#rateTimer.unref?.();
      return false;
    }
    return true;
  }

  /** At `deadline`, drops the watch events whose time is up and that have not started. */
  #armExpiry(deadline: number): void {
    if (this.#expiry !== null) clearTimeout(this.#expiry);
    this.#expiryAt = deadline;
    this.#expiry = setTimeout(
      () => {
        this.#expiry = null;
        this.#expire();
      },
      Math.max(1, deadline - performance.now()),
    );
    this.#expiry.unref?.();
  }

  #expire(): void {
    if (this.#deadlines.size === 0) return;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    let dropped = 0;
    const keep: XsPacket[] = [];
    for (let i = 0; i < this.#out.length; i++) {
      const p = this.#out[i]!;
      const deadline = this.#deadlines.get(p);
      // The head, once started into the ring, is finished whatever its age.
      if (deadline === undefined || (i === 0 && this.#head !== null)) {
        keep.push(p);
      } else if (deadline <= now) {
        this.#forget(p);
        dropped++;
      } else {
        keep.push(p);
        if (deadline < next) next = deadline;
      }
    }
    this.#out = keep;
    if (dropped > 0) {
      this.#log.info(
        { domid: this.conn.domid, dropped },
        `${this.conn.label}: ${dropped} unread watch events timed out`,
      );
    }
    if (next !== Number.POSITIVE_INFINITY) this.#armExpiry(next);
  }

  /** A queued packet leaves the queue (written or dropped): its memory and counts go back. */
  #forget(p: XsPacket): void {
    const accounts = this.#core.accounts;
    accounts.memoryAdd(this.conn.domid, -(PACKET_OVERHEAD + p.payload.byteLength), false);
    if (p.type === XsType.WATCH_EVENT) {
      if (this.#deadlines.delete(p) && this.#deadlines.size === 0 && this.#expiry !== null) {
        clearTimeout(this.#expiry);
        this.#expiry = null;
      }
      const key = duplicateKey(p);
      if (key !== null) this.#queuedEvents.delete(key);
    } else {
      this.#outstanding--;
      accounts.outstandingAdd(this.conn.domid, -1);
    }
  }

  /** Packets and bytes waiting for room in the rsp ring (tests and the live view). */
  get queuedBytes(): number {
    let n = 0;
    for (const p of this.#out) n += PACKET_OVERHEAD + p.payload.byteLength;
    return n;
  }

  #resumeLater(): void {
    if (this.#resumeQueued) return;
    this.#resumeQueued = true;
    setImmediate(() => {
      this.#resumeQueued = false;
      this.#round();
    });
  }

  /**
   * Reads the rest of the current packet, header then body, as far as the ring holds it
   * (C `handle_input`). Returns the packet once complete.
   */
  #readPacket(): XsPacket | null {
    const req = this.intf.req;
    if (this.#body === null) {
      const r = req.read(this.#hdr.subarray(this.#hdrUsed));
      if (!r.ok) return this.#badIndex("req", r.cons, r.prod);
      if (r.bytes > 0) this.#moved = true;
      this.#hdrUsed += r.bytes;
      if (this.#hdrUsed < HEADER_SIZE) return null;
      const len = decodeHeader(this.#hdr).len;
      if (len > XENSTORE_PAYLOAD_MAX) {
        this.#ignore(XS_RING_ERROR.payloadTooLong, { len });
        return null;
      }
      this.#body = new Uint8Array(len);
      this.#bodyUsed = 0;
    }
    const body = this.#body;
    if (this.#bodyUsed < body.byteLength) {
      const r = req.read(body.subarray(this.#bodyUsed));
      if (!r.ok) return this.#badIndex("req", r.cons, r.prod);
      if (r.bytes > 0) this.#moved = true;
      this.#bodyUsed += r.bytes;
      if (this.#bodyUsed < body.byteLength) return null;
    }
    const h = decodeHeader(this.#hdr);
    this.#hdrUsed = 0;
    this.#body = null;
    return { type: h.type, reqId: h.reqId, txId: h.txId, payload: body };
  }

  /** Writes queued output into rsp as far as it fits (C `write_messages`). False if ignored. */
  #writeOut(): boolean {
    const rsp = this.intf.rsp;
    for (;;) {
      if (this.#head === null) {
        const p = this.#out[0];
        if (p === undefined) return true;
        this.#trace?.("OUT", this.conn, p);
        this.#head = encodePacket(p);
        this.#headSent = 0;
      }
      const r = rsp.write(this.#head.subarray(this.#headSent));
      if (!r.ok) {
        this.#badIndex("rsp", r.cons, r.prod);
        return false;
      }
      if (r.bytes === 0) return true;
      this.#moved = true;
      this.#headSent += r.bytes;
      if (this.#headSent < this.#head.byteLength) return true;
      this.#forget(this.#out.shift()!);
      this.#head = null;
    }
  }

  #badIndex(which: "req" | "rsp", cons: number, prod: number): null {
    this.#ignore(XS_RING_ERROR.badIndex, { ring: which, cons, prod });
    return null;
  }

  /**
   * C `ignore_connection`: set `error`, forget watches, transactions and buffers, never talk
   * to this ring again. The domain stays introduced; nobody else is affected.
   */
  #ignore(err: number, detail: object): void {
    this.#log.error(
      { domid: this.conn.domid, error: err, ...detail },
      `${this.conn.label}: ${RING_ERROR_NAMES[err]}: ignoring the connection`,
    );
    this.intf.error = err;
    this.#ignored = true;
    this.#core.resetConnection(this.conn);
    this.#dropBuffers();
    // Not in C 4.17: one last kick so a guest waiting on its channel sees `error`.
    this.#moved = true;
  }

  /** C `domain_conn_reset`: no watches, transactions or buffers, all four indexes zero. */
  #reset(): void {
    this.#core.resetConnection(this.conn);
    this.#dropBuffers();
    const { req, rsp } = this.intf;
    req.cons = 0;
    req.prod = 0;
    rsp.cons = 0;
    rsp.prod = 0;
  }

  #dropBuffers(): void {
    this.#hdrUsed = 0;
    this.#body = null;
    for (const p of this.#out) this.#forget(p);
    if (this.#expiry !== null) clearTimeout(this.#expiry);
    this.#expiry = null;
    this.#out = [];
    this.#head = null;
    this.#headSent = 0;
    this.#outstanding = 0;
  }
}

// =======================================================================================
// Guest side

export interface RingClientChannelOptions {
  /** The domain's own interface page, the one it granted to xenstored. */
  readonly page: Uint8Array;
  /** Kicks the XenStore event channel. */
  readonly notify: () => void;
}

/**
 * A guest's XenStore channel over its shared page (Linux `xenbus_comms.c`): requests go into
 * `req` as space allows, replies and events come out of `rsp`. The caller delivers the
 * daemon's events with `onKick()`.
 *
 * Reconnection: `reconnect()` closes the attached client (its requests fail with
 * ConnectionClosedError), sets `connection` = 1 and notifies; it resolves once the daemon has
 * reset the ring and set `connection` back to 0. The channel may then be attached again:
 * `new XsClient(channel)`. A guest finding `connection` = 1 at attach (dom0less) waits for
 * 0 before writing.
 */
export class RingClientChannel implements XsChannel {
  readonly intf: XenstoreInterface;
  readonly #notify: () => void;
  readonly #scratch = new Uint8Array(XENSTORE_INTERFACE.ringSize);
  #sink: XsChannelSink | null = null;
  /** A client may attach: at first, and again after a reconnection. */
  #attachable = true;
  #out: Uint8Array[] = [];
  #outSent = 0;
  #closing = false;
  #closed = false;
  #reconnecting: (() => void) | null = null;
  #inKick = false;
  #again = false;

  constructor(opts: RingClientChannelOptions) {
    this.intf = new XenstoreInterface(opts.page);
    this.#notify = opts.notify;
  }

  /** `server_features` as the daemon advertises them. */
  get serverFeatures(): number {
    return this.intf.serverFeatures;
  }

  attach(sink: XsChannelSink): void {
    if (!this.#attachable) {
      throw new TypeError("Cannot attach ring channel: attach once, and again only after reconnect()");
    }
    this.#attachable = false;
    this.#sink = sink;
    this.#closing = false;
    this.#closed = false;
    this.onKick();
  }

  write(bytes: Uint8Array): void {
    if (this.#closing || this.#closed || this.#sink === null) return;
    this.#out.push(bytes);
    this.onKick();
  }

  close(): void {
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    this.onKick();
  }

  /** Asks the daemon to reset the connection (feature bit 1); see the class comment. */
  reconnect(): Promise<void> {
    if ((this.intf.serverFeatures & XS_SERVER_FEATURE.reconnection) === 0) {
      return Promise.reject(new XsProtocolError("Cannot reconnect: the daemon does not offer reconnection"));
    }
    if (this.#reconnecting !== null)
      return Promise.reject(new TypeError("Cannot reconnect: already in progress"));
    this.#finish(new ConnectionClosedError("Connection to xenstored reset (reconnection)"));
    this.#sink = null;
    return new Promise((resolve) => {
      this.#reconnecting = resolve;
      // From here the guest looks at nothing but `connection` (xenstore-ring.txt).
      this.intf.connection = XS_CONNECTION.reconnecting;
      this.#notify();
    });
  }

  /** The daemon's event arrived (or the guest just wants to look): read rsp, write req. */
  onKick(): void {
    if (this.#inKick) {
      this.#again = true;
      return;
    }
    this.#inKick = true;
    let moved = false;
    try {
      do {
        this.#again = false;
        moved = this.#work() || moved;
      } while (this.#again);
    } finally {
      this.#inKick = false;
    }
    if (moved) this.#notify();
  }

  /** One pass; true if an index moved. */
  #work(): boolean {
    if (this.#reconnecting !== null) {
      if (this.intf.connection !== XS_CONNECTION.connected) return false;
      const done = this.#reconnecting;
      this.#reconnecting = null;
      this.#out = [];
      this.#outSent = 0;
      this.#attachable = true;
      done();
      return false;
    }
    if (this.#closed || this.#sink === null) return false;
    // Dom0less: the daemon has not picked the ring up yet.
    if (this.intf.connection !== XS_CONNECTION.connected) return false;
    const err = this.intf.error;
    if (err !== XS_RING_ERROR.none) {
      this.#finish(new XsRingError(err, RING_ERROR_NAMES[err] ?? "unknown"));
      return false;
    }
    let moved = false;
    // Read everything there is; a reply may free room the daemon is waiting for.
    for (;;) {
      const r = this.intf.rsp.read(this.#scratch);
      if (!r.ok) {
        this.#badIndexes("read", r);
        return moved;
      }
      if (r.bytes === 0) break;
      moved = true;
      this.#sink.data(this.#scratch.subarray(0, r.bytes));
      if (this.#closed || this.#sink === null) return moved;
    }
    while (this.#out.length > 0) {
      const head = this.#out[0]!;
      const r = this.intf.req.write(head.subarray(this.#outSent));
      if (!r.ok) {
        this.#badIndexes("write", r);
        return moved;
      }
      if (r.bytes === 0) break;
      moved = true;
      this.#outSent += r.bytes;
      if (this.#outSent < head.byteLength) break;
      this.#out.shift();
      this.#outSent = 0;
    }
    if (this.#closing && this.#out.length === 0) this.#finish(undefined);
    return moved;
  }

  /** The daemon's side of the indexes fails the ring's check: the channel is closed. */
  #badIndexes(op: "read" | "write", r: { readonly cons: number; readonly prod: number }): void {
    const ring = op === "read" ? "rsp" : "req";
    this.#finish(
      new XsProtocolError(`Cannot ${op} XenStore ring: ${ring}_cons ${r.cons}, ${ring}_prod ${r.prod}`),
    );
  }

  #finish(err: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = false;
    this.#out = [];
    this.#outSent = 0;
    const sink = this.#sink;
    this.#sink = null;
    sink?.closed(err);
  }
}
