/**
 * A node's child list: base names in C xenstored's order, with add and remove in O(1).
 *
 * C xenstored keeps a node's children as one byte string of NUL-terminated names: a new child
 * is appended (`add_child`), a removed one is cut out and the rest move up
 * (`remove_child_entry`), so XS_DIRECTORY lists them in creation order, and a name removed and
 * created again goes to the end. Two implementations keep that order without C's O(n) copy per
 * change: the store's own lists are intrusive linked lists in its packed table
 * (src/xenstore/node-table.ts; a record carries a view, store-list.ts), and the lists a
 * transaction or the journal's loader holds are a JavaScript `Set`, which iterates in insertion
 * order and keeps the order of the rest on a delete (SetList, below).
 *
 * Sharing. Node records are immutable for their readers (a transaction keeps the record it
 * saw). A list therefore has an `owner`, the store or one transaction, and is changed in
 * place only by its owner; anyone else changing it gets a copy that they own. A list a
 * transaction has seen is frozen (owner null): the next change by the store copies it once,
 * and the store owns the copy. Worked examples (test/xenstore/children.test.ts):
 *
 *   1. the store adds "b" to its own list [a]         → the same list, now [a, b]
 *   2. T reads /d [a] (frozen); the store adds "b"     → the store's new copy [a, b]; T still sees [a]
 *   3. T adds "c" to its copy of /d                    → T's own copy [a, c]; the store's is untouched
 *   4. remove "a" from [a, b, c], add "a"              → [b, c, a] (as C: removed, then appended)
 *
 * Duplicates. C appends a name even if the list already has it, and removes the first
 * occurrence. That happens only in a transaction whose copy of the directory is stale (the
 * child was removed outside, then created in the transaction): DIRECTORY in it lists the name
 * twice (test/diff/random.test.ts meets this). A list given a duplicate turns into a plain
 * array with C's O(n) costs; such a transaction's commit fails with EAGAIN anyway.
 */

/** Who may change a list in place: the store or a transaction (compared by identity). */
export type ListOwner = object;

/** One change to a child list: a name appended, or removed. */
export interface ChildEdit {
  readonly add: boolean;
  readonly name: string;
}

/**
 * The child-list interface: the store's packed lists (src/xenstore/node-table.ts) and the
 * lists below, kept by transactions and the journal's loader, both implement it.
 */
export abstract class ChildList implements Iterable<string> {
  /** The empty list of every leaf: frozen, so a first child makes a list of its own. */
  static get EMPTY(): ChildList {
    return EMPTY;
  }

  /** A list of `names` (in that order) owned by `owner`. */
  static of(names: Iterable<string>, owner: ListOwner | null): ChildList {
    const all = [...names];
    return all.length === 0 ? EMPTY : SetList.ofArray(all, owner);
  }

  abstract get size(): number;
  /** Bytes of the names with their NULs: C's `childlen`, counted by the node-size quota. */
  abstract get bytes(): number;
  abstract get owner(): ListOwner | null;
  abstract has(name: string): boolean;
  abstract [Symbol.iterator](): IterableIterator<string>;
  abstract toArray(): string[];
  /** No one may change this list in place any more (a transaction holds it). */
  abstract freeze(): void;
  /** Hands the list from `from` to `to` (a committed transaction's lists go to the store). */
  abstract adopt(from: ListOwner | null, to: ListOwner): void;
  /** The list with `edit` applied: this one, changed in place, when `owner` owns it; else a copy. */
  abstract edited(edit: ChildEdit, owner: ListOwner): ChildList;
  /** The names as XS_DIRECTORY carries them: each NUL-terminated (latin1). Do not modify. */
  abstract wire(): Uint8Array;

  /**
   * Whether `other` is this same list: the same object, or two views of one stored list
   * (each read of the store gives a new view).
   */
  sameAs(other: ChildList): boolean {
    return this === other;
  }

  /** The slot of `table` whose live list this is (a view of the packed store's), or -1. */
  liveSlot(_table: object): number {
    return -1;
  }

  /** Bytes after `edit` is applied. */
  bytesAfter(edit: ChildEdit): number {
    if (edit.add) return this.bytes + edit.name.length + 1;
    return this.has(edit.name) ? this.bytes - edit.name.length - 1 : this.bytes;
  }

  /** A new list without the first `k` names (a removal walk that stopped half-way). */
  withoutFirst(k: number, owner: ListOwner): ChildList {
    return ChildList.of(this.toArray().slice(k), owner);
  }
}

/** A list held as a `Set` (a plain array once a name is listed twice). */
class SetList extends ChildList {
  readonly #names: Set<string>;
  /** Set once a name is listed twice: the names in order, duplicates included (#names unused). */
  #dups: string[] | null = null;
  #bytes: number;
  #owner: ListOwner | null;
  /** The names as the wire carries them, built on demand and dropped on change. */
  #wire: Uint8Array | null = null;

  constructor(names: Set<string>, bytes: number, owner: ListOwner | null) {
    super();
    this.#names = names;
    this.#bytes = bytes;
    this.#owner = owner;
  }

  static ofArray(all: string[], owner: ListOwner | null): SetList {
    const set = new Set(all);
    let bytes = 0;
    for (const n of all) bytes += n.length + 1;
    const l = new SetList(set, bytes, owner);
    if (set.size !== all.length) l.#dups = all;
    return l;
  }

  override get size(): number {
    return this.#dups === null ? this.#names.size : this.#dups.length;
  }

  /** Bytes of the names with their NULs: C's `childlen`, counted by the node-size quota. */
  override get bytes(): number {
    return this.#bytes;
  }

  override get owner(): ListOwner | null {
    return this.#owner;
  }

  override has(name: string): boolean {
    return this.#dups === null ? this.#names.has(name) : this.#dups.includes(name);
  }

  override [Symbol.iterator](): IterableIterator<string> {
    return this.#dups === null ? this.#names.values() : this.#dups.values();
  }

  override toArray(): string[] {
    return this.#dups === null ? [...this.#names] : [...this.#dups];
  }

  /** No one may change this list in place any more (a transaction holds it). */
  override freeze(): void {
    if (this.#owner !== null) this.#owner = null;
  }

  /** Hands the list from `from` to `to` (a committed transaction's lists go to the store). */
  override adopt(from: ListOwner | null, to: ListOwner): void {
    if (this.#owner === from && this !== EMPTY) this.#owner = to;
  }

  /** The list with `edit` applied: this one, changed in place, when `owner` owns it; else a copy. */
  override edited(edit: ChildEdit, owner: ListOwner): ChildList {
    let list: SetList = this;
    if (this.#owner !== owner) {
      list = new SetList(new Set(this.#names), this.#bytes, owner);
      if (this.#dups !== null) list.#dups = [...this.#dups];
    }
    const { name } = edit;
    if (list.#dups === null && edit.add && list.#names.has(name)) list.#dups = [...list.#names];
    const dups = list.#dups;
    if (edit.add) {
      if (dups === null) list.#names.add(name);
      else dups.push(name);
      list.#bytes += name.length + 1;
    } else {
      if (dups === null) {
        if (!list.#names.delete(name)) return list;
      } else {
        const i = dups.indexOf(name);
        if (i < 0) return list;
        dups.splice(i, 1);
      }
      list.#bytes -= name.length + 1;
    }
    list.#wire = null;
    return list;
  }

  /** The names as XS_DIRECTORY carries them: each NUL-terminated (latin1). Do not modify. */
  override wire(): Uint8Array {
    if (this.#wire !== null) return this.#wire;
    const out = new Uint8Array(this.#bytes);
    let pos = 0;
    for (const c of this) {
      for (let i = 0; i < c.length; i++) out[pos++] = c.charCodeAt(i);
      out[pos++] = 0;
    }
    this.#wire = out;
    return out;
  }
}

const EMPTY: ChildList = new SetList(new Set(), 0, null);
