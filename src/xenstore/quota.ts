/**
 * XenStore quotas with C xenstored's names and defaults (xenstored_core.c globals,
 * xenstored_control.c `hard_quotas`/`soft_quotas`), and the per-domain accounting that
 * enforces them (xenstored_domain.c of Xen 4.17: `domain_memory_add`, `domain_chk_quota`,
 * `nboutstanding`, the write rate limit `wrl_*`). Quotas never apply to the privileged domain.
 *
 * Memory, as C counts it, charged to one domain each, kept up to date on every change (never a
 * walk of the store):
 *
 *   - a node: its record (`nodeRecordSize`) plus its path, charged to its owner (`perms[0]`);
 *   - a node copied into a transaction (read or written in it): the same, charged to the
 *     transaction's domain until the transaction ends;
 *   - a watch: its absolute path plus its token;
 *   - a packet queued for a domain's ring (reply or watch event): 16 + its payload, until the
 *     ring takes it or it is dropped.
 *
 * At or over the hard `memory` quota, a write that would grow the domain's memory fails with
 * ENOMEM, a new watch fails with ENOMEM, a watch event for it is dropped, and the daemon stops
 * reading its ring until it is below again (C `domain_can_read`). The soft quota only logs.
 * Worked example with hard = 1000, soft = 800 (test/xenstore/advisories-core.test.ts):
 *
 *   memory 700, write +150 → 850: OK, "reached soft quota memory (800)" logged once
 *   memory 850, write +200 → 1050 ≥ 1000: ENOMEM, nothing written, "reached quota memory (1000)"
 *   memory 850, write +100 → 950: OK; the ring keeps reading (950 < 1000)
 *   a reply of 100 queued for it (charged unchecked, as C does) → 1050: the ring stalls
 *   the reply is written out → 950: the ring is read again; 10 s after the last message,
 *   "below quota memory (1000) again"
 *
 * A node is charged to its owner whoever writes it, so dom0 writing into a guest's directory
 * at its quota gets ENOMEM too, as in C (`do_tdb_write` checks the new owner).
 *
 * Where xenlab chooses (docs/xenstore-security.md): a write that does not grow the domain's
 * memory is never refused (C refuses any write that leaves the domain at or over the limit,
 * except removals); per-domain quotas are overrides of the global value, so `quota set` still
 * changes every domain that has no override of its own.
 */
import type { ChildEdit, ChildList } from "./children.ts";
import { XsError } from "./errors.ts";
import type { Perms } from "./perms.ts";
import {
  type EntryHook,
  type Node,
  type NodeMap,
  nodeRecordSize,
  type Store,
  type Transaction,
  View,
} from "./store.ts";

export interface Quotas {
  /** Nodes owned per domain (-E, `nodes`). */
  nodes: number;
  /** Watches per domain (-W, `watches`). */
  watches: number;
  /** Open transactions per domain (-t, `transactions`). */
  transactions: number;
  /** Outstanding requests per domain (-Q outstanding=, `outstanding`). */
  outstanding: number;
  /** Nodes one transaction may touch (-Q transaction-nodes=, `transaction-nodes`). */
  transactionNodes: number;
  /** Memory per domain, hard limit (-Q memory=, `memory`). */
  memory: number;
  /** Size of one node record: 16-byte header + 8 per perm + value + child names (-S, `node-size`). */
  nodeSize: number;
  /** Path length after `/local/domain/<id>/` (-M, `path-max`). */
  pathMax: number;
  /** Permission entries per node (-A, `permissions`). */
  permissions: number;
  /** Memory per domain, soft limit: a warning (-q memory=, soft `memory`). */
  memorySoft: number;
  /**
   * Not a quota but a limit of the same kind: a watch event queued for a guest and not yet
   * started into its ring is dropped after this many milliseconds (-w watch-event=SECS, C
   * `timeout_watch_event_msec`); 0 keeps events for ever.
   */
  watchEventTimeoutMs: number;
}

export const DEFAULT_QUOTAS: Readonly<Quotas> = {
  nodes: 1000,
  watches: 128,
  transactions: 10,
  outstanding: 20,
  transactionNodes: 1024,
  memory: 2 * 1024 * 1024 + 512 * 1024,
  nodeSize: 2048,
  pathMax: 2048,
  permissions: 5,
  memorySoft: 2 * 1024 * 1024,
  watchEventTimeoutMs: 20_000,
};

/** CONTROL `quota` names, in the order and with the descriptions C xenstored prints. */
export const HARD_QUOTAS: ReadonlyArray<{ name: string; key: keyof Quotas; descr: string }> = [
  { name: "nodes", key: "nodes", descr: "Nodes per domain" },
  { name: "watches", key: "watches", descr: "Watches per domain" },
  { name: "transactions", key: "transactions", descr: "Transactions per domain" },
  { name: "outstanding", key: "outstanding", descr: "Outstanding requests per domain" },
  {
    name: "transaction-nodes",
    key: "transactionNodes",
    descr: "Max. number of accessed nodes per transaction",
  },
  { name: "memory", key: "memory", descr: "Total Xenstore memory per domain (error level)" },
  { name: "node-size", key: "nodeSize", descr: "Max. size of a node" },
  { name: "path-max", key: "pathMax", descr: "Max. length of a node path" },
  { name: "permissions", key: "permissions", descr: "Max. number of permissions per node" },
];

export const SOFT_QUOTAS: ReadonlyArray<{ name: string; key: keyof Quotas; descr: string }> = [
  { name: "memory", key: "memorySoft", descr: "Total Xenstore memory per domain (warning level)" },
];

/** Bytes a queued packet is charged: its 16-byte header and payload (C `sizeof(hdr) + len`). */
export const PACKET_OVERHEAD = 16;

/** C `MEM_WARN_MINTIME_SEC`: soft-quota and "below again" messages at most this often. */
const MEM_WARN_MINTIME_MS = 10_000;

/** The logging the accounts need (an XsLogger fits). */
export interface QuotaLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Memory charged to a node: its record plus its path (C: tdb data + key). */
export function nodeMemory(n: Pick<Node, "name" | "value" | "perms" | "children">, edit?: ChildEdit): number {
  return nodeRecordSize(n, edit) + n.name.length;
}

function ownerOf(perms: Perms): number {
  return perms[0]!.id;
}

interface DomainAccount {
  memory: number;
  outstanding: number;
  softReported: boolean;
  hardReported: boolean;
  lastMsg: number;
  /** The ring stopped reading because of `outstanding`; logged once per stall. */
  outstandingReported: boolean;
}

export interface AccountsOptions {
  /** The global quotas (the core's object: `quota set` changes it in place). */
  readonly quotas: Quotas;
  readonly log: QuotaLogger;
  /** Milliseconds of a monotonic clock (tests pass their own). */
  readonly now?: () => number;
}

/**
 * Per-domain counters and limits: memory (with C's hard/soft reporting), outstanding requests,
 * per-domain quota overrides (SET_QUOTA with a domid), and who to wake when a domain's memory
 * falls below its hard quota again.
 */
export class Accounts {
  readonly quotas: Quotas;
  readonly #log: QuotaLogger;
  readonly #now: () => number;
  readonly #domains = new Map<number, DomainAccount>();
  readonly #overrides = new Map<number, Partial<Quotas>>();
  readonly #relief = new Map<number, () => void>();
  readonly #tx = new WeakMap<Transaction, { domid: number; bytes: number }>();

  constructor(opts: AccountsOptions) {
    this.quotas = opts.quotas;
    this.#log = opts.log;
    this.#now = opts.now ?? (() => performance.now());
  }

  #account(domid: number): DomainAccount {
    let a = this.#domains.get(domid);
    if (a === undefined) {
      a = {
        memory: 0,
        outstanding: 0,
        softReported: false,
        hardReported: false,
        lastMsg: Number.NEGATIVE_INFINITY,
        outstandingReported: false,
      };
      this.#domains.set(domid, a);
    }
    return a;
  }

  // ------------------------------------------------------------------------ limits

  /** The quota `key` for `domid`: its own value if SET_QUOTA gave it one, else the global. */
  limit(domid: number, key: keyof Quotas): number {
    const o = this.#overrides.get(domid);
    const v = o?.[key];
    return v === undefined ? this.quotas[key] : v;
  }

  /** SET_QUOTA `domid`: that domain's own value, kept apart from the global one. */
  setLimit(domid: number, key: keyof Quotas, value: number): void {
    let o = this.#overrides.get(domid);
    if (o === undefined) {
      o = {};
      this.#overrides.set(domid, o);
    }
    o[key] = value;
  }

  /** The quotas `domid` has of its own (none: undefined). */
  overrides(domid: number): Readonly<Partial<Quotas>> | undefined {
    return this.#overrides.get(domid);
  }

  /** Logs a quota hit: the domain, the quota and the limit. */
  hit(domid: number, quota: string, limit: number, extra: object = {}): void {
    this.#log.warn({ domid, quota, limit, ...extra }, `domain ${domid} reached quota ${quota} (${limit})`);
  }

  // ------------------------------------------------------------------------ memory

  memory(domid: number): number {
    return this.#domains.get(domid)?.memory ?? 0;
  }

  /** The domains with counters (memory or outstanding requests), for the memory report. */
  domids(): number[] {
    return [...this.#domains.keys()];
  }

  /** Whether `domid` is at or over its hard memory quota (C `domain_can_read`'s test). */
  overHard(domid: number): boolean {
    if (domid === 0) return false;
    const hard = this.limit(domid, "memory");
    return hard > 0 && this.memory(domid) >= hard;
  }

  /** Whether adding `delta` bytes would take `domid` to its hard memory quota or over. */
  wouldReachHard(domid: number, delta: number): boolean {
    if (domid === 0) return false;
    const hard = this.limit(domid, "memory");
    return hard > 0 && this.memory(domid) + delta >= hard;
  }

  /**
   * C `domain_memory_add`: adds `delta` bytes to `domid`'s memory. With `check`, a change that
   * would leave the domain at or over its hard quota is refused (false, nothing added). Logs
   * the hard crossing once, and the soft crossing and the return below either at most every
   * 10 s, as C `domain_chk_quota` does.
   */
  memoryAdd(domid: number, delta: number, check: boolean): boolean {
    const a = this.#account(domid);
    if (domid === 0) {
      a.memory += delta;
      return true;
    }
    const before = a.memory;
    const total = before + delta;
    const hard = this.limit(domid, "memory");
    if (hard > 0 && total >= hard) {
      if (!a.hardReported) {
        a.hardReported = true;
        a.lastMsg = this.#now();
        this.hit(domid, "memory", hard, { memory: total, stalled: true });
      }
      if (check) return false;
    } else {
      const now = this.#now();
      if (now - a.lastMsg >= MEM_WARN_MINTIME_MS) {
        const soft = this.limit(domid, "memorySoft");
        if (a.hardReported) {
          a.hardReported = false;
          a.lastMsg = now;
          this.#log.info(
            { domid, quota: "memory", limit: hard, memory: total },
            `domain ${domid} below quota memory (${hard}) again`,
          );
        }
        if (soft > 0 && total >= soft && !a.softReported) {
          a.softReported = true;
          a.lastMsg = now;
          this.#log.warn(
            { domid, quota: "memory-soft", limit: soft, memory: total },
            `domain ${domid} reached soft quota memory (${soft})`,
          );
        }
        if (total < soft && a.softReported) {
          a.softReported = false;
          a.lastMsg = now;
          this.#log.info(
            { domid, quota: "memory-soft", limit: soft, memory: total },
            `domain ${domid} below soft quota memory (${soft}) again`,
          );
        }
      }
    }
    a.memory = total;
    if (delta < 0 && hard > 0 && before >= hard && total < hard) {
      const wake = this.#relief.get(domid);
      if (wake !== undefined) queueMicrotask(wake);
    }
    return true;
  }

  /** `fn` runs (in a microtask) whenever `domid`'s memory falls below its hard quota. */
  onRelief(domid: number, fn: (() => void) | null): void {
    if (fn === null) this.#relief.delete(domid);
    else this.#relief.set(domid, fn);
  }

  /** Memory copied into `tx` for `domid` changed by `delta` (C: per-transaction nodes). */
  txCharge(tx: Transaction, domid: number, delta: number): void {
    let t = this.#tx.get(tx);
    if (t === undefined) {
      t = { domid, bytes: 0 };
      this.#tx.set(tx, t);
    }
    t.bytes += delta;
    this.memoryAdd(domid, delta, false);
  }

  /** The transaction ended (committed, aborted or dropped): its copies are freed. */
  txRelease(tx: Transaction): void {
    const t = this.#tx.get(tx);
    if (t === undefined) return;
    this.#tx.delete(tx);
    if (t.bytes !== 0) this.memoryAdd(t.domid, -t.bytes, false);
  }

  // ------------------------------------------------------------------------ outstanding

  outstanding(domid: number): number {
    return this.#domains.get(domid)?.outstanding ?? 0;
  }

  outstandingAdd(domid: number, delta: number): void {
    this.#account(domid).outstanding += delta;
  }

  /**
   * Whether `domid` may have another request read (C `domain_can_read`): below its
   * `outstanding` quota and its hard memory quota. The first refusal of a stall is logged.
   */
  mayRead(domid: number): boolean {
    if (domid === 0) return true;
    const a = this.#account(domid);
    const limit = this.limit(domid, "outstanding");
    if (a.outstanding >= limit) {
      if (!a.outstandingReported) {
        a.outstandingReported = true;
        this.hit(domid, "outstanding", limit);
      }
      return false;
    }
    a.outstandingReported = false;
    return !this.overHard(domid);
  }

  /** The domain is gone: its counters and its own quotas go with it. */
  forget(domid: number): void {
    if (domid === 0) return;
    this.#domains.delete(domid);
    this.#overrides.delete(domid);
    this.#relief.delete(domid);
  }
}

/**
 * Charges every node of `nodes` to its owner, now and on every later set and delete, whoever
 * makes the change (a request, a commit, a released domain, a journal replay). The map's own
 * methods are wrapped on the instance, so whatever class the store uses keeps its behaviour.
 */
export function chargeNodes(nodes: NodeMap, accounts: Accounts): void {
  for (const n of nodes.values()) accounts.memoryAdd(ownerOf(n.perms), nodeMemory(n), false);
  const set = nodes.set;
  const setEdited = nodes.setEdited;
  const del = nodes.delete;
  const clear = nodes.clear;
  const charged = nodes as NodeMap & Record<"set" | "setEdited" | "delete" | "clear", unknown>;
  /** `oldMem`: what the old record was charged (its list may have changed in place since). */
  const recharge = (oldOwner: number | undefined, oldMem: number, node: Node): void => {
    const owner = ownerOf(node.perms);
    if (oldOwner === undefined) {
      accounts.memoryAdd(owner, nodeMemory(node), false);
    } else if (oldOwner === owner) {
      accounts.memoryAdd(owner, nodeMemory(node) - oldMem, false);
    } else {
      accounts.memoryAdd(oldOwner, -oldMem, false);
      accounts.memoryAdd(owner, nodeMemory(node), false);
    }
  };
  charged.set = (name: string, node: Node): NodeMap => {
    const old = nodes.account(name);
    recharge(old?.owner, old?.memory ?? 0, node);
    return set.call(nodes, name, node);
  };
  charged.setEdited = (name: string, node: Node, edits: readonly ChildEdit[], oldBytes: number): void => {
    const old = nodes.account(name);
    const oldMem =
      old === undefined
        ? 0
        : old.memory - (nodes.holdsList(old.slot, node.children) ? old.listBytes - oldBytes : 0);
    recharge(old?.owner, oldMem, node);
    setEdited.call(nodes, name, node, edits, oldBytes);
  };
  charged.delete = (name: string): boolean => {
    const old = nodes.account(name);
    if (old !== undefined) accounts.memoryAdd(old.owner, -old.memory, false);
    return del.call(nodes, name);
  };
  charged.clear = (): void => {
    for (const n of nodes.values()) accounts.memoryAdd(ownerOf(n.perms), -nodeMemory(n), false);
    clear.call(nodes);
  };
}

/**
 * A view that enforces the hard memory quota on every node write and charges transaction
 * copies to the transaction's domain (`domid`). Outside a transaction the node's new owner is
 * checked (C `do_tdb_write`); inside, the transaction's domain. A write that would take that
 * domain to its hard quota or over fails with ENOMEM before anything changes (in a
 * transaction, the transaction fails too, as C `write_node` fails it); a write that does not
 * grow its memory always passes, so removals and shrinking writes never fail on memory.
 */
export class AccountedView extends View {
  readonly #accounts: Accounts;
  readonly #domid: number;
  /** Nodes written or deleted outside a transaction by this request (the write rate limit). */
  modified = 0;

  constructor(
    store: Store,
    tx: Transaction | null,
    entry: EntryHook,
    transNodesQuota: number,
    accounts: Accounts,
    domid: number,
  ) {
    super(store, tx, entry, transNodesQuota);
    this.#accounts = accounts;
    this.#domid = domid;
  }

  override read(name: string): Node | null {
    const tx = this.tx;
    if (tx === null || tx.accessed.has(name)) return super.read(name);
    const n = super.read(name);
    // C copies a node read in a transaction into the transaction's part of the database.
    if (n !== null && tx.accessed.has(name)) this.#accounts.txCharge(tx, this.#domid, nodeMemory(n));
    return n;
  }

  override write(name: string, value: string, perms: Perms, children: ChildList, edit?: ChildEdit): Node {
    const tx = this.tx;
    const size = nodeMemory({ name, value, perms, children }, edit);
    let delta: number;
    let domid: number;
    if (tx === null) {
      domid = ownerOf(perms);
      const old = this.store.nodes.account(name);
      delta = old !== undefined && old.owner === domid ? size - old.memory : size;
    } else {
      domid = this.#domid;
      const old = tx.accessed.get(name)?.node ?? null;
      delta = old === null ? size : size - nodeMemory(old);
    }
    if (delta > 0 && this.#accounts.wouldReachHard(domid, delta)) {
      if (tx !== null) tx.failed = true;
      // Logged once per crossing by the accounts.
      this.#accounts.memoryAdd(domid, delta, true);
      throw new XsError("ENOMEM", `memory quota of domain ${domid} reached`);
    }
    const node = super.write(name, value, perms, children, edit);
    if (tx !== null) this.#accounts.txCharge(tx, domid, delta);
    else this.modified++;
    return node;
  }

  override delete(name: string): void {
    const tx = this.tx;
    const old = tx === null ? null : (tx.accessed.get(name)?.node ?? null);
    super.delete(name);
    if (tx === null) this.modified++;
    else if (old !== null) this.#accounts.txCharge(tx, this.#domid, -nodeMemory(old));
  }
}

// =======================================================================================
// Write rate limit (C xenstored_domain.c `wrl_*`, Xen 4.17)

/** C's constants: credit in thousandths of a write. */
const WRL_FACTOR = 1000;
const WRL_RATE = 200;
const WRL_DBURST = 10;
const WRL_GBURST = 1000;
const WRL_NEWDOMS = 5;
const WRL_CREDIT_MAX = 1000 * 1000 * 1000;
const WRL_LOGEVERY_MS = 120_000;

const WRITECOST = WRL_FACTOR;
const RATE = WRL_RATE * WRL_FACTOR;
const DBURST = WRL_DBURST * WRL_FACTOR;
const GBURST = WRL_GBURST * WRL_FACTOR;
const NEWDOMS_DBURST = WRL_DBURST * WRL_NEWDOMS * WRL_FACTOR;

interface WrlDomain {
  credit: number;
  stamp: number;
  delayLogged: boolean;
}

/**
 * C xenstored's write rate limit, only in force while transactions are open (they are what
 * writes would make fail): each domain earns RATE/ndomains writes per second, may bank DBURST
 * of them, and unused credit spills into a global reserve of GBURST that any domain may
 * borrow from. A guest whose credit is negative is not read until its credit is back (the
 * caller asks `wakeIn` how long). Modifications outside a transaction are debited one write
 * per node while some transaction is open anywhere; a commit is debited one write while
 * another transaction is open. Dom0 and sockets are exempt.
 */
export class WriteRateLimit {
  readonly #log: QuotaLogger;
  readonly #now: () => number;
  readonly #domains = new Map<number, WrlDomain>();
  #reserve = 0;
  #lastWarning = 0;

  constructor(log: QuotaLogger, now: () => number = () => performance.now()) {
    this.#log = log;
    this.#now = now;
  }

  /** C `wrl_domain_new`: a domain starts with up to DBURST taken from the reserve. */
  addDomain(domid: number): void {
    if (this.#domains.has(domid)) return;
    const d: WrlDomain = { credit: 0, stamp: this.#now(), delayLogged: false };
    this.#domains.set(domid, d);
    const x = Math.min(this.#reserve + NEWDOMS_DBURST, DBURST - d.credit);
    if (x > 0) {
      this.#reserve -= x;
      d.credit += x;
    }
  }

  /** C `wrl_domain_destroy`: its credit (up to DBURST) returns to the reserve. */
  removeDomain(domid: number): void {
    const d = this.#domains.get(domid);
    if (d === undefined) return;
    this.#domains.delete(domid);
    const x = Math.min(d.credit, DBURST - this.#reserve);
    if (x > 0) this.#reserve += x;
  }

  #update(d: WrlDomain, now: number): void {
    const msec = Math.max(0, Math.floor(now - d.stamp));
    const n = this.#domains.size;
    d.credit = Math.min(d.credit + Math.floor((msec * RATE) / (n * 1000)), WRL_CREDIT_MAX);
    // Borrow from the reserve to get back to zero; return the surplus over DBURST to it.
    if (d.credit < 0) {
      const x = Math.min(this.#reserve, -d.credit);
      if (x > 0) {
        this.#reserve -= x;
        d.credit += x;
      }
    }
    if (d.credit > DBURST) {
      const surplus = d.credit - DBURST;
      d.credit = DBURST;
      this.#reserve = Math.min(this.#reserve + surplus, GBURST);
    }
    d.stamp = now;
  }

  /** One write by `domid` (C `wrl_apply_debit_actual`); logs the first time it goes negative. */
  debit(domid: number): void {
    const d = this.#domains.get(domid);
    if (d === undefined || domid === 0) return;
    const now = this.#now();
    this.#update(d, now);
    d.credit -= WRITECOST;
    if (d.credit < 0) {
      if (!d.delayLogged) {
        d.delayLogged = true;
        this.#log.warn(
          { domid, quota: "write-rate", limit: WRL_RATE },
          `write rate limit: domain ${domid} is affected`,
        );
      } else if (this.#lastWarning === 0) {
        this.#log.warn(
          { domid, quota: "write-rate", limit: WRL_RATE },
          "write rate limit: rate limiting restarts",
        );
      }
      this.#lastWarning = now;
    } else if (this.#lastWarning !== 0 && now - this.#lastWarning > WRL_LOGEVERY_MS) {
      this.#log.warn({}, "write rate limit: not in force recently");
      this.#lastWarning = 0;
    }
  }

  /** Milliseconds until `domid` may be read again; 0 when it may be read now. */
  wakeIn(domid: number): number {
    const d = this.#domains.get(domid);
    if (d === undefined) return 0;
    this.#update(d, this.#now());
    if (d.credit >= 0) return 0;
    return Math.max(1, Math.ceil((-d.credit * 1000 * this.#domains.size) / RATE));
  }
}
