/**
 * What the parts of the daemon share, as C xenstored's files share `xenstored_core.h`:
 * connections and their watches, where packets go, the state of one request, the domains,
 * and `Daemon`, the state and operations the request handlers of core.ts (nodes and
 * transactions), watch.ts, domain.ts and control.ts work on. `XenStoreCore` (core.ts) is the
 * one implementation.
 */

import type { Perms } from "./perms.ts";
import type { Accounts, Quotas, WriteRateLimit } from "./quota.ts";
import type { FireRequest, Node, Store, Transaction, View } from "./store.ts";
import type { Trace } from "./trace.ts";
import type { XsPacket } from "./wire.ts";

export interface XsLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface Watch {
  /** Absolute path, or `@name` for special events. */
  readonly node: string;
  readonly token: string;
  /** Set when registered relative: events strip `<home>/`. */
  readonly relativeTo: string | null;
  readonly conn: Connection;
  readonly seq: number;
}

/**
 * Where a connection's outgoing packets go. Every transport (the Unix socket; a domain's
 * shared ring) implements it: `send` queues, and the transport flushes when it likes (the
 * socket at the end of the current turn, so a batch of replies is one write).
 */
export interface PacketSink {
  send(conn: Connection, p: XsPacket): void;
}

/**
 * One client of the store: a socket (dom0, privileged) or a domain's ring. The transport
 * owns the bytes; the core owns the watches and transactions.
 */
export class Connection {
  readonly id: number;
  readonly domid: number;
  readonly privileged: boolean;
  /** Where relative paths resolve: `/local/domain/<domid>`. */
  readonly home: string;
  /** SET_TARGET: the domain this connection may act for. */
  target: number | null = null;
  readonly watches: Watch[] = [];
  readonly transactions = new Map<number, Transaction>();
  nextTxId = 1;
  closed = false;
  /** A short label for logs: `socket#3` or `dom5`. */
  readonly label: string;
  /** The transport this connection's packets go to; null drops them (no ring attached). */
  sink: PacketSink | null = null;
  /** A domain's shared ring (else a Unix-socket client, or the host's in-process one). */
  readonly ring: boolean;

  constructor(id: number, domid: number, privileged: boolean, label: string, ring = false) {
    this.id = id;
    this.domid = domid;
    this.privileged = privileged;
    this.home = `/local/domain/${domid}`;
    this.label = label;
    this.ring = ring;
  }
}

/**
 * Sees every request a connection sent (`IN`) and every packet sent to it (`OUT`: replies and
 * watch events), from every transport, as the trace does: a capture (`xenlab up --pcap`).
 */
export interface PacketTap {
  packet(dir: "IN" | "OUT", conn: Connection, p: XsPacket): void;
}

export interface Delivery {
  conn: Connection;
  packet: XsPacket;
}

/** Hands each packet to its connection's transport, in order. */
export function deliver(out: readonly Delivery[]): void {
  for (const d of out) if (!d.conn.closed) d.conn.sink?.send(d.conn, d.packet);
}

/** The payload of a plain acknowledgement (C `send_ack`). */
export const OK = "OK\0";

/** Per-request state: who asks, with which view, what it sent. */
export interface RequestContext {
  readonly conn: Connection;
  readonly view: View;
  readonly payload: Uint8Array;
  readonly type: number;
  /** Events the handler fires itself (domain introduction and release): sent before the reply. */
  readonly before: Delivery[];
  /** Events sent after the reply (a new watch's initial event). */
  readonly after: Delivery[];
}

/** A domain xenstored knows: introduced through INTRODUCE (or dom0 from the start). */
export interface Domain {
  readonly domid: number;
  conn: Connection | null;
  /** Page frame and event channel given in INTRODUCE. */
  gfn: string;
  port: number;
  /** @releaseDomain has been sent for this shutdown; RESUME clears it. */
  shutdown: boolean;
}

/**
 * Hooks the hypervisor side plugs in: introducing a domain attaches its ring. Without
 * hooks (a plain socket daemon) an introduced domain exists for the tools, with no ring.
 */
export interface DomainHooks {
  /** Called on INTRODUCE of a new domain; returns its connection or null (no ring). */
  introduce?(domid: number, gfn: string, port: number): Connection | null;
  /** Called when the daemon lets go of a domain (RELEASE). */
  release?(domid: number): void;
  /**
   * Called on INTRODUCE of a domain already introduced: C xenstored rebinds the port, resets
   * the ring connection (`domain_conn_reset`) and answers a pending reconnection request.
   */
  reintroduce?(domid: number, port: number): void;
}

/**
 * Makes the store outlive the process (src/xenstore/journal.ts, `xenstored --state`). The
 * core calls `commit()` at the end of every request and of every domain release, before
 * anything they produced is handed to a transport: a change is on record before it is
 * acknowledged. Which nodes changed the journal reads from `Store.nodes.changes`.
 */
export interface StateJournal {
  /** The domain table or a special node's permissions changed in this request. */
  metaChanged(): void;
  /** Records what changed since the last call, if anything. */
  commit(): void;
}

/**
 * Where CONTROL `dump-state` writes the migration stream (migration.ts): the xenstore layer
 * does no I/O, so the daemon's files come through this (state-files.ts over node:fs).
 */
export interface StateDumpFiles {
  /** Writes `bytes` to `path` whole (mode 0600, replacing it); throws on failure. */
  write(path: string, bytes: Uint8Array): void;
}

/** Every connection's watches (watch.ts `WatchTable`). */
export interface Watches {
  /** Registers a watch; the caller has checked it against the quotas. */
  add(conn: Connection, node: string, token: string, relativeTo: string | null): Watch;
  remove(w: Watch): void;
  /** Removes every watch of `conn`. */
  dropAll(conn: Connection): void;
  /** Queues on `events` an event for every watch that `name` changing triggers. */
  fire(name: string, node: Node | null, exact: boolean, oldPerms: Perms | null, events: Delivery[]): void;
  /** `fire` for each change a request made. */
  fireAll(fires: readonly FireRequest[], events: Delivery[]): void;
}

/** The daemon's state and the operations its request handlers share. */
export interface Daemon {
  readonly store: Store;
  readonly quotas: Quotas;
  /** A released domain's nodes go to dom0 instead of being deleted. */
  readonly keepOrphans: boolean;
  readonly log: XsLogger;
  /** Per-domain memory, outstanding requests and quotas of their own (quota.ts). */
  readonly accounts: Accounts;
  /** C's write rate limit, in force while transactions are open (quota.ts). */
  readonly writeRate: WriteRateLimit;
  readonly domains: Map<number, Domain>;
  /** Open connections in the order they came. */
  readonly connections: Set<Connection>;
  /** Nodes owned per domain. */
  readonly entries: Map<number, number>;
  /** Permissions of the special nodes (`@introduceDomain`, `@releaseDomain`). */
  readonly specialPerms: Map<string, Perms>;
  readonly watches: Watches;
  readonly hooks: DomainHooks;
  readonly journal: StateJournal | null;
  /** The trace file (`-T`), which CONTROL `log`, `logfile` and `memreport` act on. */
  readonly trace: Trace;
  /** Where CONTROL `dump-state` writes; null: the command is not available. */
  readonly dumpFiles: StateDumpFiles | null;
  connectDomain(domid: number): Connection;
  disconnect(conn: Connection): void;
  /** Drops a connection's watches and transactions but keeps it open. */
  resetConnection(conn: Connection): void;
  /** Removes `name` and its subtree (C `rm_node`), firing watches as each node goes. */
  rmNode(view: View, name: string): void;
  /** Counts `delta` more nodes owned by `domid`. */
  entryAdjust(domid: number, delta: number): void;
}
