/**
 * Watches (C xenstored_watch.c): WATCH, UNWATCH and RESET_WATCHES, which watches a change
 * fires and who may see the event, and the rule that drops an event already queued.
 */

import {
  type Connection,
  type Daemon,
  type Delivery,
  OK,
  type RequestContext,
  type Watch,
  type Watches,
} from "./daemon.ts";
import { XsError } from "./errors.ts";
import { canonicalize, isChild, isValidNodename, parentOf } from "./paths.ts";
import { Perm, type Perms, permFor } from "./perms.ts";
import type { Accounts } from "./quota.ts";
import type { FireRequest, Node, Store } from "./store.ts";
import {
  fromLatin1,
  getStrings,
  latin1,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_REL_PATH_MAX,
  type XsPacket,
  XsType,
} from "./wire.ts";

const AT = 64; // "@"

export function eventPacket(path: string, token: string): XsPacket {
  return { type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload: latin1(`${path}\0${token}\0`) };
}

/** The path an event reports: relative watches see paths relative to their home. */
function watchPath(w: Watch, name: string): string {
  if (w.relativeTo === null) return name;
  let p = name.slice(w.relativeTo.length);
  if (p.charCodeAt(0) === 47) p = p.slice(1);
  return p;
}

// ---------------------------------------------------------------------------------------
// Duplicate events
//
// C `send_event` (xenstored_core.c) drops a watch event identical, byte for byte (path and
// token), to one still queued, unsent, for the same connection; special `@` events are never
// dropped. The core applies the rule to the events one request fires (several watches of one
// connection may produce the same event), each transport to its own queue.

function deduplicated(p: XsPacket): boolean {
  return p.type === XsType.WATCH_EVENT && p.payload[0] !== AT;
}

/** True if `p` is an event the rule drops because `queued`, still queued, is the same. */
export function duplicates(queued: XsPacket, p: XsPacket): boolean {
  return deduplicated(p) && queued.type === XsType.WATCH_EVENT && sameBytes(queued.payload, p.payload);
}

/** True if the rule drops `p`, given what is still queued for its connection. */
export function isQueuedDuplicate(queue: readonly XsPacket[], p: XsPacket): boolean {
  if (!deduplicated(p)) return false;
  for (const q of queue) if (duplicates(q, p)) return true;
  return false;
}

/**
 * The rule as a key, for a queue too long to scan: two events are duplicates exactly when
 * their keys are equal. Null for a packet the rule never drops.
 */
export function duplicateKey(p: XsPacket): string | null {
  return deduplicated(p) ? fromLatin1(p.payload) : null;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Is `p` a duplicate of an event queued for `conn` among `events` from index `from`? */
function isDuplicate(events: readonly Delivery[], from: number, conn: Connection, p: XsPacket): boolean {
  for (let i = from; i < events.length; i++) {
    const e = events[i]!;
    if (e.conn === conn && duplicates(e.packet, p)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------

/** Every connection's watches, indexed by the node they watch. */
export class WatchTable implements Watches {
  /** Watches by absolute node (or `@name`). */
  readonly #index = new Map<string, Watch[]>();
  #seq = 0;
  readonly #accounts: Accounts;
  readonly #store: Store;
  readonly #specialPerms: ReadonlyMap<string, Perms>;

  constructor(accounts: Accounts, store: Store, specialPerms: ReadonlyMap<string, Perms>) {
    this.#accounts = accounts;
    this.#store = store;
    this.#specialPerms = specialPerms;
  }

  add(conn: Connection, node: string, token: string, relativeTo: string | null): Watch {
    const w: Watch = { node, token, relativeTo, conn, seq: ++this.#seq };
    this.#accounts.memoryAdd(conn.domid, node.length + token.length, false);
    conn.watches.push(w);
    const list = this.#index.get(node);
    if (list === undefined) this.#index.set(node, [w]);
    else list.push(w);
    return w;
  }

  remove(w: Watch): void {
    this.#accounts.memoryAdd(w.conn.domid, -(w.node.length + w.token.length), false);
    const ws = w.conn.watches;
    ws.splice(ws.indexOf(w), 1);
    const list = this.#index.get(w.node);
    if (list !== undefined) {
      list.splice(list.indexOf(w), 1);
      if (list.length === 0) this.#index.delete(w.node);
    }
  }

  dropAll(conn: Connection): void {
    for (const w of [...conn.watches]) this.remove(w);
  }

  fireAll(fires: readonly FireRequest[], events: Delivery[]): void {
    for (const f of fires) this.fire(f.name, f.node, f.exact, f.oldPerms, events);
  }

  /**
   * Queues an event for every watch that `name` changing triggers (C `fire_watches`):
   * special names go to connections allowed to read the special node; other paths to
   * watchers that can read the node or its parent (or could, before a permission change).
   */
  fire(name: string, node: Node | null, exact: boolean, oldPerms: Perms | null, events: Delivery[]): void {
    if (this.#index.size === 0) return;
    const matches: Watch[] = [];
    const add = (key: string) => {
      const ws = this.#index.get(key);
      if (ws !== undefined) for (const w of ws) matches.push(w);
    };
    if (exact || name.charCodeAt(0) === AT) {
      add(name);
    } else {
      add("/");
      for (let i = name.indexOf("/", 1); i !== -1; i = name.indexOf("/", i + 1)) add(name.slice(0, i));
      if (name !== "/") add(name);
    }
    if (matches.length === 0) return;
    if (matches.length > 1) matches.sort((a, b) => a.conn.id - b.conn.id || a.seq - b.seq);
    const special = name.charCodeAt(0) === AT;
    const first = events.length;
    let permittedFor: Connection | null = null;
    let permitted = false;
    for (const w of matches) {
      if (w.conn !== permittedFor) {
        permittedFor = w.conn;
        permitted = special
          ? this.#specialPermitted(name, w.conn)
          : this.#watchPermitted(w.conn, name, node, oldPerms);
      }
      if (!permitted) continue;
      if (!exact && !isChild(name, w.node)) continue;
      const packet = eventPacket(watchPath(w, name), w.token);
      if (packet.payload.byteLength > XENSTORE_PAYLOAD_MAX) continue;
      if (!special && isDuplicate(events, first, w.conn, packet)) continue;
      events.push({ conn: w.conn, packet });
    }
  }

  #specialPermitted(name: string, conn: Connection): boolean {
    const p = this.#specialPerms.get(name);
    if (p === undefined) return false;
    return (permFor(conn, p) & Perm.READ) !== 0;
  }

  #watchPermitted(conn: Connection, name: string, node: Node | null, oldPerms: Perms | null): boolean {
    if (conn.privileged) return true;
    if (oldPerms !== null && (permFor(conn, oldPerms) & Perm.READ) !== 0) return true;
    const nodes = this.#store.nodes;
    const n = node ?? nodes.get(name) ?? null;
    if (n === null) return false;
    if ((permFor(conn, n.perms) & Perm.READ) !== 0) return true;
    const parent = nodes.get(parentOf(n.name));
    return parent !== undefined && (permFor(conn, parent.perms) & Perm.READ) !== 0;
  }
}

// ---------------------------------------------------------------------------------------
// Requests

/** WATCH `path|token|` (C `do_watch`); the initial event follows the OK. */
export function doWatch(d: Daemon, ctx: RequestContext): string {
  const { conn } = ctx;
  const args = getStrings(ctx.payload);
  if (args.length !== 2) throw new XsError("EINVAL");
  let path = args[0]!;
  const token = args[1]!;
  let relativeTo: string | null = null;
  if (path.startsWith("@")) {
    if (path.length > XENSTORE_REL_PATH_MAX) throw new XsError("EINVAL");
  } else {
    if (!path.startsWith("/")) relativeTo = conn.home;
    path = canonicalize(conn.home, path);
    if (!isValidNodename(path, d.quotas.pathMax)) throw new XsError("EINVAL");
  }
  for (const w of conn.watches) if (w.node === path && w.token === token) throw new XsError("EEXIST");
  const watchLimit = d.accounts.limit(conn.domid, "watches");
  if (!conn.privileged && conn.watches.length > watchLimit) {
    d.accounts.hit(conn.domid, "watches", watchLimit);
    throw new XsError("E2BIG");
  }
  // C `add_watch`: the watch's memory is checked against the hard memory quota.
  if (d.accounts.wouldReachHard(conn.domid, path.length + token.length)) {
    d.accounts.memoryAdd(conn.domid, path.length + token.length, true);
    throw new XsError("ENOMEM");
  }
  const w = d.watches.add(conn, path, token, relativeTo);
  // The initial event; the transport sends it after the OK.
  ctx.after.push({ conn, packet: eventPacket(watchPath(w, w.node), w.token) });
  return OK;
}

/** UNWATCH `path|token|` (C `do_unwatch`). */
export function doUnwatch(d: Daemon, ctx: RequestContext): string {
  const args = getStrings(ctx.payload);
  if (args.length !== 2) throw new XsError("EINVAL");
  const path = canonicalize(ctx.conn.home, args[0]!);
  const token = args[1]!;
  const w = ctx.conn.watches.find((x) => x.node === path && x.token === token);
  if (w === undefined) throw new XsError("ENOENT");
  d.watches.remove(w);
  return OK;
}

/** RESET_WATCHES (C `do_reset_watches`): the connection's watches and transactions go. */
export function doResetWatches(d: Daemon, ctx: RequestContext): string {
  d.resetConnection(ctx.conn);
  return OK;
}
