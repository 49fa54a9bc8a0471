/**
 * Xen's `public/xen.h`: the page size and the reserved domids, one definition for every layer.
 */

/** Guest pages and grant frames are 4 KiB, whatever the host's page size (`XEN_PAGE_SIZE`). */
export const XEN_PAGE_SIZE = 4096;

/**
 * The bytes of a guest page (a page the kernel allocated, or a grant mapped) as a fixed-length view.
 * A domain's pages are growable SharedArrayBuffers that never grow (src/hv/page.ts: page-aligned
 * memory); a view made without a length on one tracks the buffer's length, and V8 indexes such
 * views several times slower (docs/platform.md). Make views of a page with a length, or with this.
 */
export function pageBytes(page: SharedArrayBuffer): Uint8Array {
  return new Uint8Array(page, 0, page.byteLength);
}

/** `DOMID_FIRST_RESERVED`: domids from here on are special, never a domain's. */
export const DOMID_FIRST_RESERVED = 0x7ff0;

/** `DOMID_SELF`: the caller itself, where an op takes a domid. */
export const DOMID_SELF = 0x7ff0;

/** `DOMID_INVALID`. */
export const DOMID_INVALID = 0x7ff4;

/** A domain's domid: an integer below DOMID_FIRST_RESERVED. */
export function isDomid(domid: number): boolean {
  return Number.isInteger(domid) && domid >= 0 && domid < DOMID_FIRST_RESERVED;
}
