/**
 * The XenStore daemon's core: one pure step per request,
 * `step(conn, request) → { reply, events, out }`, with C xenstored's semantics (Xen 4.17).
 * As in C, each request lives with what it acts on: nodes and transactions here
 * (xenstored_core.c, xenstored_transaction.c), watches in watch.ts (xenstored_watch.c),
 * domains in domain.ts (xenstored_domain.c), CONTROL in control.ts (xenstored_control.c);
 * daemon.ts declares what they share. No I/O here: transports feed requests in and deliver
 * what comes out.
 */

import { Tracer } from "../lib/tracer.ts";
import { DOMID_FIRST_RESERVED } from "../xen/xen.ts";
import { type ChildEdit, ChildList } from "./children.ts";
import { checkStore, doControl } from "./control.ts";
import {
  Connection,
  type Daemon,
  type Delivery,
  type Domain,
  type DomainHooks,
  OK,
  type PacketTap,
  type RequestContext,
  type StateDumpFiles,
  type StateJournal,
  type XsLogger,
} from "./daemon.ts";
import {
  doGetDomainPath,
  doGetFeature,
  doGetQuota,
  doIntroduce,
  doIsDomainIntroduced,
  doRelease,
  doResume,
  doSetFeature,
  doSetQuota,
  doSetTarget,
  releaseDomain,
} from "./domain.ts";
import { XsError, type XsErrorName } from "./errors.ts";
import { baseOf, canonicalize, childPath, isValidNodename, parentOf } from "./paths.ts";
import { formatPerm, Perm, type PermEntry, type Perms, parsePerm, permFor } from "./perms.ts";
import {
  AccountedView,
  Accounts,
  chargeNodes,
  DEFAULT_QUOTAS,
  type Quotas,
  WriteRateLimit,
} from "./quota.ts";
import { commit, type Node, nodeRecordSize, Store, Transaction, type View } from "./store.ts";
import { Trace } from "./trace.ts";
import { traceStep, type XsTraceEvent } from "./trace-events.ts";
import { doResetWatches, doUnwatch, doWatch, WatchTable } from "./watch.ts";
import {
  atoi,
  fromLatin1,
  getStrings,
  latin1,
  onearg,
  typeName,
  XENSTORE_PAYLOAD_MAX,
  type XsPacket,
  XsType,
} from "./wire.ts";

/**
 * The requests the live view needs without a viewer (its device timelines): those that change
 * the store or end a transaction. A request that fires a watch is traced whatever its type.
 */
const CHANGING: ReadonlySet<number> = new Set([
  XsType.WRITE,
  XsType.MKDIR,
  XsType.RM,
  XsType.SET_PERMS,
  XsType.TRANSACTION_START,
  XsType.TRANSACTION_END,
]);

const SILENT: XsLogger = { info() {}, warn() {}, error() {}, debug() {} };

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

export interface CoreOptions {
  /** Records every change before it is acknowledged (`xenstored --state`). */
  journal?: StateJournal;
  quotas?: Partial<Quotas>;
  keepOrphans?: boolean;
  log?: XsLogger;
  hooks?: DomainHooks;
  /** The trace file (`xenstored -T`); without one the trace stays closed. */
  trace?: Trace;
  /** Where CONTROL `dump-state` writes the migration stream (`xenlab xenstored`). */
  dumpFiles?: StateDumpFiles;
}

type Handler = (ctx: RequestContext) => Uint8Array | string;

interface WireFunc {
  readonly fn: Handler;
  /** Privileged connections only (EACCES otherwise). */
  readonly priv?: boolean;
  /** Ignores the transaction id. */
  readonly noTx?: boolean;
}

const EMPTY = "";

/**
 * The daemon: its connections, the dispatch of each request through a table keyed by type
 * (C `wire_funcs[]`), node access, and the node and transaction requests. The handlers of
 * watch.ts, domain.ts and control.ts get the core as `Daemon`.
 */
export class XenStoreCore implements Daemon {
  readonly store = new Store();
  readonly quotas: Quotas;
  readonly keepOrphans: boolean;
  readonly log: XsLogger;
  readonly accounts: Accounts;
  readonly writeRate: WriteRateLimit;
  /** Transactions open on every connection (the write rate limit's `wrl_ntransactions`). */
  #openTransactions = 0;
  readonly domains = new Map<number, Domain>();
  readonly connections = new Set<Connection>();
  readonly entries = new Map<number, number>();
  #connSeq = 0;
  readonly hooks: DomainHooks;
  readonly journal: StateJournal | null;
  readonly trace: Trace;
  /** The live view's events (src/lib/tracer.ts): off, one field check per request, until subscribed. */
  readonly tracer = new Tracer<XsTraceEvent>();
  readonly dumpFiles: StateDumpFiles | null;
  /**
   * Where every request and reply is copied (`xenlab up --pcap`), or null. The transports see
   * each packet through `io()`, which costs one test of this field while no capture is on.
   */
  tap: PacketTap | null = null;
  /** "Privileged only" by default. */
  readonly specialPerms = new Map<string, Perms>([
    ["@introduceDomain", [{ id: 0, perms: Perm.NONE }]],
    ["@releaseDomain", [{ id: 0, perms: Perm.NONE }]],
  ]);
  readonly watches: WatchTable;
  readonly #table: ReadonlyMap<number, WireFunc>;

  constructor(opts: CoreOptions = {}) {
    this.quotas = { ...DEFAULT_QUOTAS, ...opts.quotas };
    this.keepOrphans = opts.keepOrphans ?? false;
    this.log = opts.log ?? SILENT;
    this.hooks = opts.hooks ?? {};
    this.journal = opts.journal ?? null;
    this.trace = opts.trace ?? new Trace(null);
    this.dumpFiles = opts.dumpFiles ?? null;
    this.accounts = new Accounts({ quotas: this.quotas, log: this.log });
    chargeNodes(this.store.nodes, this.accounts);
    this.writeRate = new WriteRateLimit(this.log);
    this.writeRate.addDomain(0);
    this.watches = new WatchTable(this.accounts, this.store, this.specialPerms);
    this.entries.set(0, this.store.nodes.size);
    this.domains.set(0, { domid: 0, conn: null, gfn: "0", port: 0, shutdown: false });
    this.#table = new Map<number, WireFunc>([
      [XsType.CONTROL, { fn: (c) => doControl(this, c), priv: true }],
      [XsType.DIRECTORY, { fn: (c) => this.#directory(c) }],
      [XsType.READ, { fn: (c) => this.#read(c) }],
      [XsType.GET_PERMS, { fn: (c) => this.#getPerms(c) }],
      [XsType.WATCH, { fn: (c) => doWatch(this, c), noTx: true }],
      [XsType.UNWATCH, { fn: (c) => doUnwatch(this, c), noTx: true }],
      [XsType.TRANSACTION_START, { fn: (c) => this.#transactionStart(c) }],
      [XsType.TRANSACTION_END, { fn: (c) => this.#transactionEnd(c) }],
      [XsType.INTRODUCE, { fn: (c) => doIntroduce(this, c), priv: true }],
      [XsType.RELEASE, { fn: (c) => doRelease(this, c), priv: true }],
      [XsType.GET_DOMAIN_PATH, { fn: (c) => doGetDomainPath(this, c) }],
      [XsType.WRITE, { fn: (c) => this.#write(c) }],
      [XsType.MKDIR, { fn: (c) => this.#mkdir(c) }],
      [XsType.RM, { fn: (c) => this.#rm(c) }],
      [XsType.SET_PERMS, { fn: (c) => this.#setPerms(c) }],
      [XsType.IS_DOMAIN_INTRODUCED, { fn: (c) => doIsDomainIntroduced(this, c), priv: true }],
      [XsType.RESUME, { fn: (c) => doResume(this, c), priv: true }],
      [XsType.SET_TARGET, { fn: (c) => doSetTarget(this, c), priv: true }],
      [XsType.RESET_WATCHES, { fn: (c) => doResetWatches(this, c) }],
      [XsType.DIRECTORY_PART, { fn: (c) => this.#directoryPart(c) }],
      [XsType.GET_FEATURE, { fn: (c) => doGetFeature(this, c) }],
      [XsType.SET_FEATURE, { fn: (c) => doSetFeature(this, c), priv: true }],
      [XsType.GET_QUOTA, { fn: (c) => doGetQuota(this, c), priv: true }],
      [XsType.SET_QUOTA, { fn: (c) => doSetQuota(this, c), priv: true }],
    ]);
  }

  // ---------------------------------------------------------------- connections

  /** A new socket client: dom0, privileged, as in C xenstored. */
  connectSocket(): Connection {
    const id = ++this.#connSeq;
    const conn = new Connection(id, 0, true, `socket#${id}`);
    this.connections.add(conn);
    this.trace.connection("CREATE", id);
    this.#traceConnection(conn, true);
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
    const conn = new Connection(id, domid, domid === 0, `dom${domid}`, true);
    this.connections.add(conn);
    this.trace.connection("CREATE", id);
    this.#traceConnection(conn, true);
    return conn;
  }

  /**
   * Drops a connection's watches and transactions but keeps it open (C
   * `conn_delete_all_watches` + `conn_delete_all_transactions`): a ring that reconnects, or
   * one the daemon stops talking to.
   */
  resetConnection(conn: Connection): void {
    this.watches.dropAll(conn);
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
    this.watches.dropAll(conn);
    this.#dropTransactions(conn);
    this.connections.delete(conn);
    this.trace.connection("DESTROY", conn.id);
    this.#traceConnection(conn, false);
  }

  #traceConnection(conn: Connection, open: boolean): void {
    if (this.tracer.on)
      this.tracer.emit({ kind: "xs-connection", conn: conn.id, domid: conn.domid, label: conn.label, open });
  }

  /**
   * A request read (`IN`) or a packet about to be written (`OUT`) on `conn`: the default
   * trace hook of every transport, for the trace file and the capture.
   */
  io(dir: "IN" | "OUT", conn: Connection, p: XsPacket): void {
    this.trace.io(dir, conn.id, p);
    if (this.tap !== null) this.tap.packet(dir, conn, p);
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
      this.journal?.commit();
      const out = [...before, { conn, packet: reply }, ...after];
      const events = [...before, ...after];
      if (this.tracer.on && (this.tracer.all || events.length > 0 || CHANGING.has(req.type)))
        traceStep(this.tracer, conn, req, reply, events);
      return { reply, events, out };
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
      this.watches.fireAll(view.fires, before);
      return error(e.errno);
    }
    this.watches.fireAll(view.fires, before);
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

  #checkNodeSize(
    ctx: RequestContext,
    rec: Pick<Node, "value" | "perms" | "children">,
    edit?: ChildEdit,
  ): void {
    const limit = this.accounts.limit(ctx.conn.domid, "nodeSize");
    if (!ctx.conn.privileged && nodeRecordSize(rec, edit) >= limit) {
      this.#quotaHit(ctx.conn, "node-size", limit);
      throw new XsError("ENOSPC");
    }
  }

  /**
   * Creates `name` and any missing ancestors (C `construct_node` + `create_node`). New nodes
   * copy their parent's permissions; a guest owns what it creates.
   */
  #create(ctx: RequestContext, name: string, value: string): Node {
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
    const addToParent: ChildEdit = { add: true, name: baseOf(missing[0]!) };
    this.#checkNodeSize(ctx, parent, addToParent);
    const listOf = (i: number) =>
      i === missing.length - 1 ? ChildList.EMPTY : ChildList.of([baseOf(missing[i + 1]!)], null);
    for (let i = 0; i < missing.length; i++) {
      const last = i === missing.length - 1;
      this.#checkNodeSize(ctx, { value: last ? value : EMPTY, perms, children: listOf(i) });
    }
    if (view.tx) view.tx.nodeCreated = true;
    let node: Node | null = null;
    for (let i = missing.length - 1; i >= 0; i--) {
      const last = i === missing.length - 1;
      const n = view.write(missing[i]!, last ? value : EMPTY, perms, listOf(i));
      if (last) node = n;
      view.entry(perms[0]!.id, 1);
    }
    view.write(parentName, parent.value, parent.perms, parent.children, addToParent);
    return node!;
  }

  /**
   * Removes `name` and its subtree (C `rm_node`), firing watches as each node goes: children
   * first, in their order, each dropped from its parent's list once gone (C's tree walk with
   * `delnode_sub`).
   *
   * Outside a transaction the tree is consistent and this cannot fail. Inside one, the
   * transaction's copies may list what is gone outside, or miss what appeared outside since
   * it read them; C xenstored then stops with EIO ("corrupt") and keeps what it removed so far
   * in the transaction, and so do we (the commit then fails with EAGAIN anyway). Examples, each
   * in test/diff/transactions.test.ts ("rm in a transaction whose copies are stale"):
   *
   *   - T lists /p (c, d); c is removed outside; RM /p in T → EIO, nothing removed in T
   *   - T reads /q (c, d, e); d is removed outside; RM /q in T → EIO, c and its subtree are
   *     gone in T and /q lists d, e
   *   - T writes /f; /f/e/g is created outside; RM /f/e in T → EIO, /f/e and /f/e/g are
   *     gone in T (T's /f never listed e)
   *   - a guest's T is at its transaction-nodes quota; RM of a node whose children T has not
   *     read → EIO (test/xenstore/core.test.ts, "quotas")
   */
  rmNode(view: View, name: string): void {
    const parentName = parentOf(name);
    const parent = view.read(parentName);
    if (parent === null) throw new XsError("EINVAL");
    const node = view.read(name);
    if (node !== null) this.#rmSubtree(view, node, name);
    // The parent was read before the walk: the walk changes nothing above `name`.
    const base = baseOf(name);
    if (!parent.children.has(base)) {
      this.log.warn({ node: name }, `rm: ${base} is not a child of ${parentName} in this view`);
      throw new XsError("EIO");
    }
    view.write(parentName, parent.value, parent.perms, parent.children, { add: false, name: base });
  }

  /**
   * Removes `n` and, first, its children. A listed child that is missing stops the walk with
   * EIO, after `n`'s copy is rewritten without the children already removed (C rewrites the
   * parent after each child it removes).
   */
  #rmSubtree(view: View, n: Node, root: string): void {
    let removed = 0;
    try {
      for (const c of n.children) {
        const child = this.#walkRead(view, childPath(n.name, c));
        if (child === null) {
          this.log.warn({ node: n.name, child: c }, `rm: child ${c} of ${n.name} is missing in this view`);
          throw new XsError("EIO");
        }
        this.#rmSubtree(view, child, root);
        removed++;
      }
    } catch (e) {
      if (removed > 0)
        view.write(n.name, n.value, n.perms, n.children.withoutFirst(removed, view.tx ?? view.store));
      throw e;
    }
    view.delete(n.name);
    view.fire(n.name, n, n.name !== root, null);
    view.entry(n.perms[0]!.id, -1);
  }

  /**
   * A read of the walk: C's walk stops on any failure to read a child with EIO, so a child over
   * the transaction-nodes quota (ENOSPC elsewhere; the transaction has failed) is EIO here.
   */
  #walkRead(view: View, name: string): Node | null {
    try {
      return view.read(name);
    } catch (e) {
      if (!(e instanceof XsError)) throw e;
      this.log.warn({ node: name, errno: e.errno }, `rm: cannot read ${name} in this view`);
      throw new XsError("EIO");
    }
  }

  readonly #entryHook = (domid: number, delta: number): void => this.entryAdjust(domid, delta);

  entryAdjust(domid: number, delta: number): void {
    this.entries.set(domid, (this.entries.get(domid) ?? 0) + delta);
  }

  #quotaHit(conn: Connection, quota: string, limit: number): void {
    this.accounts.hit(conn.domid, quota, limit);
  }

  /** Fires a special event (`@introduceDomain`, `@releaseDomain`) from outside a request. */
  fireSpecial(name: string): Delivery[] {
    const events: Delivery[] = [];
    this.watches.fire(name, null, true, null, events);
    return events;
  }

  /** Forgets a domain (RELEASE, or the domain died): domain.ts `releaseDomain`. */
  releaseDomain(domid: number): Delivery[] {
    return releaseDomain(this, domid);
  }

  // ---------------------------------------------------------------- handlers

  #read(ctx: RequestContext): Uint8Array {
    return latin1(this.#getNode(ctx, this.#canon(ctx, onearg(ctx.payload)), Perm.READ).value);
  }

  #directory(ctx: RequestContext): Uint8Array {
    return this.#getNode(ctx, this.#canon(ctx, onearg(ctx.payload)), Perm.READ).children.wire();
  }

  #directoryPart(ctx: RequestContext): Uint8Array {
    const args = getStrings(ctx.payload);
    if (args.length !== 2) throw new XsError("EINVAL");
    const node = this.#getNode(ctx, this.#canon(ctx, args[0]!), Perm.READ);
    const off = atoi(args[1]!) >>> 0;
    const all = node.children.wire();
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
    const value = fromLatin1(p, nul + 1);
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
    this.rmNode(ctx.view, name!);
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
      this.journal?.metaChanged();
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
    for (const [domid, delta] of tx.entryDelta) this.entryAdjust(domid, delta);
    for (const f of fires) ctx.view.fires.push(f);
    return OK;
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
    return checkStore(this);
  }
}
