/**
 * blkfront's data pages: the per-connection pool of guest pages that carry every request's data
 * and indirect segment descriptors, their grants, and the IoBuffers a guest module takes out of it
 * for zero-copy I/O (Linux xen-blkfront's grant list, get_free_grant / get_indirect_grant, and
 * its persistent grants).
 *
 * The guest's buffers are not pages of its own memory, so every request goes through pool pages
 * (copies cost ~0.25 µs a page, against 10–90 µs a wake-up). With persistent grants (both ends
 * offer `feature-persistent`) each page is granted read-write once and stays granted, so the
 * backend maps it once; without them a page is granted for one request (read-only for a write) and
 * its grant ends when the response arrives. The pool grows a page at a time up to `maxPages` or
 * until the domain's memory runs out, and never shrinks while the connection lives; release() ends
 * every grant and frees every page once the backend has unmapped them.
 */
import type { Kernel } from "../../kernel/kernel.ts";
import { pageBytes } from "../../xen/xen.ts";
import type { IoBuffer } from "./blockdev.ts";

/** What the pool needs of the guest kernel. */
export type PoolKernel = Pick<Kernel, "allocPage" | "freePage" | "grantAccess" | "endAccess">;

export interface PagePoolOptions {
  readonly kernel: PoolKernel;
  /** The backend's domain, to which pages are granted. */
  readonly backendId: number;
  /** At most this many pages (blkfront's `max_pages`). */
  readonly maxPages: number;
  log(line: string): void;
}

/** A page of the pool: ours, granted to the backend while `ref` >= 0. */
export interface PoolPage {
  readonly gfn: number;
  readonly page: Uint8Array;
  ref: number;
  /** The page as a DataView, made the first time it is an indirect page. */
  view?: DataView;
}

/** The page as a DataView, made once per page (for indirect segment descriptors). */
export function viewOfPage(p: PoolPage): DataView {
  p.view ??= new DataView(p.page.buffer, p.page.byteOffset, p.page.byteLength);
  return p.view;
}

export class PagePool {
  readonly #o: PagePoolOptions;
  readonly #free: PoolPage[] = [];
  readonly #all = new Set<PoolPage>();
  /** The pool cannot grow (cap or the domain's memory). */
  #full = false;
  /** The connection is over: no more buffers, and pages given back wait for release(). */
  #closed = false;
  /** Grants last until release() (feature-persistent negotiated); set when the disk connects. */
  persistent = false;

  constructor(o: PagePoolOptions) {
    this.#o = o;
  }

  /** `n` free pages, growing the pool as needed; null when it cannot grow that far. */
  take(n: number): PoolPage[] | null {
    while (this.#free.length < n && !this.#full) {
      if (this.#all.size >= this.#o.maxPages) {
        this.#full = true;
        break;
      }
      try {
        const { gfn, page } = this.#o.kernel.allocPage();
        const p: PoolPage = { gfn, page: pageBytes(page), ref: -1 };
        this.#all.add(p);
        this.#free.push(p);
      } catch {
        this.#full = true;
      }
    }
    if (this.#free.length < n) return null;
    return this.#free.splice(this.#free.length - n, n);
  }

  /** Grants `p` for a request: once for good with persistent grants, else for this request. */
  grant(p: PoolPage, readonly: boolean): number {
    if (p.ref >= 0) return p.ref;
    p.ref = this.#o.kernel.grantAccess(this.#o.backendId, p.gfn, this.persistent ? false : readonly);
    return p.ref;
  }

  /** Returns pages to the pool; without persistent grants their grants end first. */
  put(pages: readonly PoolPage[]): void {
    for (const p of pages) {
      if (!this.persistent && p.ref >= 0) {
        if (!this.#o.kernel.endAccess(p.ref)) {
          // The backend still maps it: never reuse the page (gnttab_end_foreign_access's leak).
          this.#o.log(`grant ${p.ref} still in use, page kept aside`);
          this.#all.delete(p);
          continue;
        }
        p.ref = -1;
      }
      this.#free.push(p);
    }
  }

  /** An IoBuffer's pages after a request: without persistent grants their grants end; they stay the caller's. */
  unshare(pages: readonly PoolPage[]): void {
    if (this.persistent) return;
    for (const p of pages) {
      if (p.ref >= 0 && this.#o.kernel.endAccess(p.ref)) p.ref = -1;
    }
  }

  /** Takes `n` pages out of the pool for good, for an IoBuffer (null: no room, or closed). */
  takeBuffer(n: number): PoolPage[] | null {
    if (this.#closed) return null;
    return this.take(n);
  }

  /** An IoBuffer's pages come back: into the pool, unless the connection is over. */
  returnBuffer(pages: readonly PoolPage[]): void {
    if (this.#closed) return; // release() frees them with the rest
    this.put(pages);
  }

  /** Every page of the pool, with its grant ref (-1: none): what a save keeps to end them. */
  pages(): { gfn: number; ref: number }[] {
    return [...this.#all].map((p) => ({ gfn: p.gfn, ref: p.ref }));
  }

  /** The connection is over: pages in flight or in buffers stay out until release(). */
  close(): void {
    this.#closed = true;
  }

  /**
   * Ends every page's grant and frees it, once the backend no longer maps it. Returns false if
   * some grant is still mapped (call again later).
   */
  release(): boolean {
    const k = this.#o.kernel;
    let all = true;
    for (const p of this.#all) {
      if (p.ref >= 0) {
        if (!k.endAccess(p.ref)) {
          all = false;
          continue;
        }
        p.ref = -1;
      }
      k.freePage(p.gfn);
      this.#all.delete(p);
    }
    this.#free.length = 0;
    return all;
  }
}

/** An IoBuffer: pool pages of one connection, the caller's until free(). */
export class PageBuffer implements IoBuffer {
  readonly pool: PagePool;
  readonly poolPages: readonly PoolPage[];
  readonly byteLength: number;
  readonly pages: readonly Uint8Array[];
  freed = false;
  constructor(pool: PagePool, pages: PoolPage[], bytes: number) {
    this.pool = pool;
    this.poolPages = pages;
    this.byteLength = bytes;
    this.pages = pages.map((p) => p.page);
  }
  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.pool.returnBuffer(this.poolPages);
  }
}
