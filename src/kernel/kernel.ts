/**
 * The domain kernel: what runs inside a domain's worker and what a driver module gets. It holds
 * only the domain's own pages, its grant frames, its event memory and the pages grant maps hand
 * it; every other resource is a hypercall to the hypervisor (the main thread).
 *
 * A driver module is an ES module exporting `name`, `init(kernel, args)` and optionally
 * `exit(kernel)`, like a Linux module's module_init/module_exit, and `call(kernel, cmd, arg)`
 * for requests from the host (an ioctl):
 *
 *   export const name = "alice_front";
 *   export function init(k: Kernel) { k.printk("DomU: Alice_front inited!"); }
 *
 * The kernel log (`printk`) carries dmesg's timestamps, seconds since the domain was created:
 * `[    0.012345] DomU: Alice_front inited!`.
 */

import { errorMessage } from "../lib/errors.ts";
import { displayPath, loadModule } from "../lib/module-loader.ts";
import {
  type DomainBoot,
  type Hypercalls,
  type KernelImage,
  type KernelMessage,
  type SavedModule,
  SCHED,
} from "../xen/domain-boot.ts";
import {
  GNTMAP,
  GNTST,
  GNTST_MESSAGES,
  GrantTableFrames,
  grantForeignAccess,
} from "../xen/grant-table-abi.ts";
import { HypercallClient } from "../xen/hypercall.ts";
import { pageBytes } from "../xen/xen.ts";
import { XsClient } from "../xenstore/client.ts";
import { RingClientChannel } from "../xenstore/transport-ring.ts";
import { EventChannelUpcall, type EventHandler } from "./evtchn.ts";
import { endForeignAccess, GrantRefAllocator } from "./grant-table.ts";
import { ConsoleFront } from "./hvc.ts";

/** A loaded driver module's exports. */
export interface KernelModule {
  readonly name?: string;
  init(kernel: Kernel, args: readonly string[]): void | Promise<void>;
  exit?(kernel: Kernel): void | Promise<void>;
  /**
   * A request from the host to the module (an ioctl on its device, as a tool in dom0 would
   * make): `Hypervisor.call(domid, module, cmd, arg)` lands here. The argument and the result
   * are structured-cloned between threads.
   */
  call?(kernel: Kernel, cmd: string, arg: unknown): unknown;
  /**
   * At suspend, after its drivers' `suspend` callbacks: what the module must keep to go on in a
   * restored domain (its worker's heap is not saved; docs/writing-a-driver.md). Undefined: nothing.
   * Synchronous: every module and subsystem is saved in one turn, right before the vCPU stops, so
   * that no I/O completes between one's snapshot and another's (Linux's stop_machine).
   */
  save?(kernel: Kernel): Uint8Array | undefined;
  /**
   * In a restored domain, instead of `init`: the module starts again from what `save` returned.
   * A module without `restore`, or that saved nothing, is loaded with `init`.
   */
  restore?(kernel: Kernel, state: Uint8Array, args: readonly string[]): void | Promise<void>;
}

/** A kernel subsystem's part in a save (XenBus: its devices and their drivers' state). */
export interface SuspendHook {
  /** Before the modules save: the drivers' suspend callbacks. */
  suspend(): Promise<void>;
  /** What the subsystem keeps (synchronous, as a module's `save`), back from `Kernel.restored(name)`. */
  save(): Uint8Array | undefined;
}

/** A foreign page mapped through a grant. */
export interface MappedPage {
  readonly handle: number;
  readonly page: SharedArrayBuffer;
  readonly readonly: boolean;
}

/** A failed grant operation, with Xen's GNTST_* status. */
export class GrantOpError extends Error {
  readonly status: number;
  constructor(op: string, status: number) {
    super(`${op}: ${GNTST_MESSAGES[-status] ?? `status ${status}`}`);
    this.name = "GrantOpError";
    this.status = status;
  }
}

/** A failed event-channel or memory hypercall, with Xen's errno. */
export class HypercallError extends Error {
  readonly errno: number;
  constructor(op: string, errno: number) {
    super(`${op} failed: errno ${errno}`);
    this.name = "HypercallError";
    this.errno = errno;
  }
}

type Post = (m: KernelMessage) => void;

/** Kernel log lines a domain keeps for its own `dmesg`. */
const KERNEL_LOG_LINES = 1024;

export class Kernel {
  readonly domid: number;
  readonly name: string;
  readonly privileged: boolean;
  #xs: XsClient;
  /** The domain's XenStore ring channel (for reconnection). */
  readonly xsChannel: RingClientChannel;
  readonly events: EventChannelUpcall;
  readonly grantTable: GrantTableFrames;
  readonly grantRefs: GrantRefAllocator;
  /** The PV console, hvc0 (guests; dom0's console is Xen's, the host log). */
  readonly console: ConsoleFront | null = null;
  readonly #boot: DomainBoot;
  readonly #pages = new Map<number, SharedArrayBuffer>();
  readonly #hc: HypercallClient;
  readonly #sched: Int32Array;
  readonly #post: Post;
  readonly #modules = new Map<string, { mod: KernelModule; url: string; args: readonly string[] }>();
  readonly #suspendHooks = new Map<string, SuspendHook>();
  /** The subsystems of higher layers (XenBus), one each, keyed by their class. */
  readonly #subsystems = new Map<abstract new (...args: never[]) => unknown, unknown>();
  /** What subsystems publish for the toolstack to read, by path, as Linux's sysfs files. */
  readonly #attributes = new Map<string, () => unknown>();
  /** The kernel's own log buffer (what `dmesg` inside the domain reads). */
  readonly #log: string[] = [];
  #loads = 0;

  constructor(boot: DomainBoot, post: Post) {
    this.#boot = boot;
    this.domid = boot.domid;
    this.name = boot.name;
    this.privileged = boot.privileged;
    this.#post = post;
    for (const [gfn, page] of boot.pages) this.#pages.set(gfn, page);
    this.#hc = new HypercallClient(boot.hypercall.port, boot.hypercall.control);
    this.#sched = new Int32Array(boot.sched);
    this.grantTable = new GrantTableFrames(boot.grantFrames);
    this.grantRefs = new GrantRefAllocator(this.grantTable.nrEntries);
    // A restored domain's grant entries are its own memory: the refs its drivers had stay
    // theirs until they end them on resume.
    if (boot.restore !== undefined) this.grantRefs.reserveGranted(this.grantTable);
    this.events = new EventChannelUpcall(boot.events, {
      onError: (err, port) => this.printk(`evtchn: handler of port ${port} failed: ${errorMessage(err)}`),
      haltPollUs: boot.haltPollUs,
      pollers: new Int32Array(boot.pollers),
      doze: !boot.privileged,
    });
    const storePage = this.page(boot.store.gfn);
    this.xsChannel = new RingClientChannel({
      page: pageBytes(storePage),
      notify: () => this.events.send(boot.store.port),
    });
    this.bindEvent(boot.store.port, () => this.xsChannel.onKick());
    this.#xs = new XsClient(this.xsChannel);
    if (!boot.privileged) {
      const con = new ConsoleFront({
        page: pageBytes(this.page(boot.console.gfn)),
        notify: () => this.events.send(boot.console.port),
      });
      this.console = con;
      this.bindEvent(boot.console.port, () => con.onKick());
    }
  }

  /** The domain's XenStore connection over its ring (a new one after reconnectXenstore()). */
  get xs(): XsClient {
    return this.#xs;
  }

  /**
   * Asks xenstored to reset the ring (XENSTORE_SERVER_FEATURE_RECONNECTION): the current
   * client's requests fail, its watches and transactions are gone, and a new client takes over.
   */
  async reconnectXenstore(): Promise<void> {
    await this.xsChannel.reconnect();
    this.#xs = new XsClient(this.xsChannel);
  }

  /** The domain's start_info: XenStore and console page and port. */
  get startInfo(): Pick<DomainBoot, "store" | "console" | "maxPages"> {
    return { store: this.#boot.store, console: this.#boot.console, maxPages: this.#boot.maxPages };
  }

  /** Seconds since the domain was created, dmesg's clock. */
  uptime(): number {
    return (performance.timeOrigin + performance.now() - this.#boot.bootTime) / 1000;
  }

  /** Writes a line to the kernel log, timestamped as dmesg prints it. */
  printk(msg: string): void {
    const line = `${dmesgStamp(this.uptime())} ${msg}`;
    this.#post({ kind: "log", lines: [line] });
    this.#log.push(line);
    if (this.#log.length > KERNEL_LOG_LINES) this.#log.splice(0, this.#log.length - KERNEL_LOG_LINES);
    // As Linux's hvc console does with printk: the line goes to hvc0 too.
    this.console?.print(`${line}\n`);
  }

  /** The kernel log as the domain itself keeps it, oldest first. */
  dmesg(): readonly string[] {
    return [...this.#log];
  }

  // ------------------------------------------------------------------ memory

  /** One of the domain's own pages by gfn (it must be populated). */
  page(gfn: number): SharedArrayBuffer {
    const p = this.#pages.get(gfn);
    if (p === undefined) throw new RangeError(`Cannot access gfn ${gfn}: not a page of domain ${this.domid}`);
    return p;
  }

  /** A fresh zeroed page (XENMEM_populate_physmap); fails with ENOMEM past the domain's memory. */
  allocPage(): { gfn: number; page: SharedArrayBuffer } {
    const r = this.#call("memory_populate");
    if (typeof r === "number") throw new HypercallError("memory_populate", -r);
    const { gfn, page } = r as { gfn: number; page: SharedArrayBuffer };
    this.#pages.set(gfn, page);
    return { gfn, page };
  }

  /** Gives a page back (XENMEM_decrease_reservation). */
  freePage(gfn: number): void {
    this.page(gfn);
    const r = this.#call("memory_release", gfn) as number;
    if (r < 0) throw new HypercallError("memory_release", -r);
    this.#pages.delete(gfn);
  }

  // ------------------------------------------------------------------ grants

  /** `gnttab_grant_foreign_access`: lets `domid` map our page `gfn`; returns the ref. */
  grantAccess(domid: number, gfn: number, readonly = false): number {
    this.page(gfn);
    const ref = this.grantRefs.alloc();
    if (ref === undefined) throw new HypercallError("gnttab_grant_foreign_access", 28 /* ENOSPC */);
    grantForeignAccess(this.grantTable, ref, domid, gfn, readonly);
    return ref;
  }

  /** `gnttab_end_foreign_access`: false (ref kept) while the grantee still maps the page. */
  endAccess(ref: number): boolean {
    if (!endForeignAccess(this.grantTable, ref)) return false;
    this.grantRefs.free(ref);
    return true;
  }

  /** GNTTABOP_map_grant_ref of `dom`'s `ref`: the one granted page, or a GrantOpError. */
  mapGrant(dom: number, ref: number, readonly = false): MappedPage {
    const flags = GNTMAP.host_map | (readonly ? GNTMAP.readonly : 0);
    const r = this.#call("grant_map", flags, ref, dom) as {
      status: number;
      handle?: number;
      page?: SharedArrayBuffer;
    };
    if (r.status !== GNTST.okay) throw new GrantOpError(`map of ref ${ref} of domain ${dom}`, r.status);
    return { handle: r.handle!, page: r.page!, readonly };
  }

  /** GNTTABOP_unmap_grant_ref. */
  unmapGrant(handle: number): void {
    const st = this.#call("grant_unmap", handle) as number;
    if (st !== GNTST.okay) throw new GrantOpError(`unmap of handle ${handle}`, st);
  }

  /**
   * gntdev's SET_UNMAP_NOTIFY on mapping `handle` (writable): when it is unmapped, or this domain
   * dies, byte `offset` of the page becomes 0 and this domain signals its `port`.
   */
  setUnmapNotify(handle: number, offset: number, port: number): void {
    const st = this.#call("grant_set_unmap_notify", handle, offset, port) as number;
    if (st !== GNTST.okay) throw new GrantOpError(`unmap notify on handle ${handle}`, st);
  }

  /**
   * gntalloc's SET_UNMAP_NOTIFY on our page shared in `ref`: when the share ends
   * (`endShareNotify(ref, true)`) or this domain dies, byte `offset` becomes 0 and this domain
   * signals its `port`.
   */
  setShareNotify(ref: number, offset: number, port: number): void {
    const st = this.#call("gntshr_set_notify", ref, offset, port) as number;
    if (st !== GNTST.okay) throw new GrantOpError(`unmap notify on ref ${ref}`, st);
  }

  /** Ends the notification set on `ref`, firing it first when `fire`. */
  endShareNotify(ref: number, fire: boolean): void {
    const st = this.#call("gntshr_end_notify", ref, fire) as number;
    if (st !== GNTST.okay) throw new GrantOpError(`end of unmap notify on ref ${ref}`, st);
  }

  // ------------------------------------------------------------------ event channels

  /** EVTCHNOP_alloc_unbound: a port of ours that `remoteDom` may bind. */
  allocUnbound(remoteDom: number): number {
    return this.#port("evtchn_alloc_unbound", this.#call("evtchn_alloc_unbound", this.domid, remoteDom));
  }

  /** EVTCHNOP_bind_interdomain to `remoteDom`'s `remotePort`; returns our port. */
  bindInterdomain(remoteDom: number, remotePort: number): number {
    return this.#port(
      "evtchn_bind_interdomain",
      this.#call("evtchn_bind_interdomain", remoteDom, remotePort),
    );
  }

  /** EVTCHNOP_close; the handler goes too. */
  closePort(port: number): void {
    this.events.unbind(port);
    this.#port("evtchn_close", this.#call("evtchn_close", port));
  }

  /** Runs `handler` on each event on `port`, in this domain's upcall (a delivery point). */
  bindEvent(port: number, handler: EventHandler): void {
    this.events.bind(port, (p) => {
      this.schedulePoint();
      handler(p);
    });
  }

  /** EVTCHNOP_send. */
  notify(port: number): void {
    const r = this.events.send(port);
    if (r < 0) throw new HypercallError(`evtchn_send on port ${port}`, -r);
  }

  // ------------------------------------------------------------------ modules

  /**
   * Loads and initialises a module (`insmod`); returns its name. Each load is a fresh instance of
   * the module and of its own imports, as insmod after rmmod loads the module anew; what it
   * shares with the kernel (xenlab's modules, packages) stays one instance (lib/module-hooks.ts).
   */
  async insmod(url: string, args: readonly string[] = []): Promise<string> {
    return this.#load(url, args, null);
  }

  /** In a restored domain: loads a saved module again and gives it what it kept (see KernelModule). */
  restoreModule(m: SavedModule): Promise<string> {
    return this.#load(m.url, m.args, m.state);
  }

  async #load(url: string, args: readonly string[], state: Uint8Array | null): Promise<string> {
    const mod = (await loadModule(url, ++this.#loads)) as Partial<KernelModule>;
    const path = displayPath(url);
    if (typeof mod.init !== "function") throw new TypeError(`Cannot load ${path}: it exports no init()`);
    const name = mod.name ?? path.replace(/^.*\//, "").replace(/\.[^.]*$/, "");
    if (this.#modules.has(name)) throw new Error(`Cannot load ${name}: already loaded`);
    if (state !== null && typeof mod.restore === "function") await mod.restore(this, state, args);
    else await mod.init(this, args);
    this.#modules.set(name, { mod: mod as KernelModule, url, args: [...args] });
    return name;
  }

  // ------------------------------------------------------------------ suspend

  /** A subsystem takes part in saves under `name` (one each; see SuspendHook). */
  onSuspend(name: string, hook: SuspendHook): void {
    this.#suspendHooks.set(name, hook);
  }

  /** In a restored domain: what subsystem `name` saved; undefined otherwise. */
  restored(name: string): Uint8Array | undefined {
    return this.#boot.restore?.subsystems[name];
  }

  /** Linux's dpm_suspend_start: each subsystem's suspend (XenBus: the drivers' callbacks). */
  async suspendDevices(): Promise<void> {
    for (const h of this.#suspendHooks.values()) await h.suspend();
  }

  /**
   * The rest of do_suspend, in one turn: what each module and subsystem keeps (the image), then
   * SCHEDOP_shutdown(suspend) at once, so nothing runs between the snapshots and the stop. The
   * vCPU stops in the hypercall until the toolstack decides. Returns true when the domain goes on
   * where it was (a checkpoint or a cancelled save); a saved domain is destroyed there and never
   * returns.
   */
  suspendAndSave(): boolean {
    const modules: SavedModule[] = [];
    for (const [name, m] of this.#modules) {
      modules.push({ name, url: m.url, args: m.args, state: m.mod.save?.(this) ?? null });
    }
    const subsystems: Record<string, Uint8Array> = {};
    for (const [name, h] of this.#suspendHooks) {
      const b = h.save();
      if (b !== undefined) subsystems[name] = b;
    }
    const image: KernelImage = { modules, subsystems };
    const r = this.#call("sched_suspend", image);
    if (typeof r === "number" && r < 0) throw new HypercallError("sched_suspend", -r);
    return r === 1;
  }

  /** Runs a module's exit and forgets it (`rmmod`). */
  async rmmod(name: string): Promise<void> {
    const mod = this.#modules.get(name);
    if (mod === undefined) throw new Error(`Cannot unload ${name}: not loaded`);
    await mod.mod.exit?.(this);
    this.#modules.delete(name);
  }

  /** A host request to a loaded module (its `call` export). */
  async call(module: string, cmd: string, arg: unknown): Promise<unknown> {
    const mod = this.#modules.get(module)?.mod;
    if (mod === undefined) throw new Error(`No module ${module} loaded`);
    if (typeof mod.call !== "function") throw new Error(`Module ${module} takes no calls`);
    return mod.call(this, cmd, arg);
  }

  get modules(): string[] {
    return [...this.#modules.keys()];
  }

  /**
   * This kernel's one instance of a subsystem of a higher layer (XenBus), made by `make` the first
   * time it is asked for, as Linux initialises a subsystem once at boot. The kernel holds it for
   * the modules that share it and knows nothing else of it.
   */
  subsystem<T>(cls: abstract new (...args: never[]) => T, make: () => T): T {
    if (!this.#subsystems.has(cls)) this.#subsystems.set(cls, make());
    return this.#subsystems.get(cls) as T;
  }

  /**
   * Publishes a read-only attribute at `path` (as a sysfs file: `bus/xen/drivers` lists the
   * frontend drivers XenBus has), read afresh by `read` each time the host asks.
   */
  expose(path: string, read: () => unknown): void {
    this.#attributes.set(path, read);
  }

  /** The value of the attribute at `path`; undefined when nothing publishes it. */
  attribute(path: string): unknown {
    return this.#attributes.get(path)?.();
  }

  /**
   * A delivery point: while the hypervisor has the domain paused, the vCPU sleeps here.
   * Cooperative pause (see hypervisor.ts).
   */
  schedulePoint(): void {
    while (Atomics.load(this.#sched, 0) === SCHED.paused) Atomics.wait(this.#sched, 0, SCHED.paused);
  }

  #call(op: keyof Hypercalls, ...args: unknown[]): unknown {
    return this.#hc.call(op, ...args);
  }

  #port(op: string, r: unknown): number {
    const n = typeof r === "number" ? r : Number.NaN;
    if (!(n >= 0)) throw new HypercallError(op, -n);
    return n;
  }
}

/** dmesg's `[    1.234567]`: seconds, right-aligned in 5, then 6 decimals. */
export function dmesgStamp(seconds: number): string {
  const us = Math.max(0, Math.round(seconds * 1e6));
  const s = Math.floor(us / 1e6);
  return `[${String(s).padStart(5, " ")}.${String(us % 1e6).padStart(6, "0")}]`;
}
