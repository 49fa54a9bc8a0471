/**
 * Grant tables, the granting domain's side (Linux's `drivers/xen/grant-table.c`): grant, end and
 * query access to one of the domain's own pages (granting is the ABI's `grantForeignAccess`, which
 * the domain builder uses too), and the allocator of its grant refs. It runs in
 * the domain's worker, on its own frames; the layout and flags are src/xen/grant-table-abi.ts, the
 * hypervisor's map, unmap and copy src/hv/grant-table.ts.
 */
import { checkRef, GNTTAB_RESERVED, type GrantTableFrames, GTF, wordIndex } from "../xen/grant-table-abi.ts";
/**
 * `gnttab_end_foreign_access_ref`: revoke `ref`. Fails (false) while the grantee has it mapped or
 * is copying (GTF_reading/GTF_writing set); the caller must then keep the page. Otherwise CMPXCHG
 * the flags to 0, re-checking if the hypervisor changed the word in between.
 */
export function endForeignAccess(table: GrantTableFrames, ref: number): boolean {
  checkRef(table, ref);
  const w = table.words(ref);
  const i = wordIndex(ref);
  let cur = Atomics.load(w, i);
  for (;;) {
    if ((cur & (GTF.reading | GTF.writing)) !== 0) return false;
    const prev = Atomics.compareExchange(w, i, cur, cur & ~0xffff);
    if (prev === cur) return true;
    cur = prev;
  }
}

/** `gnttab_query_foreign_access`: the GTF_reading|GTF_writing bits of `ref` (0: not in use). */
export function queryForeignAccess(table: GrantTableFrames, ref: number): number {
  return table.flags(ref) & (GTF.reading | GTF.writing);
}

/**
 * The guest's free list of grant refs (Linux's `gnttab_free_head`): never hands out the reserved
 * refs 0–7. Last freed, first reused.
 */
export class GrantRefAllocator {
  readonly #free: number[] = [];
  readonly #isFree: Uint8Array;

  constructor(nrEntries: number) {
    if (!Number.isInteger(nrEntries) || nrEntries < GNTTAB_RESERVED.entries) {
      throw new RangeError(`Cannot allocate grant refs: need at least 8 entries, got ${nrEntries}`);
    }
    this.#isFree = new Uint8Array(nrEntries);
    for (let ref = nrEntries - 1; ref >= GNTTAB_RESERVED.entries; ref--) {
      this.#free.push(ref);
      this.#isFree[ref] = 1;
    }
  }

  /** Refs still free. */
  get available(): number {
    return this.#free.length;
  }

  /** After a restore: every ref whose entry grants access is taken (its driver ends it). */
  reserveGranted(table: GrantTableFrames): void {
    for (let ref = GNTTAB_RESERVED.entries; ref < this.#isFree.length; ref++) {
      if (this.#isFree[ref] === 1 && (table.flags(ref) & GTF.permit_access) !== 0) this.#isFree[ref] = 0;
    }
    const still = this.#free.filter((ref) => this.#isFree[ref] === 1);
    this.#free.length = 0;
    this.#free.push(...still);
  }

  /** A free ref, or undefined when all are in use (Linux: -ENOSPC). */
  alloc(): number | undefined {
    const ref = this.#free.pop();
    if (ref !== undefined) this.#isFree[ref] = 0;
    return ref;
  }

  /** Returns `ref` to the free list; end its foreign access first. */
  free(ref: number): void {
    if (!Number.isInteger(ref) || ref < GNTTAB_RESERVED.entries || ref >= this.#isFree.length) {
      throw new RangeError(`Cannot free grant ref ${ref}: not an allocatable ref`);
    }
    if (this.#isFree[ref] === 1) throw new RangeError(`Cannot free grant ref ${ref}: it is already free`);
    this.#isFree[ref] = 1;
    this.#free.push(ref);
  }
}
