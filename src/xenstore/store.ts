/**
 * The node database and per-connection views of it, with C xenstored's transaction model
 * (xenstored_transaction.c).
 *
 * Nodes are immutable records: a write replaces the record, so a transaction can keep the
 * record it saw without copying it.
 *
 * Transactions and conflicts. Every modification stamps the node with a fresh value of the
 * global generation counter. A transaction records, on its first access to each node, the
 * generation it saw (NO_GENERATION for a missing node) and whether that first access was a
 * read; only nodes first *read* are checked at commit, because a node the transaction wrote
 * will be overwritten anyway. But every request reads its node before it writes it (to
 * check permissions), so in practice every node a transaction touches is checked. Once
 * accessed, a node is served from the transaction's copy, so reads repeat. Worked examples (each is a test in
 * test/xenstore/core.test.ts, "transactions"):
 *
 *   1. read A, write B in T; nobody else writes     → commit OK, B visible
 *   2. read A in T; outside write A; write B in T    → commit EAGAIN (g(A) changed)
 *   3. read A in T; outside rm A                     → commit EAGAIN (A now missing)
 *   4. read missing C in T; outside creates C        → commit EAGAIN (NO_GENERATION ≠ g(C))
 *   5. write B in T; outside write B                 → commit EAGAIN (the WRITE read B first)
 *   6. list D in T; outside adds a child to D        → commit EAGAIN (D's generation moved)
 *
 * Creating a node reads its parent (to inherit permissions) and rewrites it (child list),
 * so two transactions adding children to the same directory conflict, as in Xen.
 */
import { type ChildEdit, ChildList, type ListOwner } from "./children.ts";
import { XsError } from "./errors.ts";
import { NodeTable } from "./node-table.ts";
import type { Perms } from "./perms.ts";
import { StoreList } from "./store-list.ts";

export const NO_GENERATION = -1;

export interface Node {
  readonly name: string;
  /**
   * The value's bytes as a latin1 string (one char per byte, exact for any byte): a short
   * string costs ~40 bytes of heap where a Uint8Array of the same bytes costs ~220 (measured on
   * Node 20; docs/speed.md, bench xenstore case f), and a host's store is mostly short values.
   */
  readonly value: string;
  readonly perms: Perms;
  /** Child base names in C xenstored's order (src/xenstore/children.ts). */
  readonly children: ChildList;
  readonly generation: number;
}

const EMPTY = "";

/**
 * Size of a node's record as C xenstored stores it: `struct xs_tdb_record_hdr` (24 bytes
 * with its padding), 8 bytes per permission, the value, the child names with their NULs.
 * The node-size quota applies to this.
 */
export function nodeRecordSize(n: Pick<Node, "value" | "perms" | "children">, edit?: ChildEdit): number {
  const childlen = edit === undefined ? n.children.bytes : n.children.bytesAfter(edit);
  return recordBytes(n.perms.length, n.value.length, childlen);
}

/** nodeRecordSize from the counts alone: header, permissions, value, child names. */
export function recordBytes(permCount: number, valueLength: number, childBytes: number): number {
  return 24 + 8 * permCount + valueLength + childBytes;
}

/**
 * What a request did to one node, for the journal: replaced or removed it (WHOLE), or only
 * changed its child list by these edits (and maybe its value or permissions), so that a record
 * for a new child in a wide directory does not carry the whole list.
 */
export const WHOLE = "whole";

/** A stored node's charge (NodeMap.account). */
export interface NodeAccount {
  readonly owner: number;
  readonly memory: number;
  readonly listBytes: number;
  readonly slot: number;
}
export type NodeChange = typeof WHOLE | ChildEdit[];

/**
 * The node table: a Map-like face (get, set, delete, has, keys, values, entries, size) over
 * the packed `NodeTable` (src/xenstore/node-table.ts). `get` builds a fresh `Node` record each
 * time (young garbage), whose child list is a view of the stored list; no object is kept per
 * stored node. With `changes` set (a journal is attached, src/xenstore/journal.ts) every set
 * and delete also records the path there, so "what did this request change" is known however
 * the change was made: a plain write, a transaction commit, a released domain.
 */
export class NodeMap implements Iterable<[string, Node]> {
  changes: Map<string, NodeChange> | null = null;
  readonly #t: NodeTable;

  constructor(owner: ListOwner) {
    this.#t = new NodeTable(owner);
  }

  /** The packed table itself (tests and the memory benchmark read it). */
  get table(): NodeTable {
    return this.#t;
  }

  get size(): number {
    return this.#t.size;
  }

  get(name: string): Node | undefined {
    const t = this.#t;
    const slot = t.find(name);
    if (!t.exists(slot)) return undefined;
    return this.#record(name, slot);
  }

  #record(name: string, slot: number): Node {
    const t = this.#t;
    return {
      name,
      value: t.value(slot),
      perms: t.perms(slot),
      children: new StoreList(t, slot),
      generation: t.generation(slot),
    };
  }

  has(name: string): boolean {
    return this.#t.exists(this.#t.find(name));
  }

  /**
   * What the memory accounts need of a stored node without building its record (a write
   * asks for it several times): its owner, its `nodeMemory` (record size plus path), its
   * list's bytes, and its slot (for `holdsList`).
   */
  account(name: string): NodeAccount | undefined {
    const t = this.#t;
    const slot = t.find(name);
    if (!t.exists(slot)) return undefined;
    const perms = t.perms(slot);
    const listBytes = t.listBytes(slot);
    // quota.ts's nodeMemory: the record plus the path.
    const memory = recordBytes(perms.length, t.valueLength(slot), listBytes) + name.length;
    return { owner: perms[0]!.id, memory, listBytes, slot };
  }

  /** Whether `children` is the live list of the node at `name` (or of `slot`). */
  holdsList(name: string | number, children: ChildList): boolean {
    const slot = typeof name === "number" ? name : this.#t.find(name);
    return slot >= 0 && children.liveSlot(this.#t) === slot;
  }

  set(name: string, node: Node): this {
    this.changes?.set(name, WHOLE);
    this.#t.set(name, node.value, node.perms, node.generation, node.children);
    return this;
  }

  /**
   * set() of a record whose child list is the previous record's with `edits` applied, maybe
   * in place: `oldBytes` is the list's size before (for the memory accounts,
   * src/xenstore/quota.ts).
   */
  setEdited(name: string, node: Node, edits: readonly ChildEdit[], _oldBytes: number): void {
    const changes = this.changes;
    if (changes !== null) {
      const c = changes.get(name);
      if (c === undefined) changes.set(name, !this.has(name) ? WHOLE : [...edits]);
      else if (c !== WHOLE) c.push(...edits);
    }
    this.#t.set(name, node.value, node.perms, node.generation, node.children);
  }

  delete(name: string): boolean {
    this.changes?.set(name, WHOLE);
    return this.#t.delete(name);
  }

  clear(): void {
    if (this.changes !== null) for (const name of this.keys()) this.changes.set(name, WHOLE);
    this.#t.clear();
  }

  *entries(): Generator<[string, Node]> {
    const t = this.#t;
    for (const slot of t.slots()) {
      const name = t.path(slot);
      yield [name, this.#record(name, slot)];
    }
  }

  *keys(): Generator<string> {
    const t = this.#t;
    for (const slot of t.slots()) yield t.path(slot);
  }

  *values(): Generator<Node> {
    for (const [, n] of this.entries()) yield n;
  }

  [Symbol.iterator](): Generator<[string, Node]> {
    return this.entries();
  }
}

export class Store {
  readonly nodes: NodeMap = new NodeMap(this);
  /** Global generation counter: incremented before each use, so every stamp is unique. */
  generation = 0;

  constructor() {
    const n0: Perms = [{ id: 0, perms: 0 }];
    const node = (name: string, children: string[]): Node => ({
      name,
      value: EMPTY,
      perms: n0,
      children: ChildList.of(children, this),
      generation: 0,
    });
    this.nodes.set("/", node("/", ["tool"]));
    this.nodes.set("/tool", node("/tool", ["xenstored"]));
    this.nodes.set("/tool/xenstored", node("/tool/xenstored", []));
  }

  nextGeneration(): number {
    return ++this.generation;
  }
}

/** What a transaction remembers of one node. */
interface Accessed {
  /** The node as this transaction sees it; null = missing or deleted. */
  node: Node | null;
  /** Generation seen on first access (NO_GENERATION if missing). */
  generation: number;
  checkGen: boolean;
  modified: boolean;
  fireWatch: boolean;
  watchExact: boolean;
  /** Permissions of the node when first accessed, for watch checks at commit. */
  perms: Perms | null;
  /**
   * How this transaction changed the node's child list since it first read it: by these
   * edits, or (null) otherwise (replaced, deleted, created, or first met by a write).
   */
  edits: ChildEdit[] | null;
}

export class Transaction {
  readonly id: number;
  readonly generation: number;
  readonly accessed = new Map<string, Accessed>();
  /** Change in node count per owning domain, applied at commit. */
  readonly entryDelta = new Map<number, number>();
  nodeCreated = false;
  /** Set when an operation inside failed half-way: commit gives ENOMEM, as in Xen. */
  failed = false;

  constructor(id: number, generation: number) {
    this.id = id;
    this.generation = generation;
  }
}

/** Called for each node a view creates, deletes or re-owns: (owner domid, +1/-1). */
export type EntryHook = (domid: number, delta: number) => void;

/** Watch-fire request from a modification: path, the node (null if gone), exact match, old perms. */
export interface FireRequest {
  name: string;
  node: Node | null;
  exact: boolean;
  oldPerms: Perms | null;
}

/**
 * A connection's view of the store for one request: the global store directly, or
 * through a transaction. `transNodesQuota` limits the nodes a transaction may touch
 * (unprivileged only; ENOSPC).
 */
export class View {
  readonly store: Store;
  readonly tx: Transaction | null;
  readonly fires: FireRequest[] = [];
  readonly #entry: EntryHook;
  readonly #transNodesQuota: number;

  constructor(store: Store, tx: Transaction | null, entry: EntryHook, transNodesQuota: number) {
    this.store = store;
    this.tx = tx;
    this.#entry = entry;
    this.#transNodesQuota = transNodesQuota;
  }

  read(name: string): Node | null {
    const tx = this.tx;
    if (tx === null) return this.store.nodes.get(name) ?? null;
    const a = tx.accessed.get(name);
    if (a !== undefined) return a.node;
    const node = this.store.nodes.get(name) ?? null;
    this.#record(tx, name, node, node, true);
    // The transaction keeps this record: the store must copy its list before changing it.
    node?.children.freeze();
    return node;
  }

  /**
   * Writes (creates or replaces) a node record; stamps a new generation. With `edit`, the
   * record's child list is `children` with that edit applied (in place when this view's store
   * or transaction owns the list: src/xenstore/children.ts).
   */
  write(name: string, value: string, perms: Perms, children: ChildList, edit?: ChildEdit): Node {
    const oldBytes = children.bytes;
    const list = edit === undefined ? children : children.edited(edit, this.tx ?? this.store);
    const node: Node = { name, value, perms, children: list, generation: this.store.nextGeneration() };
    const nodes = this.store.nodes;
    // Outside a transaction, a record that keeps the list it had, or edits it, is journaled
    // without the list (NodeChange).
    const tx = this.tx;
    if (tx === null) {
      if (edit !== undefined || nodes.holdsList(name, children))
        nodes.setEdited(name, node, edit === undefined ? [] : [edit], oldBytes);
      else nodes.set(name, node);
      return node;
    }
    // In a transaction: remember the edits, for commit() to apply to the store's own list.
    const a = tx.accessed.get(name);
    if (a !== undefined && a.edits !== null) {
      if (edit !== undefined) a.edits.push(edit);
      else if (a.node === null || !a.node.children.sameAs(children)) a.edits = null;
    }
    this.#modify(name, node);
    return node;
  }

  delete(name: string): void {
    this.store.nextGeneration();
    const a = this.tx?.accessed.get(name);
    if (a !== undefined) a.edits = null;
    this.#modify(name, null);
  }

  /** Replaces (or with null, removes) a node globally or in the transaction's copy. */
  #modify(name: string, node: Node | null): void {
    const tx = this.tx;
    if (tx === null) {
      if (node === null) this.store.nodes.delete(name);
      else this.store.nodes.set(name, node);
      return;
    }
    const a = tx.accessed.get(name);
    if (a === undefined) {
      this.#record(tx, name, node, this.store.nodes.get(name) ?? null, false).modified = true;
    } else {
      a.node = node;
      a.modified = true;
    }
  }

  /** Counts a node gained (+1) or lost (-1) by its owner; deferred to commit in a transaction. */
  entry(domid: number, delta: number): void {
    const tx = this.tx;
    if (tx === null) this.#entry(domid, delta);
    else tx.entryDelta.set(domid, (tx.entryDelta.get(domid) ?? 0) + delta);
  }

  /** Asks for watches to fire on `name`; in a transaction, they fire at commit. */
  fire(name: string, node: Node | null, exact: boolean, oldPerms: Perms | null): void {
    const tx = this.tx;
    if (tx === null) {
      this.fires.push({ name, node, exact, oldPerms });
      return;
    }
    const a = tx.accessed.get(name);
    if (a === undefined) {
      tx.failed = true;
      return;
    }
    // A non-exact event replaces an exact one, not the other way round.
    if (!a.fireWatch) {
      a.fireWatch = true;
      a.watchExact = exact;
    } else if (!exact) {
      a.watchExact = false;
    }
  }

  /** First access of `name` in `tx`: remembers what it saw (`cur`) and what it now holds. */
  #record(tx: Transaction, name: string, node: Node | null, cur: Node | null, checkGen: boolean): Accessed {
    if (tx.accessed.size >= this.#transNodesQuota) {
      tx.failed = true;
      throw new XsError("ENOSPC", `transaction-nodes quota (${this.#transNodesQuota}) reached`);
    }
    const a: Accessed = {
      node,
      generation: cur ? cur.generation : NO_GENERATION,
      checkGen,
      modified: false,
      fireWatch: false,
      watchExact: false,
      perms: cur ? cur.perms : null,
      edits: checkGen && node !== null ? [] : null,
    };
    tx.accessed.set(name, a);
    return a;
  }
}

/**
 * Commits `tx` into `store`: EAGAIN if any node it first read has changed since; else
 * applies its writes and deletes in the order it first touched them and returns the watch
 * fires, also in that order.
 */
export function commit(store: Store, tx: Transaction): FireRequest[] {
  for (const [name, a] of tx.accessed) {
    if (!a.checkGen) continue;
    const cur = store.nodes.get(name);
    const gen = cur ? cur.generation : NO_GENERATION;
    if (gen !== a.generation) throw new XsError("EAGAIN");
  }
  const fires: FireRequest[] = [];
  for (const [name, a] of tx.accessed) {
    if (!a.modified) continue;
    const cur = store.nodes.get(name);
    if (a.node !== null && a.edits !== null && cur !== undefined) {
      // The store's record is the one this transaction first read (its generation was just
      // checked): its list with the transaction's edits is the transaction's list, and the
      // journal records the edits alone.
      const oldBytes = cur.children.bytes;
      let children = cur.children;
      for (const e of a.edits) children = children.edited(e, store);
      store.nodes.setEdited(
        name,
        { ...a.node, children, generation: store.nextGeneration() },
        a.edits,
        oldBytes,
      );
    } else if (a.node !== null) {
      a.node.children.adopt(tx, store);
      store.nodes.set(name, { ...a.node, generation: store.nextGeneration() });
    } else {
      store.nodes.delete(name);
    }
    if (a.fireWatch) fires.push({ name, node: null, exact: a.watchExact, oldPerms: a.perms });
  }
  return fires;
}
