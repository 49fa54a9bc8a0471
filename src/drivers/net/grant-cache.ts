/**
 * netback's mappings of a frontend's data pages, kept between frames. Linux's netback copies each
 * slot with GNTTABOP_copy; here every grant operation is a hypercall that wakes the hypervisor's
 * thread (tens of µs, docs/platform.md), so a vif maps each grant ref the frontend names once and
 * copies through the mapping afterwards, as blkback's persistent grants do. netfront (like Linux's)
 * reuses a fixed set of pages and refs, so the cache stays small.
 *
 * Safe against a frontend that re-grants: a mapped grant is pinned, so the frontend cannot end it
 * or point the ref at another page while the mapping lasts (its end-of-access fails until netback
 * unmaps, at disconnect or eviction). A ref is mapped read-only for TX and writable for RX; a ref
 * first seen read-only and then needed writable is mapped again. Past `max` mappings the least
 * recently used one is unmapped, which bounds dom0's maptrack use per vif. A map that fails (a ref
 * not granted to dom0, or granted read-only where RX needs to write) is not cached: the caller
 * answers that slot ERROR, as Linux answers a failed copy.
 */
import { GrantOpError, type Kernel } from "../../kernel/kernel.ts";
import { pageBytes } from "../../xen/xen.ts";

/** Mappings kept per vif before the least recently used goes. */
export const GRANT_CACHE_MAX = 512;

interface Entry {
  readonly handle: number;
  readonly page: Uint8Array;
  readonly readonly: boolean;
}

export class GrantCache {
  readonly #k: Pick<Kernel, "mapGrant" | "unmapGrant">;
  readonly #dom: number;
  readonly #max: number;
  /** Insertion order is recency: a hit moves the entry to the end. */
  readonly #map = new Map<number, Entry>();
  /** Grant hypercalls made (maps and unmaps), for the stats. */
  ops = 0;

  constructor(k: Pick<Kernel, "mapGrant" | "unmapGrant">, dom: number, max = GRANT_CACHE_MAX) {
    this.#k = k;
    this.#dom = dom;
    this.#max = max;
  }

  /** The page of `ref`, mapped (writable unless `readonly`), or the GNTST_* status of a failed map. */
  page(ref: number, readonly: boolean): Uint8Array | number {
    const e = this.#map.get(ref);
    if (e !== undefined && (readonly || !e.readonly)) {
      this.#map.delete(ref);
      this.#map.set(ref, e);
      return e.page;
    }
    if (e !== undefined) this.#drop(ref, e);
    let m: ReturnType<Kernel["mapGrant"]>;
    try {
      this.ops++;
      m = this.#k.mapGrant(this.#dom, ref, readonly);
    } catch (err) {
      if (err instanceof GrantOpError) return err.status;
      throw err;
    }
    if (this.#map.size >= this.#max) {
      const [oldRef, old] = this.#map.entries().next().value as [number, Entry];
      this.#drop(oldRef, old);
    }
    const entry = { handle: m.handle, page: pageBytes(m.page), readonly };
    this.#map.set(ref, entry);
    return entry.page;
  }

  #drop(ref: number, e: Entry): void {
    this.#map.delete(ref);
    this.ops++;
    try {
      this.#k.unmapGrant(e.handle);
    } catch {
      // already gone with the domain
    }
  }

  /** Unmaps everything (disconnect). */
  clear(): void {
    for (const [ref, e] of [...this.#map]) this.#drop(ref, e);
  }
}
