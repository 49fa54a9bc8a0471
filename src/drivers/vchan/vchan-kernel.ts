/**
 * A vchan end's platform in a xenlab domain: libxengntshr, libxengnttab, libxenevtchn and
 * libxenstore as the domain's kernel gives them (grants, unmap notifications, event channels,
 * its XenStore ring).
 *
 * A shared page the peer still maps when we unshare it cannot be taken back at once
 * (gnttab_end_foreign_access fails while it is mapped); as Linux's gntalloc defers the free, the
 * page stays granted and a later unshare or close retries it.
 */
import { HypercallError, type Kernel } from "../../kernel/kernel.ts";
import { pageBytes } from "../../xen/xen.ts";
import { VchanSetupError } from "./errors.ts";
import type { UnmapNotify, VchanPlatform, VchanXsEntry } from "./vchan.ts";

const ENOMEM = 12;
const ENOSPC = 28;

export class KernelVchanPlatform implements VchanPlatform {
  readonly domid: number;
  readonly #k: Kernel;
  /** Our shares: ref → gfn, and whether an unmap notification is armed on it. */
  readonly #shares = new Map<number, { gfn: number; notify: boolean }>();
  /** Unshared pages the peer still mapped: retried later. */
  readonly #deferred = new Map<number, number>();

  constructor(k: Kernel) {
    this.#k = k;
    this.domid = k.domid;
  }

  allocUnbound(peer: number): number {
    return this.#k.allocUnbound(peer);
  }

  bindInterdomain(peer: number, port: number): number {
    return this.#k.bindInterdomain(peer, port);
  }

  closePort(port: number): void {
    this.#k.closePort(port);
  }

  notify(port: number): void {
    this.#k.notify(port);
  }

  onEvent(port: number, fn: () => void): void {
    this.#k.bindEvent(port, fn);
  }

  block(timeoutMs: number): void {
    this.#k.events.block(timeoutMs);
  }

  sharePage(peer: number, notify?: UnmapNotify): { ref: number; page: Uint8Array } {
    const k = this.#k;
    let gfn: number;
    let page: SharedArrayBuffer;
    try {
      ({ gfn, page } = k.allocPage());
    } catch (e) {
      if (!(e instanceof HypercallError && e.errno === ENOMEM)) throw e;
      throw new VchanSetupError(
        `Cannot share a vchan page: domain ${k.domid} is out of memory (ENOMEM, ${k.startInfo.maxPages} pages); give it more memory or ask for smaller rings`,
      );
    }
    let ref: number;
    try {
      ref = k.grantAccess(peer, gfn);
    } catch (e) {
      k.freePage(gfn);
      if (!(e instanceof HypercallError && e.errno === ENOSPC)) throw e;
      throw new VchanSetupError(
        `Cannot share a vchan page: domain ${k.domid} has no free grant ref (ENOSPC, ${k.grantTable.nrEntries} in its table); close other vchans or devices`,
      );
    }
    if (notify !== undefined) this.#k.setShareNotify(ref, notify.offset, notify.port);
    this.#shares.set(ref, { gfn, notify: notify !== undefined });
    return { ref, page: pageBytes(page) };
  }

  unsharePage(ref: number): void {
    const s = this.#shares.get(ref);
    if (s === undefined) return;
    this.#shares.delete(ref);
    if (s.notify) this.#k.endShareNotify(ref, true);
    this.#deferred.set(ref, s.gfn);
    this.#retryDeferred();
  }

  mapPage(
    peer: number,
    ref: number,
    writable: boolean,
    notify?: UnmapNotify,
  ): { handle: number; page: Uint8Array } {
    const m = this.#k.mapGrant(peer, ref, !writable);
    if (notify !== undefined) {
      try {
        this.#k.setUnmapNotify(m.handle, notify.offset, notify.port);
      } catch (e) {
        this.#k.unmapGrant(m.handle);
        throw e;
      }
    }
    return { handle: m.handle, page: pageBytes(m.page) };
  }

  unmapPage(handle: number): void {
    this.#k.unmapGrant(handle);
  }

  xsRead(path: string): Promise<string | undefined> {
    return this.#k.xs.tryRead(path);
  }

  async xsWrite(entries: readonly VchanXsEntry[]): Promise<void> {
    await this.#k.xs.transaction(async (t) => {
      for (const e of entries) {
        await t.write(e.path, e.value);
        await t.setPerms(e.path, e.perms);
      }
    });
  }

  async xsRm(path: string): Promise<void> {
    await this.#k.xs.rm(path);
  }

  /** Pages unshared while the peer still mapped them, not yet freed. */
  get deferred(): number {
    this.#retryDeferred();
    return this.#deferred.size;
  }

  #retryDeferred(): void {
    for (const [ref, gfn] of this.#deferred) {
      if (!this.#k.endAccess(ref)) continue;
      this.#deferred.delete(ref);
      this.#k.freePage(gfn);
    }
  }
}
