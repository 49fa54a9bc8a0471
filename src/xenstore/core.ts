/**
 * The XenStore daemon's core: one pure step per request,
 * `step(conn, request) → { reply, events, out }`, with C xenstored's semantics
 * (tools/xenstore/xenstored_{core,watch,transaction,domain,control}.c of Xen 4.17).
 * No I/O here: transports feed requests in and deliver what comes out.
 */

import { XS_SERVER_FEATURE } from "../ring/byte-ring.ts";
import { DOMID_FIRST_RESERVED, DOMID_SELF } from "../xen/xen.ts";
import { XsError, type XsErrorName } from "./errors.ts";
import { baseOf, canonicalize, childPath, isChild, isValidNodename, parentOf } from "./paths.ts";
import { formatPerm, Perm, type PermEntry, type Perms, parsePerm, permFor } from "./perms.ts";
import {
  AccountedView,
  Accounts,
  chargeNodes,
  DEFAULT_QUOTAS,
  HARD_QUOTAS,
  type Quotas,
  SOFT_QUOTAS,
  WriteRateLimit,
} from "./quota.ts";
import {
  childrenBytes,
  commit,
  type FireRequest,
  type Node,
  nodeRecordSize,
  Store,
  Transaction,
  View,
} from "./store.ts";
import {
  atoi,
  fromLatin1,
  getStrings,
  latin1,
  onearg,
  typeName,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_REL_PATH_MAX,
  type XsPacket,
  XsType,
} from "./wire.ts";

/**
 * The `server_features` bits this daemon offers (C xenstored 4.17: reconnection and error
 * reporting): advertised in each ring's page and answered to GET_FEATURE.
 */
export const OFFERED_FEATURES = XS_SERVER_FEATURE.reconnection | XS_SERVER_FEATURE.error;

export interface XsLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

const SILENT: XsLogger = { info() {}, warn() {}, error() {}, debug() {} };

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

  constructor(id: number, domid: number, privileged: boolean, label: string) {
    this.id = id;
    this.domid = domid;
    this.privileged = privileged;
    this.home = `/local/domain/${domid}`;
    this.label = label;
  }
}

export interface Delivery {
  conn: Connection;
  packet: XsPacket;
}

/** Hands each packet to its connection's transport, in order. */
export function deliver(out: readonly Delivery[]): void {
  for (const d of out) if (!d.conn.closed) d.conn.sink?.send(d.conn, d.packet);
}

export interface StepResult {
  /** The reply to the request. */
  reply: XsPacket;
  /** Watch events, possibly for other connections, in the order they were produced. */
  events: Delivery[];
  /**
   * Everything to send, in the order C xenstored queues it: the events the request fired
   * (so a writer watching its own node sees the event before the OK), the reply, then a
   * new watch's initial event.
   */
  out: Delivery[];
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

export interface CoreOptions {
  /** Records every change before it is acknowledged (`xenstored --state`). */
  journal?: StateJournal;
  quotas?: Partial<Quotas>;
  keepOrphans?: boolean;
  log?: XsLogger;
  hooks?: DomainHooks;
}

type Handler = (ctx: RequestContext) => Uint8Array | string;

interface WireFunc {
  readonly fn: Handler;
  /** Privileged connections only (EACCES otherwise). */
  readonly priv?: boolean;
  /** Ignores the transaction id. */
  readonly noTx?: boolean;
}

/** Per-request state: who asks, with which view, what it sent. */
interface RequestContext {
  readonly conn: Connection;
  readonly view: View;
  readonly payload: Uint8Array;
  readonly type: number;
  /** Events the handler fires itself (domain introduction and release): sent before the reply. */
  readonly before: Delivery[];
  /** Events sent after the reply (a new watch's initial event). */
  readonly after: Delivery[];
}

const OK = "OK\0";
const EMPTY = new Uint8Array(0);

export class XenStoreCore {
  readonly store = new Store();
  readonly quotas: Quotas;
  readonly keepOrphans: boolean;
  readonly log: XsLogger;
  /** Per-domain memory, outstanding requests and quotas of their own (quota.ts). */
  readonly accounts: Accounts;
  /** C's write rate limit, in force while transactions are open (quota.ts). */
  readonly writeRate: WriteRateLimit;
  /** Transactions open on every connection (the write rate limit's `wrl_ntransactions`). */
  #openTransactions = 0;
  readonly domains = new Map<number, Domain>();
  /** Open connections in the order they came. */
  readonly connections = new Set<Connection>();
  /** Nodes owned per domain. */
  readonly entries = new Map<number, number>();
  /** Watches by absolute node (or `@name`). */
  readonly #watchIndex = new Map<string, Watch[]>();
  #watchSeq = 0;
  #connSeq = 0;
  readonly #hooks: DomainHooks;
  readonly #journal: StateJournal | null;
  /** Permissions of the special nodes; "privileged only" by default. */
  readonly specialPerms = new Map<string, Perms>([
    ["@introduceDomain", [{ id: 0, perms: Perm.NONE }]],
    ["@releaseDomain", [{ id: 0, perms: Perm.NONE }]],
  ]);
  readonly #table: ReadonlyMap<number, WireFunc>;

  constructor(opts: CoreOptions = {}) {
    this.quotas = { ...DEFAULT_QUOTAS, ...opts.quotas };
    this.keepOrphans = opts.keepOrphans ?? false;
    this.log = opts.log ?? SILENT;
    this.#hooks = opts.hooks ?? {};
    this.#journal = opts.journal ?? null;
    this.accounts = new Accounts({ quotas: this.quotas, log: this.log });
    chargeNodes(this.store.nodes, this.accounts);
    this.writeRate = new WriteRateLimit(this.log);
    this.writeRate.addDomain(0);
    this.entries.set(0, this.store.nodes.size);
    this.domains.set(0, { domid: 0, conn: null, gfn: "0", port: 0, shutdown: false });
    this.#table = new Map<number, WireFunc>([
      [XsType.CONTROL, { fn: (c) => this.#control(c), priv: true }],
      [XsType.DIRECTORY, { fn: (c) => this.#directory(c) }],
      [XsType.READ, { fn: (c) => this.#read(c) }],
      [XsType.GET_PERMS, { fn: (c) => this.#getPerms(c) }],
      [XsType.WATCH, { fn: (c) => this.#watch(c), noTx: true }],
      [XsType.UNWATCH, { fn: (c) => this.#unwatch(c), noTx: true }],
      [XsType.TRANSACTION_START, { fn: (c) => this.#transactionStart(c) }],
      [XsType.TRANSACTION_END, { fn: (c) => this.#transactionEnd(c) }],
      [XsType.INTRODUCE, { fn: (c) => this.#introduce(c), priv: true }],
      [XsType.RELEASE, { fn: (c) => this.#release(c), priv: true }],
      [XsType.GET_DOMAIN_PATH, { fn: (c) => this.#getDomainPath(c) }],
      [XsType.WRITE, { fn: (c) => this.#write(c) }],
      [XsType.MKDIR, { fn: (c) => this.#mkdir(c) }],
      [XsType.RM, { fn: (c) => this.#rm(c) }],
      [XsType.SET_PERMS, { fn: (c) => this.#setPerms(c) }],
      [XsType.IS_DOMAIN_INTRODUCED, { fn: (c) => this.#isDomainIntroduced(c), priv: true }],
      [XsType.RESUME, { fn: (c) => this.#resume(c), priv: true }],
      [XsType.SET_TARGET, { fn: (c) => this.#setTarget(c), priv: true }],
      [XsType.RESET_WATCHES, { fn: (c) => this.#resetWatches(c) }],
      [XsType.DIRECTORY_PART, { fn: (c) => this.#directoryPart(c) }],
      [XsType.GET_FEATURE, { fn: (c) => this.#getFeature(c) }],
      [XsType.SET_FEATURE, { fn: (c) => this.#setFeature(c), priv: true }],
      [XsType.GET_QUOTA, { fn: (c) => this.#getQuota(c), priv: true }],
      [XsType.SET_QUOTA, { fn: (c) => this.#setQuota(c), priv: true }],
    ]);
  }

  // ---------------------------------------------------------------- connections

  /** A new socket client: dom0, privileged, as in C xenstored. */
  connectSocket(): Connection {
    const id = ++this.#connSeq;
    const conn = new Connection(id, 0, true, `socket#${id}`);
    this.connections.add(conn);
    return conn;
  }

  /**
   * Dom0's kernel connects through its own ring (C `dom0_init`): dom0 is known from the start,
   * so this records its ring's connection, page and port instead of an INTRODUCE.
   */
  attachDom0(conn: Connection, gfn: string, port: number): void {
    const d = this.domains.get(0)!;
    d.conn = conn;
    d.gfn = gfn;
    d.port = port;
  }

  /** A domain's ring connection (used by the hypervisor side). */
  connectDomain(domid: number): Connection {
    const id = ++this.#connSeq;
    const conn = new Connection(id, domid, domid === 0, `dom${domid}`);
    this.connections.add(conn);
    return conn;
  }

  /**
   * Drops a connection's watches and transactions but keeps it open (C
   * `conn_delete_all_watches` + `conn_delete_all_transactions`): a ring that reconnects, or
   * one the daemon stops talking to.
   */
  resetConnection(conn: Connection): void {
    this.#dropWatches(conn);
    this.#dropTransactions(conn);
  }

  /** Forgets every transaction of `conn`: their copies are freed and they no longer count. */
  #dropTransactions(conn: Connection): void {
    for (const tx of conn.transactions.values()) this.#transactionGone(tx);
    conn.transactions.clear();
  }

  #transactionGone(tx: Transaction): void {
    this.accounts.txRelease(tx);
    this.#openTransactions--;
  }

  /** The client went away: its watches and transactions go with it. */
  disconnect(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    this.#dropWatches(conn);
    this.#dropTransactions(conn);
    this.connections.delete(conn);
  }

  // ---------------------------------------------------------------- the step

  /**
   * Handles one request. Errors become an `XS_ERROR` reply here and only here; a reply
   * larger than XENSTORE_PAYLOAD_MAX becomes E2BIG.
   */
  step(conn: Connection, req: XsPacket): StepResult {
    const before: Delivery[] = [];
    const after: Delivery[] = [];
    const finish = (reply: XsPacket): StepResult => {
      this.#journal?.commit();
      const out = [...before, { conn, packet: reply }, ...after];
      return { reply, events: [...before, ...after], out };
    };
    const error = (errno: XsErrorName) =>
      finish({ type: XsType.ERROR, reqId: req.reqId, txId: req.txId, payload: latin1(`${errno}\0`) });
    const f = this.#table.get(req.type);
    if (f === undefined) {
      this.log.debug({ conn: conn.label, type: req.type }, `unknown operation ${typeName(req.type)}`);
      return error("ENOSYS");
    }
    if (f.priv && !conn.privileged) return error("EACCES");
    let tx: Transaction | null = null;
    if (!f.noTx && req.txId !== 0) {
      tx = conn.transactions.get(req.txId) ?? null;
      if (tx === null) return error("ENOENT");
    }
    const transNodes = conn.privileged
      ? Number.POSITIVE_INFINITY
      : this.accounts.limit(conn.domid, "transactionNodes");
    const view = new AccountedView(this.store, tx, this.#entryHook, transNodes, this.accounts, conn.domid);
    let result: Uint8Array | string;
    try {
      result = f.fn({ conn, view, payload: req.payload, type: req.type, before, after });
    } catch (e) {
      if (!(e instanceof XsError)) throw e;
      if (e.errno === "ENOSPC" && tx !== null && tx.failed && tx.accessed.size >= transNodes)
        this.#quotaHit(conn, "transaction-nodes", transNodes);
      this.#debitWrites(conn, tx, view);
      // Watches asked for before the failure still fire, as in C xenstored.
      this.#fireAll(view.fires, before);
      return error(e.errno);
    }
    this.#fireAll(view.fires, before);
    this.#debitWrites(conn, tx, view);
    const bytes = typeof result === "string" ? latin1(result) : result;
    if (bytes.byteLength > XENSTORE_PAYLOAD_MAX) return error("E2BIG");
    return finish({ type: req.type, reqId: req.reqId, txId: req.txId, payload: bytes });
  }

  /**
   * C `wrl_apply_debit_direct`: while a transaction is open anywhere, each node a guest
   * modifies outside a transaction costs it one write of credit.
   */
  #debitWrites(conn: Connection, tx: Transaction | null, view: AccountedView): void {
    if (tx !== null || conn.privileged || this.#openTransactions === 0) return;
    for (let i = 0; i < view.modified; i++) this.writeRate.debit(conn.domid);
  }

  // ---------------------------------------------------------------- node access

  /**
   * The node `name` if `conn` has `perm` on it. Otherwise ENOENT or EACCES, chosen as C
   * xenstored chooses: a caller without `perm` on the nearest existing ancestor learns
   * nothing about the node (EACCES).
   */
  #getNode(ctx: RequestContext, name: string | null, perm: number): Node {
    const r = this.#lookup(ctx, name, perm);
    if (typeof r === "string") throw new XsError(r);
    return r;
  }

  /** #getNode without the throw, for callers to whom ENOENT is a normal outcome. */
  #lookup(ctx: RequestContext, name: string | null, perm: number): Node | XsErrorName {
    if (name === null || !isValidNodename(name, this.quotas.pathMax)) {
      if (name !== null && isValidNodename(name, Number.POSITIVE_INFINITY))
        this.#quotaHit(ctx.conn, "path-max", this.quotas.pathMax);
      return "EINVAL";
    }
    const node = ctx.view.read(name);
    let errno: XsErrorName;
    if (node !== null) {
      if ((permFor(ctx.conn, node.perms) & perm) === perm) return node;
      errno = "EACCES";
    } else {
      errno = "ENOENT";
    }
    let p = name;
    let anc: Node | null = null;
    do {
      p = parentOf(p);
      anc = ctx.view.read(p);
    } while (anc === null && p !== "/");
    if (anc !== null && (permFor(ctx.conn, anc.perms) & perm) !== 0) return errno;
    return "EACCES";
  }

  #canon(ctx: RequestContext, name: string | null): string | null {
    return name === null ? null : canonicalize(ctx.conn.home, name);
  }

  #checkNodeSize(ctx: RequestContext, rec: Pick<Node, "value" | "perms" | "children">): void {
    const limit = this.accounts.limit(ctx.conn.domid, "nodeSize");
    if (!ctx.conn.privileged && nodeRecordSize(rec) >= limit) {
      this.#quotaHit(ctx.conn, "node-size", limit);
      throw new XsError("ENOSPC");
    }
  }

  /**
   * Creates `name` and any missing ancestors (C `construct_node` + `create_node`). New nodes
   * copy their parent's permissions; a guest owns what it creates.
   */
  #create(ctx: RequestContext, name: string, value: Uint8Array): Node {
    const { view, conn } = ctx;
    const missing: string[] = [name];
    let parentName = parentOf(name);
    let parent = view.read(parentName);
    while (parent === null) {
      if (parentName === "/") throw new XsError("ENOENT");
      missing.push(parentName);
      parentName = parentOf(parentName);
      parent = view.read(parentName);
    }
    missing.reverse(); // top-most missing first
    if (!conn.privileged) {
      const have = this.entries.get(conn.domid) ?? 0;
      const limit = this.accounts.limit(conn.domid, "nodes");
      if (have + missing.length > limit) {
        this.#quotaHit(conn, "nodes", limit);
        throw new XsError("ENOSPC");
      }
    }
    let perms: Perms = parent.perms;
    if (!conn.privileged) perms = [{ id: conn.domid, perms: perms[0]!.perms }, ...perms.slice(1)];
    // Check every record first, so a quota failure leaves nothing half-written.
    const parentRec = { ...parent, children: [...parent.children, baseOf(missing[0]!)] };
    this.#checkNodeSize(ctx, parentRec);
    for (let i = 0; i < missing.length; i++) {
      const last = i === missing.length - 1;
      this.#checkNodeSize(ctx, {
        value: last ? value : EMPTY,
        perms,
        children: last ? [] : [baseOf(missing[i + 1]!)],
      });
    }
    if (view.tx) view.tx.nodeCreated = true;
    let node: Node | null = null;
    for (let i = missing.length - 1; i >= 0; i--) {
      const last = i === missing.length - 1;
      const n = view.write(missing[i]!, last ? value : EMPTY, perms, last ? [] : [baseOf(missing[i + 1]!)]);
      if (last) node = n;
      view.entry(perms[0]!.id, 1);
    }
    view.write(parentName, parent.value, parent.perms, parentRec.children);
    return node!;
  }

  /** Removes `name` and its subtree (C `rm_node`), firing watches as each node goes. */
  #rmNode(view: View, name: string): void {
    const parentName = parentOf(name);
    const parent = view.read(parentName);
    if (parent === null) throw new XsError("EINVAL");
    // A transaction's copy of the parent may predate the child (created outside after the
    // transaction rewrote the parent): C xenstored cannot find the child entry and fails
    // with EIO ("corrupt"); so do we, before changing anything.
    if (!parent.children.includes(baseOf(name))) {
      this.log.warn({ node: name }, `rm: ${baseOf(name)} is not a child of ${parentName} in this view`);
      throw new XsError("EIO");
    }
    const walk = (n: Node): void => {
      for (const c of n.children) {
        const child = view.read(childPath(n.name, c));
        if (child !== null) walk(child);
      }
      view.delete(n.name);
      view.fire(n.name, n, n.name !== name, null);
      view.entry(n.perms[0]!.id, -1);
    };
    const node = view.read(name);
    if (node !== null) walk(node);
    // The parent's record may have changed while walking (it hasn't, but read it fresh).
    const p = view.read(parentName) ?? parent;
    const base = baseOf(name);
    view.write(
      parentName,
      p.value,
      p.perms,
      p.children.filter((c) => c !== base),
    );
  }

  readonly #entryHook = (domid: number, delta: number): void => this.#entryAdjust(domid, delta);

  #entryAdjust(domid: number, delta: number): void {
    this.entries.set(domid, (this.entries.get(domid) ?? 0) + delta);
  }

  #quotaHit(conn: Connection, quota: string, limit: number): void {
    this.accounts.hit(conn.domid, quota, limit);
  }

  // ---------------------------------------------------------------- watches

  #fireAll(fires: readonly FireRequest[], events: Delivery[]): void {
    for (const f of fires) this.#fire(f.name, f.node, f.exact, f.oldPerms, events);
  }

  /**
   * Queues an event for every watch that `name` changing triggers (C `fire_watches`):
   * special names go to connections allowed to read the special node; other paths to
   * watchers that can read the node or its parent (or could, before a permission change).
   */
  #fire(name: string, node: Node | null, exact: boolean, oldPerms: Perms | null, events: Delivery[]): void {
    if (this.#watchIndex.size === 0) return;
    const matches: Watch[] = [];
    const add = (key: string) => {
      const ws = this.#watchIndex.get(key);
      if (ws !== undefined) for (const w of ws) matches.push(w);
    };
    if (exact || name.charCodeAt(0) === 64 /* @ */) {
      add(name);
    } else {
      add("/");
      for (let i = name.indexOf("/", 1); i !== -1; i = name.indexOf("/", i + 1)) add(name.slice(0, i));
      if (name !== "/") add(name);
    }
    if (matches.length === 0) return;
    if (matches.length > 1) matches.sort((a, b) => a.conn.id - b.conn.id || a.seq - b.seq);
    const special = name.charCodeAt(0) === 64;
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
      if (!special && isDuplicate(events, first, w.conn, packet.payload)) continue;
      events.push({ conn: w.conn, packet });
    }
  }

  #specialPermitted(name: string, conn: Connection): boolean {
    const p = this.specialPerms.get(name);
    if (p === undefined) return false;
    return (permFor(conn, p) & Perm.READ) !== 0;
  }

  #watchPermitted(conn: Connection, name: string, node: Node | null, oldPerms: Perms | null): boolean {
    if (conn.privileged) return true;
    if (oldPerms !== null && (permFor(conn, oldPerms) & Perm.READ) !== 0) return true;
    const n = node ?? this.store.nodes.get(name) ?? null;
    if (n === null) return false;
    if ((permFor(conn, n.perms) & Perm.READ) !== 0) return true;
    const parent = this.store.nodes.get(parentOf(n.name));
    return parent !== undefined && (permFor(conn, parent.perms) & Perm.READ) !== 0;
  }

  #addWatch(conn: Connection, node: string, token: string, relativeTo: string | null): Watch {
    const w: Watch = { node, token, relativeTo, conn, seq: ++this.#watchSeq };
    this.accounts.memoryAdd(conn.domid, node.length + token.length, false);
    conn.watches.push(w);
    const list = this.#watchIndex.get(node);
    if (list === undefined) this.#watchIndex.set(node, [w]);
    else list.push(w);
    return w;
  }

  #removeWatch(w: Watch): void {
    this.accounts.memoryAdd(w.conn.domid, -(w.node.length + w.token.length), false);
    const ws = w.conn.watches;
    ws.splice(ws.indexOf(w), 1);
    const list = this.#watchIndex.get(w.node);
    if (list !== undefined) {
      list.splice(list.indexOf(w), 1);
      if (list.length === 0) this.#watchIndex.delete(w.node);
    }
  }

  #dropWatches(conn: Connection): void {
    for (const w of [...conn.watches]) this.#removeWatch(w);
  }

  /** Fires a special event (`@introduceDomain`, `@releaseDomain`) from outside a request. */
  fireSpecial(name: string): Delivery[] {
    const events: Delivery[] = [];
    this.#fire(name, null, true, null, events);
    return events;
  }

  // ---------------------------------------------------------------- handlers

  #read(ctx: RequestContext): Uint8Array {
    return this.#getNode(ctx, this.#canon(ctx, onearg(ctx.payload)), Perm.READ).value;
  }

  #directory(ctx: RequestContext): Uint8Array {
    return childrenBytes(this.#getNode(ctx, this.#canon(ctx, onearg(ctx.payload)), Perm.READ).children);
  }

  #directoryPart(ctx: RequestContext): Uint8Array {
    const args = getStrings(ctx.payload);
    if (args.length !== 2) throw new XsError("EINVAL");
    const node = this.#getNode(ctx, this.#canon(ctx, args[0]!), Perm.READ);
    const off = atoi(args[1]!) >>> 0;
    const all = childrenBytes(node.children);
    const gen = `${node.generation}\0`;
    if (off >= all.byteLength) return latin1(`${gen}\0`);
    // Whole names only, as many as fit with the generation and the final empty string.
    const maxlen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    let pos = off;
    while (pos < all.byteLength) {
      const end = all.indexOf(0, pos);
      const nameLen = end - pos;
      if (len + nameLen >= maxlen) break;
      len += nameLen + 1;
      pos = end + 1;
    }
    const complete = off + len === all.byteLength;
    const out = new Uint8Array(gen.length + len + (complete ? 1 : 0));
    out.set(latin1(gen), 0);
    out.set(all.subarray(off, off + len), gen.length);
    return out;
  }

  #getPerms(ctx: RequestContext): string {
    const node = this.#getNode(ctx, this.#canon(ctx, onearg(ctx.payload)), Perm.READ);
    return node.perms.map((p) => `${formatPerm(p)}\0`).join("");
  }

  #write(ctx: RequestContext): string {
    const p = ctx.payload;
    const nul = p.indexOf(0);
    if (nul < 0) throw new XsError("EINVAL");
    const name = canonicalize(ctx.conn.home, fromLatin1(p, 0, nul));
    const value = p.slice(nul + 1);
    let node: Node;
    const cur = this.#lookup(ctx, name, Perm.WRITE);
    if (cur === "ENOENT") {
      node = this.#create(ctx, name, value);
    } else if (typeof cur === "string") {
      throw new XsError(cur);
    } else {
      this.#checkNodeSize(ctx, { value, perms: cur.perms, children: cur.children });
      node = ctx.view.write(name, value, cur.perms, cur.children);
    }
    ctx.view.fire(name, node, false, null);
    return OK;
  }

  #mkdir(ctx: RequestContext): string {
    const name = this.#canon(ctx, onearg(ctx.payload));
    const cur = this.#lookup(ctx, name, Perm.WRITE);
    if (cur === "ENOENT") {
      const node = this.#create(ctx, name!, EMPTY);
      ctx.view.fire(name!, node, false, null);
    } else if (typeof cur === "string") {
      throw new XsError(cur);
    }
    return OK;
  }

  #rm(ctx: RequestContext): string {
    const name = this.#canon(ctx, onearg(ctx.payload));
    const cur = this.#lookup(ctx, name, Perm.WRITE);
    if (cur === "ENOENT") {
      // Already gone: fine if the parent exists.
      if (ctx.view.read(parentOf(name!)) !== null) return OK;
      throw new XsError(cur);
    }
    if (typeof cur === "string") throw new XsError(cur);
    if (name === "/") throw new XsError("EINVAL");
    this.#rmNode(ctx.view, name!);
    return OK;
  }

  #setPerms(ctx: RequestContext): string {
    const args = getStrings(ctx.payload);
    if (args.length < 2) throw new XsError("EINVAL");
    const permStrings = args.slice(1);
    const permLimit = this.accounts.limit(ctx.conn.domid, "permissions");
    if (!ctx.conn.privileged && permStrings.length > permLimit) {
      this.#quotaHit(ctx.conn, "permissions", permLimit);
      throw new XsError("ENOSPC");
    }
    const perms: PermEntry[] = [];
    for (const s of permStrings) {
      const p = parsePerm(s);
      if (p === null) throw new XsError("EINVAL");
      perms.push(p);
    }
    // An owner that cannot exist (DOMID_FIRST_RESERVED and above) is a missing domain:
    // C xenstored marks it ignored and refuses the set with ENOENT. Other entries naming
    // such domids are kept (and match nobody).
    if (perms[0]!.id >= DOMID_FIRST_RESERVED) throw new XsError("ENOENT");
    const path = args[0]!;
    if (path.startsWith("@")) {
      const cur = this.specialPerms.get(path);
      if (cur === undefined) throw new XsError("EINVAL");
      const need = Perm.WRITE | Perm.OWNER;
      if ((permFor(ctx.conn, cur) & need) !== need) throw new XsError("EACCES");
      this.specialPerms.set(path, perms);
      this.#journal?.metaChanged();
      return OK;
    }
    const name = canonicalize(ctx.conn.home, path);
    const node = this.#getNode(ctx, name, Perm.WRITE | Perm.OWNER);
    if (!ctx.conn.privileged && perms[0]!.id !== node.perms[0]!.id) throw new XsError("EPERM");
    this.#checkNodeSize(ctx, { value: node.value, perms, children: node.children });
    const updated = ctx.view.write(name, node.value, perms, node.children);
    if (perms[0]!.id !== node.perms[0]!.id) {
      ctx.view.entry(node.perms[0]!.id, -1);
      ctx.view.entry(perms[0]!.id, 1);
    }
    ctx.view.fire(name, updated, false, node.perms);
    return OK;
  }

  #watch(ctx: RequestContext): string {
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
      if (!isValidNodename(path, this.quotas.pathMax)) throw new XsError("EINVAL");
    }
    for (const w of conn.watches) if (w.node === path && w.token === token) throw new XsError("EEXIST");
    const watchLimit = this.accounts.limit(conn.domid, "watches");
    if (!conn.privileged && conn.watches.length > watchLimit) {
      this.#quotaHit(conn, "watches", watchLimit);
      throw new XsError("E2BIG");
    }
    // C `add_watch`: the watch's memory is checked against the hard memory quota.
    if (this.accounts.wouldReachHard(conn.domid, path.length + token.length)) {
      this.accounts.memoryAdd(conn.domid, path.length + token.length, true);
      throw new XsError("ENOMEM");
    }
    const w = this.#addWatch(conn, path, token, relativeTo);
    // The initial event; the transport sends it after the OK.
    ctx.after.push({ conn, packet: eventPacket(watchPath(w, w.node), w.token) });
    return OK;
  }

  #unwatch(ctx: RequestContext): string {
    const args = getStrings(ctx.payload);
    if (args.length !== 2) throw new XsError("EINVAL");
    const path = canonicalize(ctx.conn.home, args[0]!);
    const token = args[1]!;
    const w = ctx.conn.watches.find((x) => x.node === path && x.token === token);
    if (w === undefined) throw new XsError("ENOENT");
    this.#removeWatch(w);
    return OK;
  }

  #resetWatches(ctx: RequestContext): string {
    this.#dropWatches(ctx.conn);
    this.#dropTransactions(ctx.conn);
    return OK;
  }

  #transactionStart(ctx: RequestContext): string {
    const { conn } = ctx;
    if (ctx.view.tx !== null) throw new XsError("EBUSY");
    const txLimit = this.accounts.limit(conn.domid, "transactions");
    if (!conn.privileged && conn.transactions.size > txLimit) {
      this.#quotaHit(conn, "transactions", txLimit);
      throw new XsError("ENOSPC");
    }
    let id = conn.nextTxId;
    while (id === 0 || conn.transactions.has(id)) id = (id + 1) >>> 0;
    conn.nextTxId = (id + 1) >>> 0;
    conn.transactions.set(id, new Transaction(id, this.store.nextGeneration()));
    this.#openTransactions++;
    return `${id}\0`;
  }

  #transactionEnd(ctx: RequestContext): string {
    const arg = onearg(ctx.payload);
    if (arg !== "T" && arg !== "F") throw new XsError("EINVAL");
    const tx = ctx.view.tx;
    if (tx === null) throw new XsError("ENOENT");
    ctx.conn.transactions.delete(tx.id);
    this.#transactionGone(tx);
    if (arg === "F") return OK;
    if (tx.failed) throw new XsError("ENOMEM");
    if (tx.nodeCreated && !ctx.conn.privileged) {
      for (const [domid, delta] of tx.entryDelta) {
        if (domid === 0) continue;
        const limit = this.accounts.limit(ctx.conn.domid, "nodes");
        if ((this.entries.get(domid) ?? 0) + delta > limit) {
          this.#quotaHit(ctx.conn, "nodes", limit);
          throw new XsError("ENOSPC");
        }
      }
    }
    const fires = commit(this.store, tx);
    // C `wrl_apply_debit_trans_commit`: a commit costs a write while others are open.
    if (this.#openTransactions > 0 && !ctx.conn.privileged) this.writeRate.debit(ctx.conn.domid);
    for (const [domid, delta] of tx.entryDelta) this.#entryAdjust(domid, delta);
    for (const f of fires) ctx.view.fires.push(f);
    return OK;
  }

  #getDomainPath(ctx: RequestContext): string {
    const arg = onearg(ctx.payload);
    if (arg === null) throw new XsError("EINVAL");
    return `/local/domain/${atoi(arg) >>> 0}\0`;
  }

  #isDomainIntroduced(ctx: RequestContext): string {
    const arg = onearg(ctx.payload);
    if (arg === null) throw new XsError("EINVAL");
    const domid = atoi(arg) >>> 0;
    return domid === DOMID_SELF || this.domains.has(domid) ? "T\0" : "F\0";
  }

  #introduce(ctx: RequestContext): string {
    const args = getStrings(ctx.payload);
    if (args.length < 3) throw new XsError("EINVAL");
    const domid = atoi(args[0]!) >>> 0;
    const port = atoi(args[2]!) >>> 0;
    if (port === 0) throw new XsError("EINVAL");
    // DOMID_FIRST_RESERVED and above (DOMID_SELF, DOMID_IO, ...) name no domain: mapping fails.
    if (domid >= DOMID_SELF) throw new XsError("EINVAL");
    const existing = this.domains.get(domid);
    if (existing !== undefined) {
      // Re-introduction (restore): rebind the event channel; the ring side resets its connection.
      existing.port = port;
      this.#journal?.metaChanged();
      this.#hooks.reintroduce?.(domid, port);
      return OK;
    }
    // Without a hypervisor attached the domain still gets a connection (with no ring), so
    // it is "connected" for SET_TARGET, as every introduced domain is in C xenstored.
    const conn = this.#hooks.introduce?.(domid, args[1]!, port) ?? this.connectDomain(domid);
    this.domains.set(domid, { domid, conn, gfn: args[1]!, port, shutdown: false });
    this.writeRate.addDomain(domid);
    this.#journal?.metaChanged();
    this.log.info({ domid, port }, `domain ${domid} introduced`);
    this.#fire("@introduceDomain", null, true, null, ctx.before);
    return OK;
  }

  /** `domid|` naming an introduced domain other than dom0 (C `onearg_domain`). */
  #onearg_domain(ctx: RequestContext): Domain {
    const arg = onearg(ctx.payload);
    if (arg === null) throw new XsError("EINVAL");
    const domid = atoi(arg) >>> 0;
    if (domid === 0) throw new XsError("EINVAL");
    const d = this.domains.get(domid);
    if (d === undefined) throw new XsError("ENOENT");
    return d;
  }

  #release(ctx: RequestContext): string {
    const d = this.#onearg_domain(ctx);
    ctx.before.push(...this.releaseDomain(d.domid));
    return OK;
  }

  /**
   * Forgets a domain (RELEASE, or the domain died): drops its connection, deletes the
   * nodes it owns (or gives them to dom0 with keepOrphans), removes it from every ACL,
   * and fires `@releaseDomain`.
   */
  releaseDomain(domid: number): Delivery[] {
    const d = this.domains.get(domid);
    if (d === undefined || domid === 0) return [];
    this.domains.delete(domid);
    if (d.conn !== null) this.disconnect(d.conn);
    for (const c of [...this.connections]) if (c.domid === domid && !c.privileged) this.disconnect(c);
    this.#hooks.release?.(domid);
    const events: Delivery[] = [];
    const view = new View(
      this.store,
      null,
      (id, delta) => this.#entryAdjust(id, delta),
      Number.POSITIVE_INFINITY,
    );
    if ((this.entries.get(domid) ?? 0) > 0) {
      const visit = (name: string): void => {
        const n = this.store.nodes.get(name);
        if (n === undefined) return;
        if (n.perms[0]!.id === domid) {
          if (this.keepOrphans) {
            const perms = [{ id: 0, perms: n.perms[0]!.perms }, ...n.perms.slice(1)];
            this.store.nodes.set(name, { ...n, perms });
            this.#entryAdjust(domid, -1);
            this.#entryAdjust(0, 1);
          } else {
            this.#rmNode(view, name);
            return;
          }
        }
        for (const c of n.children) visit(childPath(name, c));
      };
      visit("/");
    }
    this.#fireAll(view.fires, events);
    this.#stripDomainFromAcls(domid);
    this.accounts.forget(domid);
    this.writeRate.removeDomain(domid);
    this.log.info({ domid }, `domain ${domid} released`);
    this.#fire("@releaseDomain", null, true, null, events);
    this.#journal?.metaChanged();
    this.#journal?.commit();
    return events;
  }

  /** A gone domain must not hand its rights to the next domain given its domid. */
  #stripDomainFromAcls(domid: number): void {
    for (const [name, n] of this.store.nodes) {
      if (n.perms.length < 2 || !n.perms.some((p, i) => i > 0 && p.id === domid)) continue;
      this.store.nodes.set(name, { ...n, perms: n.perms.filter((p, i) => i === 0 || p.id !== domid) });
    }
    for (const [name, p] of this.specialPerms) {
      const owner = p[0]!.id === domid ? { id: 0, perms: p[0]!.perms } : p[0]!;
      this.specialPerms.set(name, [owner, ...p.slice(1).filter((e) => e.id !== domid)]);
    }
  }

  #resume(ctx: RequestContext): string {
    this.#onearg_domain(ctx).shutdown = false;
    return OK;
  }

  #setTarget(ctx: RequestContext): string {
    const args = getStrings(ctx.payload);
    if (args.length < 2) throw new XsError("EINVAL");
    const connected = (domid: number): Domain => {
      const d = this.domains.get(domid);
      if (d === undefined) throw new XsError("ENOENT");
      if (d.conn === null && domid !== 0) throw new XsError("EINVAL");
      return d;
    };
    const d = connected(atoi(args[0]!) >>> 0);
    const t = connected(atoi(args[1]!) >>> 0);
    if (d.conn !== null) d.conn.target = t.domid;
    return OK;
  }

  #getFeature(ctx: RequestContext): string {
    const args = getStrings(ctx.payload);
    if (args.length > 1) throw new XsError("EINVAL");
    if (args.length === 1) {
      if (!ctx.conn.privileged) throw new XsError("EACCES");
      if (!this.domains.has(atoi(args[0]!) >>> 0)) throw new XsError("ENOENT");
    }
    return `${OFFERED_FEATURES}\0`;
  }

  #setFeature(ctx: RequestContext): string {
    const args = getStrings(ctx.payload);
    if (args.length !== 2) throw new XsError("EINVAL");
    if (!this.domains.has(atoi(args[0]!) >>> 0)) throw new XsError("ENOENT");
    // Features can only be taken away from what the server offers.
    if ((atoi(args[1]!) >>> 0) & ~OFFERED_FEATURES) throw new XsError("EINVAL");
    return OK;
  }

  #getQuota(ctx: RequestContext): string {
    const args = getStrings(ctx.payload);
    if (args.length === 0) return `${HARD_QUOTAS.map((q) => q.name).join(" ")}\0`;
    const name = args[args.length - 1]!;
    const q = HARD_QUOTAS.find((x) => x.name === name);
    if (q === undefined || args.length > 2) throw new XsError("EINVAL");
    if (args.length === 1) return `${this.quotas[q.key]}\0`;
    const domid = atoi(args[0]!) >>> 0;
    if (!this.domains.has(domid)) throw new XsError("ENOENT");
    return `${this.accounts.limit(domid, q.key)}\0`;
  }

  #setQuota(ctx: RequestContext): string {
    const args = getStrings(ctx.payload);
    if (args.length < 2 || args.length > 3) throw new XsError("EINVAL");
    const name = args[args.length - 2]!;
    const q = HARD_QUOTAS.find((x) => x.name === name);
    if (q === undefined) throw new XsError("EINVAL");
    const domid = args.length === 3 ? atoi(args[0]!) >>> 0 : null;
    if (domid !== null && !this.domains.has(domid)) throw new XsError("ENOENT");
    const v = atoi(args[args.length - 1]!);
    if (v < 0) throw new XsError("EINVAL");
    const value = v === 0 ? Number.MAX_SAFE_INTEGER : v;
    // A domain's own value is kept apart from the global one, as current Xen keeps it.
    if (domid === null) this.quotas[q.key] = value;
    else this.accounts.setLimit(domid, q.key, value);
    this.log.info({ domid, quota: q.name, value }, `quota ${q.name} set to ${value}`);
    return OK;
  }

  // ---------------------------------------------------------------- CONTROL

  #control(ctx: RequestContext): Uint8Array | string {
    const args = getStrings(ctx.payload);
    if (args.length === 0) throw new XsError("EINVAL");
    const [cmd, ...rest] = args as [string, ...string[]];
    const c = CONTROL_COMMANDS.find((x) => x.cmd === cmd);
    if (c === undefined) throw new XsError("EINVAL");
    return c.run(this, rest, ctx);
  }

  /** CONTROL `quota` / `quota-soft` (xenstored_control.c). */
  controlQuota(args: readonly string[], soft: boolean): string {
    const table = soft ? SOFT_QUOTAS : HARD_QUOTAS;
    if (args.length === 0) {
      let s = "Quota settings:\n";
      for (const q of table)
        s += `${q.name.padEnd(17)}: ${String(this.quotas[q.key]).padStart(8)} ${q.descr}\n`;
      return `${s}\0`;
    }
    if (args[0] === "set") {
      if (args.length !== 3) throw new XsError("EINVAL");
      const v = atoi(args[2]!);
      if (v < 1) throw new XsError("EINVAL");
      const q = table.find((x) => x.name === args[1]);
      if (q === undefined) throw new XsError("EINVAL");
      this.quotas[q.key] = v;
      this.log.info({ quota: q.name, value: v, soft }, `quota ${q.name} set to ${v}`);
      return OK;
    }
    if (soft || args.length !== 1) throw new XsError("EINVAL");
    const domid = atoi(args[0]!) >>> 0;
    if (!this.domains.has(domid)) throw new XsError("ENOENT");
    const conn = this.domains.get(domid)!.conn;
    const line = (k: string, v: number) => `${k.padEnd(16)}: ${String(v).padStart(8)}\n`;
    // Quotas the domain has of its own (SET_QUOTA with its domid) follow C's lines.
    const own = this.accounts.overrides(domid);
    let mine = "";
    for (const q of HARD_QUOTAS) {
      const v = own?.[q.key];
      if (v !== undefined) mine += line(`quota ${q.name}`, v);
    }
    return (
      `Domain ${domid}:\n` +
      line("nodes", this.entries.get(domid) ?? 0) +
      line("watches", conn?.watches.length ?? 0) +
      line("transactions", conn?.transactions.size ?? 0) +
      line("outstanding", this.accounts.outstanding(domid)) +
      line("memory", this.memoryOf(domid)) +
      mine +
      "\0"
    );
  }

  /**
   * Memory charged to a domain, as C xenstored counts it (quota.ts): each node it owns
   * (record plus path), its transactions' copies of nodes, each watch of its connections
   * (path plus token) and the packets queued for its ring. Kept up to date on every change.
   */
  memoryOf(domid: number): number {
    return this.accounts.memory(domid);
  }

  /** CONTROL `check`: the tree and the counters agree. Returns problems found. */
  check(): string[] {
    const problems: string[] = [];
    const counts = new Map<number, number>();
    for (const [name, n] of this.store.nodes) {
      counts.set(n.perms[0]!.id, (counts.get(n.perms[0]!.id) ?? 0) + 1);
      for (const c of n.children) {
        if (!this.store.nodes.has(childPath(name, c))) problems.push(`${name} lists missing child ${c}`);
      }
      if (name !== "/") {
        const p = this.store.nodes.get(parentOf(name));
        if (p === undefined || !p.children.includes(baseOf(name)))
          problems.push(`${name} is not in its parent`);
      }
    }
    for (const [domid, n] of counts) {
      if ((this.entries.get(domid) ?? 0) !== n)
        problems.push(`domain ${domid} counts ${this.entries.get(domid)} nodes, owns ${n}`);
    }
    return problems;
  }
}

function eventPacket(path: string, token: string): XsPacket {
  return { type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload: latin1(`${path}\0${token}\0`) };
}

/** The path an event reports: relative watches see paths relative to their home. */
function watchPath(w: Watch, name: string): string {
  if (w.relativeTo === null) return name;
  let p = name.slice(w.relativeTo.length);
  if (p.charCodeAt(0) === 47) p = p.slice(1);
  return p;
}

/**
 * C xenstored drops a watch event identical to one still queued, unsent, for the same
 * connection (special `@` events excepted). Transports apply this to their queues.
 */
export function isQueuedDuplicate(queue: readonly XsPacket[], p: XsPacket): boolean {
  if (p.type !== XsType.WATCH_EVENT || p.payload[0] === 64 /* @ */) return false;
  return queue.some((q) => q.type === XsType.WATCH_EVENT && sameBytes(q.payload, p.payload));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** C xenstored drops an event identical to one still queued for the same connection. */
function isDuplicate(
  events: readonly Delivery[],
  from: number,
  conn: Connection,
  payload: Uint8Array,
): boolean {
  for (let i = from; i < events.length; i++) {
    const e = events[i]!;
    if (e.conn !== conn) continue;
    const p = e.packet.payload;
    if (p.byteLength !== payload.byteLength) continue;
    let same = true;
    for (let j = 0; j < p.byteLength; j++) {
      if (p[j] !== payload[j]) {
        same = false;
        break;
      }
    }
    if (same) return true;
  }
  return false;
}

interface ControlCommand {
  cmd: string;
  pars: string;
  run(core: XenStoreCore, args: readonly string[], ctx: RequestContext): string;
}

/** CONTROL commands (xenstored_control.c `cmds[]`; live-update only says it is not supported). */
const CONTROL_COMMANDS: readonly ControlCommand[] = [
  {
    cmd: "check",
    pars: "",
    run(core, args) {
      if (args.length !== 0) throw new XsError("EINVAL");
      for (const p of core.check()) core.log.error({ problem: p }, `check: ${p}`);
      return OK;
    },
  },
  {
    cmd: "log",
    pars: "on|off",
    run(_core, args) {
      if (args.length !== 1 || (args[0] !== "on" && args[0] !== "off")) throw new XsError("EINVAL");
      return OK;
    },
  },
  {
    cmd: "live-update",
    pars: "[-c <cmdline>] [-F] [-t <timeout>] <file>\n    Default timeout is 60 seconds.",
    run() {
      // C xenstored answers a failed live-update step with a message instead of "OK".
      return "Live-update is not supported by xenlab xenstored\0";
    },
  },
  {
    cmd: "logfile",
    pars: "<file>",
    run(_core, args) {
      if (args.length !== 1) throw new XsError("EINVAL");
      return OK;
    },
  },
  {
    cmd: "memreport",
    pars: "[<file>]",
    run(core, args) {
      if (args.length > 1) throw new XsError("EINVAL");
      core.log.info(
        { nodes: core.store.nodes.size, connections: core.connections.size, domains: core.domains.size },
        "memreport",
      );
      return OK;
    },
  },
  {
    cmd: "print",
    pars: "<string>",
    run(core, args) {
      if (args.length !== 1) throw new XsError("EINVAL");
      core.log.info({}, `control: ${args[0]}`);
      return OK;
    },
  },
  {
    cmd: "quota",
    pars: "[set <name> <val>|<domid>]",
    run: (core, args) => core.controlQuota(args, false),
  },
  {
    cmd: "quota-soft",
    pars: "[set <name> <val>]",
    run: (core, args) => core.controlQuota(args, true),
  },
  {
    cmd: "help",
    pars: "",
    run(_core, args) {
      if (args.length !== 0) throw new XsError("EINVAL");
      return `${CONTROL_COMMANDS.map((c) => `${c.cmd}\t${c.pars}\n`).join("")}\0`;
    },
  },
];
