/**
 * The store's nodes packed outside the JavaScript object graph: typed-array columns per node,
 * the names and values in one byte arena, so a node of bench xenstore case f (16-byte values)
 * costs about 75 bytes where a Map of path → record cost about 220 bytes of heap and 250-400 of
 * RSS (docs/speed.md).
 *
 * Slots. Each slot is one (parent, base name) pair. It is kept while the node exists (EXISTS),
 * while its parent's child list names it (LISTED), or while it has child slots (`refs`). The
 * store is consistent between requests (every node is listed by its parent, every listed name
 * exists), but inside a request a node exists before its parent lists it, and a deleted
 * node's children stay listed until the node's own record goes: slots allow both.
 *
 * Columns, 49 bytes per slot, all in one buffer: generation (float64); parent; the arena
 * offset of its block (name bytes, then value bytes; -1 for none); interned permissions id;
 * the child list as an intrusive doubly linked list (the first child, and the slot's own next
 * and prev in its parent's list, prev circular so the first child's prev is the last: C's
 * append and cut-out in O(1)); the list's bytes of names with their NULs (C's `childlen`, for
 * the node-size quota); refs; the path's hash state (int32 each); name and value lengths
 * (uint16); flags (uint8).
 * Free slots chain through `next`. A worked layout: /a, then /a/c, then /a/b = "v" take slots
 * 1, 2, 3; first[1] = 2, next[2] = 3, next[3] = -1, prev[2] = 3 (the last), prev[3] = 2; slot 3's
 * block holds "bv" (name 1, value 1: 4 bytes); cbytes[1] = 4 ("c\0b\0").
 *
 * Lookup. An open-addressing table (linear probing, load ≤ 0.7) maps the hash of a node's full
 * path to slot + 1. Each slot keeps its path's hash state (`hcode`, 4 bytes): a path is hashed in
 * one pass over the string's chars and a candidate checked by walking up its parents, and a
 * (parent, name) pair hashes from the parent's state, so no path string is kept and no
 * substring made. Deletion shifts later entries back (no tombstones).
 *
 * Arena. The names and values live in src/xenstore/node-arena.ts's blocks, reused by size:
 * rewriting a value of the same rounded size reuses its block in place, and a store whose
 * values churn does not grow.
 *
 * Child-list views. A node record read from the store carries a `StoreList`, a view of its
 * slot's live list (src/xenstore/children.ts's interface). A transaction that keeps a record
 * freezes its view: the view joins a per-slot holder, and the store's next change to that list
 * first copies the names into the holder once (C's order), so the transaction still sees what it
 * read. Example: T reads /d [a, b] (frozen); the store appends c → T's view now answers from
 * its copy [a, b]; a fresh read of /d gives [a, b, c].
 */
import { ChildList, type ListOwner } from "./children.ts";
import { Arena, grown, RESERVE_SLOTS, round4 } from "./node-arena.ts";
import type { Perms } from "./perms.ts";

const EXISTS = 1;
const LISTED = 2;
const ROOT = 0;
const NONE = -1;

/**
 * FNV-1a over a node's full path, "/" included, as the path string's chars: the root's state is
 * the offset basis, and a child's state continues its parent's over "/" and its name, so a
 * path is hashed in one pass and a (parent, name) pair from the parent's stored state.
 */
const HASH_ROOT = 0x811c9dc5 | 0;

function hashStep(h: number, c: number): number {
  return Math.imul(h ^ c, 0x01000193);
}

function hashEnd(h: number): number {
  return (h ^ (h >>> 15)) >>> 0;
}

/** Bytes of one slot's columns (float64; 9 int32; 2 uint16; uint8). */
const SLOT_BYTES = 8 + 9 * 4 + 2 * 2 + 1;

/** Copies of frozen views of one slot's list, made at the store's first change after the freeze. */
export interface Holder {
  snap: ChildList | null;
}

export class NodeTable {
  /** The store: lists it owns are changed in place. */
  readonly owner: ListOwner;
  #cap = 0;
  #gen = new Float64Array(0);
  #parent = new Int32Array(0);
  #data = new Int32Array(0);
  #perms = new Int32Array(0);
  #first = new Int32Array(0);
  /** In the parent's list: the next slot (NONE at the end), and the previous one (circular: the first's is the last). */
  #next = new Int32Array(0);
  #prev = new Int32Array(0);
  #cbytes = new Int32Array(0);
  #refs = new Int32Array(0);
  /** The FNV state of the slot's full path (before hashEnd). */
  #hcode = new Int32Array(0);
  #nameLen = new Uint16Array(0);
  #valLen = new Uint16Array(0);
  #flags = new Uint8Array(0);
  /** Slots ever used; slots below it that are free chain from #freeSlot through #next. */
  #used = 0;
  #freeSlot = NONE;
  /** Nodes that exist. */
  #size = 0;

  #hash = new Int32Array(0);
  #hashUsed = 0;

  readonly #arena = new Arena();

  readonly #permsIds = new Map<string, number>();
  readonly #permsOf = new WeakMap<Perms, number>();
  #permsList: (Perms | null)[] = [];
  #permsRefs: number[] = [];
  #permsFree: number[] = [];

  readonly #frozen = new Map<number, Holder>();
  /** The wire form of one list, kept until that list changes (DIRECTORY_PART reads it in parts). */
  #wireSlot = NONE;
  #lastPath = "";
  #lastSlot = NONE;
  #wire: Uint8Array | null = null;

  constructor(owner: ListOwner) {
    this.owner = owner;
    this.#grow(1024);
    this.#hash = new Int32Array(2048);
    const root = this.#newSlot(NONE, "", 0, 0);
    if (root !== ROOT) throw new Error("Cannot build the node table: the root is not slot 0");
  }

  get size(): number {
    return this.#size;
  }

  // ------------------------------------------------------------------ lookup

  /** The slot of `path`, or -1: one hash of the whole path, checked up through the parents. */
  find(path: string): number {
    // A request looks its path up several times (read, checks, accounts, write): the last
    // answer is kept until a slot is freed.
    if (path === this.#lastPath) return this.#lastSlot;
    const slot = this.#lookup(path);
    if (slot >= 0) {
      this.#lastPath = path;
      this.#lastSlot = slot;
    }
    return slot;
  }

  #lookup(path: string): number {
    const len = path.length;
    if (path.charCodeAt(0) !== 47) return NONE;
    if (len === 1) return ROOT;
    let h = HASH_ROOT;
    for (let i = 0; i < len; i++) h = hashStep(h, path.charCodeAt(i));
    const hash = this.#hash;
    const mask = hash.length - 1;
    for (let i = hashEnd(h) & mask; ; i = (i + 1) & mask) {
      const e = hash[i]!;
      if (e === 0) return NONE;
      if (this.#hcode[e - 1] === h && this.#isPath(e - 1, path)) return e - 1;
    }
  }

  /** Whether `slot`'s full path is `path`. */
  #isPath(slot: number, path: string): boolean {
    const a = this.#arena.bytes;
    let end = path.length;
    for (let s = slot; s !== ROOT; s = this.#parent[s]!) {
      const n = this.#nameLen[s]!;
      const start = end - n;
      if (start < 1 || path.charCodeAt(start - 1) !== 47) return false;
      const off = this.#data[s]!;
      for (let j = 0; j < n; j++) if (a[off + j] !== path.charCodeAt(start + j)) return false;
      end = start - 1;
    }
    return end === 0;
  }

  /** The slot of `path`, made (with the slots above it) when missing. */
  #ensure(path: string): number {
    if (path.charCodeAt(0) !== 47) throw new RangeError(`Cannot store node "${path}": not an absolute path`);
    if (path.length === 1) return ROOT;
    let slot = ROOT;
    let start = 1;
    const len = path.length;
    for (;;) {
      let end = path.indexOf("/", start);
      if (end < 0) end = len;
      const c = this.#child(slot, path, start, end);
      slot = c >= 0 ? c : this.#newSlot(slot, path, start, end);
      if (end === len) return slot;
      start = end + 1;
    }
  }

  #nameHash(parent: number, s: string, start: number, end: number): number {
    let h = hashStep(this.#hcode[parent]!, 47);
    for (let i = start; i < end; i++) h = hashStep(h, s.charCodeAt(i));
    return h;
  }

  #slotHash(slot: number): number {
    return hashEnd(this.#hcode[slot]!);
  }

  /** The child slot of `parent` named s[start, end), or -1. */
  #child(parent: number, s: string, start: number, end: number): number {
    const hash = this.#hash;
    const mask = hash.length - 1;
    const n = end - start;
    const a = this.#arena.bytes;
    const h = this.#nameHash(parent, s, start, end);
    let i = hashEnd(h) & mask;
    for (;;) {
      const e = hash[i]!;
      if (e === 0) return NONE;
      const slot = e - 1;
      if (this.#hcode[slot] === h && this.#parent[slot] === parent && this.#nameLen[slot] === n) {
        const off = this.#data[slot]!;
        let j = 0;
        while (j < n && a[off + j] === s.charCodeAt(start + j)) j++;
        if (j === n) return slot;
      }
      i = (i + 1) & mask;
    }
  }

  #hashInsert(slot: number): void {
    if ((this.#hashUsed + 1) * 10 > this.#hash.length * 7) this.#rehash(this.#hash.length * 2);
    const hash = this.#hash;
    const mask = hash.length - 1;
    let i = this.#slotHash(slot) & mask;
    while (hash[i] !== 0) i = (i + 1) & mask;
    hash[i] = slot + 1;
    this.#hashUsed++;
  }

  #hashRemove(slot: number): void {
    const hash = this.#hash;
    const mask = hash.length - 1;
    let i = this.#slotHash(slot) & mask;
    while (hash[i] !== slot + 1) i = (i + 1) & mask;
    // Backward-shift deletion: move up each later entry of the run that may sit at i.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const e = hash[j]!;
      if (e === 0) break;
      const k = this.#slotHash(e - 1) & mask;
      // The entry at j may fill i when its home k is not cyclically in (i, j].
      if (i <= j ? k <= i || k > j : k <= i && k > j) {
        hash[i] = e;
        i = j;
      }
    }
    hash[i] = 0;
    this.#hashUsed--;
  }

  #rehash(size: number): void {
    const old = this.#hash;
    const hash = new Int32Array(size);
    const mask = size - 1;
    for (let i = 0; i < old.length; i++) {
      const e = old[i]!;
      if (e === 0) continue;
      let j = this.#slotHash(e - 1) & mask;
      while (hash[j] !== 0) j = (j + 1) & mask;
      hash[j] = e;
    }
    this.#hash = hash;
  }

  // ------------------------------------------------------------------ slots

  /**
   * Moves the columns to one buffer of `cap` slots. One buffer, not one per column: a few large
   * allocations, each twice the last, which malloc serves from fresh zero pages (untouched
   * ones cost no RSS) and gives back whole when freed.
   */
  #grow(cap: number): void {
    const buf = new ArrayBuffer(cap * SLOT_BYTES);
    let off = 0;
    const take = <T extends Float64Array | Int32Array | Uint16Array | Uint8Array>(
      old: T,
      make: (b: ArrayBuffer, o: number, n: number) => T,
    ): T => {
      const a = make(buf, off, cap);
      a.set(old);
      off += cap * a.BYTES_PER_ELEMENT;
      return a;
    };
    const f64 = (b: ArrayBuffer, o: number, n: number) => new Float64Array(b, o, n);
    const i32 = (b: ArrayBuffer, o: number, n: number) => new Int32Array(b, o, n);
    const u16 = (b: ArrayBuffer, o: number, n: number) => new Uint16Array(b, o, n);
    this.#gen = take(this.#gen, f64);
    this.#parent = take(this.#parent, i32);
    this.#data = take(this.#data, i32);
    this.#perms = take(this.#perms, i32);
    this.#first = take(this.#first, i32);
    this.#next = take(this.#next, i32);
    this.#prev = take(this.#prev, i32);
    this.#cbytes = take(this.#cbytes, i32);
    this.#refs = take(this.#refs, i32);
    this.#hcode = take(this.#hcode, i32);
    this.#nameLen = take(this.#nameLen, u16);
    this.#valLen = take(this.#valLen, u16);
    this.#flags = take(this.#flags, (b, o, n) => new Uint8Array(b, o, n));
    this.#cap = cap;
  }

  #newSlot(parent: number, s: string, start: number, end: number): number {
    let slot = this.#freeSlot;
    if (slot !== NONE) {
      this.#freeSlot = this.#next[slot]!;
    } else {
      if (this.#used === this.#cap) this.#grow(grown(this.#cap, RESERVE_SLOTS));
      slot = this.#used++;
    }
    const n = end - start;
    if (n > 0xffff) throw new RangeError(`Cannot store a node name of ${n} bytes`);
    this.#parent[slot] = parent;
    this.#nameLen[slot] = n;
    this.#valLen[slot] = 0;
    this.#flags[slot] = 0;
    this.#perms[slot] = NONE;
    this.#gen[slot] = 0;
    this.#first[slot] = NONE;
    this.#next[slot] = NONE;
    this.#prev[slot] = NONE;
    this.#cbytes[slot] = 0;
    this.#refs[slot] = 0;
    const off = n === 0 ? NONE : this.#arena.alloc(round4(n));
    this.#data[slot] = off;
    const a = this.#arena.bytes;
    for (let i = 0; i < n; i++) a[off + i] = s.charCodeAt(start + i);
    this.#hcode[slot] = parent === NONE ? HASH_ROOT : this.#nameHash(parent, s, start, end);
    if (parent !== NONE) {
      this.#refs[parent]!++;
      this.#hashInsert(slot);
    }
    return slot;
  }

  /** Frees `slot` if nothing keeps it, then its parent likewise, up the tree. */
  #release(slot: number): void {
    this.#lastPath = "";
    this.#lastSlot = NONE;
    while (slot !== ROOT && this.#flags[slot] === 0 && this.#refs[slot] === 0) {
      this.#thaw(slot);
      const parent = this.#parent[slot]!;
      this.#hashRemove(slot);
      const off = this.#data[slot]!;
      if (off !== NONE) this.#arena.free(off, round4(this.#nameLen[slot]! + this.#valLen[slot]!));
      this.#unrefPerms(this.#perms[slot]!);
      this.#perms[slot] = NONE;
      this.#data[slot] = NONE;
      this.#parent[slot] = NONE;
      this.#next[slot] = this.#freeSlot;
      this.#freeSlot = slot;
      this.#refs[parent]!--;
      slot = parent;
    }
  }

  /** Bytes of the arena in use or on its free lists (for tests). */
  get arenaBytes(): number {
    return this.#arena.top;
  }

  // ------------------------------------------------------------------ permissions

  #internPerms(p: Perms): number {
    let id = this.#permsOf.get(p);
    if (id !== undefined && this.#permsList[id] === p) {
      this.#permsRefs[id]!++;
      return id;
    }
    let key = "";
    for (const e of p) key += `${e.id}:${e.perms},`;
    id = this.#permsIds.get(key);
    if (id === undefined) {
      id = this.#permsFree.pop() ?? this.#permsList.length;
      this.#permsList[id] = p;
      this.#permsRefs[id] = 0;
      this.#permsIds.set(key, id);
    }
    this.#permsOf.set(p, id);
    this.#permsRefs[id]!++;
    return id;
  }

  #unrefPerms(id: number): void {
    if (id === NONE || --this.#permsRefs[id]! > 0) return;
    const p = this.#permsList[id]!;
    let key = "";
    for (const e of p) key += `${e.id}:${e.perms},`;
    this.#permsIds.delete(key);
    this.#permsList[id] = null;
    this.#permsFree.push(id);
  }

  // ------------------------------------------------------------------ node fields

  exists(slot: number): boolean {
    return slot >= 0 && (this.#flags[slot]! & EXISTS) !== 0;
  }

  value(slot: number): string {
    const n = this.#valLen[slot]!;
    if (n === 0) return "";
    const off = this.#data[slot]! + this.#nameLen[slot]!;
    return this.#arena.bytes.toString("latin1", off, off + n);
  }

  valueLength(slot: number): number {
    return this.#valLen[slot]!;
  }

  perms(slot: number): Perms {
    return this.#permsList[this.#perms[slot]!]!;
  }

  generation(slot: number): number {
    return this.#gen[slot]!;
  }

  name(slot: number): string {
    const off = this.#data[slot]!;
    return off === NONE ? "" : this.#arena.bytes.toString("latin1", off, off + this.#nameLen[slot]!);
  }

  /** The full path of `slot`, built from its ancestors' names. */
  path(slot: number): string {
    if (slot === ROOT) return "/";
    let p = "";
    for (let s = slot; s !== ROOT; s = this.#parent[s]!) p = `/${this.name(s)}${p}`;
    return p;
  }

  /** Slots of the nodes that exist, in slot order (parents not necessarily first). */
  *slots(): Generator<number> {
    for (let s = 0; s < this.#used; s++) if ((this.#flags[s]! & EXISTS) !== 0) yield s;
  }

  /**
   * Makes `path` exist with these fields and its list as `children` names them (untouched
   * when `children` is this slot's own live list).
   */
  set(path: string, value: string, perms: Perms, generation: number, children: ChildList): number {
    let slot = this.find(path);
    if (slot < 0) slot = this.#ensure(path);
    const nameLen = this.#nameLen[slot]!;
    const vlen = value.length;
    if (vlen > 0xffff) throw new RangeError(`Cannot store a value of ${vlen} bytes`);
    const oldSize = round4(nameLen + this.#valLen[slot]!);
    const size = round4(nameLen + vlen);
    let off = this.#data[slot]!;
    if (size !== oldSize) {
      const now = size === 0 ? NONE : this.#arena.alloc(size);
      const a = this.#arena.bytes;
      for (let i = 0; i < nameLen; i++) a[now + i] = a[off + i]!;
      if (off !== NONE) this.#arena.free(off, oldSize);
      off = now;
      this.#data[slot] = off;
    }
    const a = this.#arena.bytes;
    const v = off + nameLen;
    if (vlen < 64) for (let i = 0; i < vlen; i++) a[v + i] = value.charCodeAt(i);
    else a.write(value, v, vlen, "latin1");
    this.#valLen[slot] = vlen;
    const old = this.#perms[slot]!;
    this.#perms[slot] = this.#internPerms(perms);
    this.#unrefPerms(old);
    this.#gen[slot] = generation;
    if ((this.#flags[slot]! & EXISTS) === 0) {
      this.#flags[slot]! |= EXISTS;
      this.#size++;
    }
    if (children.liveSlot(this) !== slot) {
      if (this.#first[slot] !== NONE) this.#clearList(slot);
      for (const c of children) this.listAdd(slot, c);
    }
    return slot;
  }

  /** Removes the node at `path` with its child list; false if there was none. */
  delete(path: string): boolean {
    const slot = this.find(path);
    if (slot < 0 || (this.#flags[slot]! & EXISTS) === 0) return false;
    if (this.#first[slot] !== NONE) this.#clearList(slot);
    this.#flags[slot]! &= ~EXISTS;
    this.#size--;
    if (slot === ROOT) return true;
    this.#release(slot);
    return true;
  }

  // ------------------------------------------------------------------ child lists

  /** Names in the list of `slot` (a walk: only a whole record's encoding asks). */
  listCount(slot: number): number {
    let n = 0;
    for (let c = this.#first[slot]!; c !== NONE; c = this.#next[c]!) n++;
    return n;
  }

  listEmpty(slot: number): boolean {
    return this.#first[slot] === NONE;
  }

  listBytes(slot: number): number {
    return this.#cbytes[slot]!;
  }

  listHas(slot: number, name: string): boolean {
    const c = this.#child(slot, name, 0, name.length);
    return c >= 0 && (this.#flags[c]! & LISTED) !== 0;
  }

  /** The listed child slots of `slot`, in order (safe against the current one being unlisted). */
  *listSlots(slot: number): Generator<number> {
    for (let c = this.#first[slot]!; c !== NONE; ) {
      const next = this.#next[c]!;
      yield c;
      c = next;
    }
  }

  listNames(slot: number): string[] {
    const out: string[] = [];
    for (let c = this.#first[slot]!; c !== NONE; c = this.#next[c]!) out.push(this.name(c));
    return out;
  }

  /** Appends `name` to the list of `slot` (C `add_child`); a name already listed stays where it is. */
  listAdd(slot: number, name: string): void {
    if (name.length === 0 || name.includes("/"))
      throw new RangeError(`Cannot list child "${name}": not a base name`);
    let c = this.#child(slot, name, 0, name.length);
    if (c < 0) c = this.#newSlot(slot, name, 0, name.length);
    else if ((this.#flags[c]! & LISTED) !== 0) return;
    this.#listChanging(slot);
    const first = this.#first[slot]!;
    if (first === NONE) {
      this.#first[slot] = c;
      this.#prev[c] = c;
    } else {
      const last = this.#prev[first]!;
      this.#next[last] = c;
      this.#prev[c] = last;
      this.#prev[first] = c;
    }
    this.#next[c] = NONE;
    this.#cbytes[slot]! += name.length + 1;
    this.#flags[c]! |= LISTED;
  }

  /** Removes `name` from the list of `slot` (C `remove_child_entry`); false if not listed. */
  listRemove(slot: number, name: string): boolean {
    const c = this.#child(slot, name, 0, name.length);
    if (c < 0 || (this.#flags[c]! & LISTED) === 0) return false;
    this.#unlink(slot, c);
    this.#release(c);
    return true;
  }

  #unlink(slot: number, c: number): void {
    this.#listChanging(slot);
    const first = this.#first[slot]!;
    const prev = this.#prev[c]!;
    const next = this.#next[c]!;
    if (c === first) {
      this.#first[slot] = next;
      if (next !== NONE) this.#prev[next] = prev;
    } else {
      this.#next[prev] = next;
      this.#prev[next === NONE ? first : next] = prev;
    }
    this.#next[c] = NONE;
    this.#prev[c] = NONE;
    this.#cbytes[slot]! -= this.#nameLen[c]! + 1;
    this.#flags[c]! &= ~LISTED;
  }

  #clearList(slot: number): void {
    for (let c = this.#first[slot]!; c !== NONE; ) {
      const next = this.#next[c]!;
      this.#unlink(slot, c);
      this.#release(c);
      c = next;
    }
  }

  /** Before a change to the list of `slot`: frozen views copy it, the wire form goes. */
  #listChanging(slot: number): void {
    if (this.#wireSlot === slot) {
      this.#wireSlot = NONE;
      this.#wire = null;
    }
    this.#thaw(slot);
  }

  #thaw(slot: number): void {
    if (this.#frozen.size === 0) return;
    const h = this.#frozen.get(slot);
    if (h === undefined) return;
    this.#frozen.delete(slot);
    h.snap = ChildList.of(this.listNames(slot), null);
  }

  /** The holder a frozen view of `slot`'s list joins. */
  holder(slot: number): Holder {
    let h = this.#frozen.get(slot);
    if (h === undefined) {
      h = { snap: null };
      this.#frozen.set(slot, h);
    }
    return h;
  }

  listWire(slot: number): Uint8Array {
    if (this.#wireSlot === slot && this.#wire !== null) return this.#wire;
    const out = new Uint8Array(this.#cbytes[slot]!);
    const a = this.#arena.bytes;
    let pos = 0;
    for (let c = this.#first[slot]!; c !== NONE; c = this.#next[c]!) {
      const off = this.#data[c]!;
      const n = this.#nameLen[c]!;
      out.set(a.subarray(off, off + n), pos);
      pos += n + 1;
    }
    this.#wireSlot = slot;
    this.#wire = out;
    return out;
  }

  /** Empties the table but for the root, which loses its record. */
  clear(): void {
    const all = [...this.slots()];
    for (const s of all) {
      if (s === ROOT) continue;
      const path = this.path(s);
      this.delete(path);
    }
    if (this.exists(ROOT)) this.delete("/");
  }
}
