/**
 * A domain as a save file holds it (src/host/save-format.ts, docs/save-format.md): its populated
 * pages by gfn, its grant frames, and what its kernel keeps beyond them. Event channels are not
 * part of it: a restored domain binds its own again, as a Linux guest does on resume.
 */
import type { KernelImage } from "../xen/domain-boot.ts";
import { type GrantTableFrames, GTF, wordIndex } from "../xen/grant-table-abi.ts";
import { pageBytes, XEN_PAGE_SIZE } from "../xen/xen.ts";
import { newPage } from "./page.ts";

export interface DomainImage {
  readonly pages: ReadonlyMap<number, Uint8Array>;
  readonly grantFrames: readonly Uint8Array[];
  readonly kernel: KernelImage;
}

/**
 * Fills a new domain's pages and grant frames from a saved image (xc_domain_restore). The pages
 * in `fresh` (XenStore and console) stay empty: their daemons attach anew and the kernel's
 * clients start over on them. No grant entry is left reading or writing: nobody maps the new
 * domain's pages yet, so its drivers can end the grants of their old connections.
 */
export function restoreImage(
  img: DomainImage,
  pages: (SharedArrayBuffer | undefined)[],
  frames: readonly SharedArrayBuffer[],
  table: GrantTableFrames,
  fresh: readonly number[],
): void {
  if (img.grantFrames.length > frames.length)
    throw new RangeError(`Cannot restore: ${img.grantFrames.length} grant frames, at most ${frames.length}`);
  const top = Math.min(...fresh);
  for (const [gfn, bytes] of img.pages) {
    if (fresh.includes(gfn)) continue;
    if (!Number.isInteger(gfn) || gfn < 0 || gfn >= top || bytes.byteLength !== XEN_PAGE_SIZE)
      throw new RangeError(`Cannot restore page ${gfn}: outside the domain's memory`);
    const p = newPage();
    pageBytes(p).set(bytes);
    pages[gfn] = p;
  }
  img.grantFrames.forEach((f, i) => {
    new Uint8Array(frames[i]!).set(f);
  });
  for (let ref = 0; ref < table.nrEntries; ref++) {
    const w = table.words(ref);
    const i = wordIndex(ref);
    w[i] = w[i]! & ~(GTF.reading | GTF.writing);
  }
}
