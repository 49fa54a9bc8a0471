/**
 * A node record's view of its slot's child list in the packed store (src/xenstore/node-table.ts):
 * reads go to the table's columns, the store's edits change the table in place, and a frozen
 * view (a transaction's) answers from the copy the table makes before its next change.
 */
import { type ChildEdit, ChildList, type ListOwner } from "./children.ts";
import type { Holder, NodeTable } from "./node-table.ts";

function* names(t: NodeTable, slot: number): Generator<string> {
  for (const c of t.listSlots(slot)) yield t.name(c);
}

/** A node record's view of its slot's child list in a `NodeTable`. */
export class StoreList extends ChildList {
  readonly #t: NodeTable;
  readonly #slot: number;
  #holder: Holder | null = null;

  constructor(t: NodeTable, slot: number) {
    super();
    this.#t = t;
    this.#slot = slot;
  }

  /** Whether this view still shows the live list of `slot` in `t`. */
  isLive(t: NodeTable, slot: number): boolean {
    return this.#t === t && this.#slot === slot && (this.#holder === null || this.#holder.snap === null);
  }

  override liveSlot(table: object): number {
    return this.isLive(this.#t, this.#slot) && table === this.#t ? this.#slot : -1;
  }

  #snap(): ChildList | null {
    return this.#holder === null ? null : this.#holder.snap;
  }

  override get size(): number {
    return this.#snap()?.size ?? this.#t.listCount(this.#slot);
  }

  override get bytes(): number {
    return this.#snap()?.bytes ?? this.#t.listBytes(this.#slot);
  }

  override get owner(): ListOwner | null {
    return this.#holder === null ? this.#t.owner : null;
  }

  override has(name: string): boolean {
    const s = this.#snap();
    return s !== null ? s.has(name) : this.#t.listHas(this.#slot, name);
  }

  override [Symbol.iterator](): IterableIterator<string> {
    const s = this.#snap();
    if (s !== null) return s[Symbol.iterator]();
    return names(this.#t, this.#slot);
  }

  override toArray(): string[] {
    const s = this.#snap();
    return s !== null ? s.toArray() : this.#t.listNames(this.#slot);
  }

  override freeze(): void {
    if (this.#holder !== null) return;
    // An empty list is copied at once: a holder per leaf a transaction read would pile up.
    this.#holder = this.#t.listEmpty(this.#slot) ? { snap: ChildList.EMPTY } : this.#t.holder(this.#slot);
  }

  override adopt(_from: ListOwner | null, _to: ListOwner): void {}

  override edited(edit: ChildEdit, owner: ListOwner): ChildList {
    if (this.#holder === null && owner === this.#t.owner) {
      if (edit.add) this.#t.listAdd(this.#slot, edit.name);
      else this.#t.listRemove(this.#slot, edit.name);
      return this;
    }
    return ChildList.of(this.toArray(), owner).edited(edit, owner);
  }

  override wire(): Uint8Array {
    const s = this.#snap();
    return s !== null ? s.wire() : this.#t.listWire(this.#slot);
  }

  override sameAs(other: ChildList): boolean {
    if (this === other) return true;
    return (
      other instanceof StoreList && other.isLive(this.#t, this.#slot) && this.isLive(this.#t, this.#slot)
    );
  }
}
