/**
 * What passes between the hypervisor (main thread) and a domain's worker: the boot record, the
 * hypercall names, and the messages a kernel posts to its host. Types and constants only, so both
 * sides import it without pulling in the other's code.
 *
 * The boot record is the domain's `start_info`: its domid and name, the pages it starts with
 * (by gfn), its grant table frames, its event-channel memory, the gfn and event channel of its
 * XenStore and console pages, and the two channels to the hypervisor (hypercalls and the
 * scheduler word). Nothing in it is another domain's.
 */
import type { MessagePort } from "node:worker_threads";
import type { DomainEventsBoot } from "./evtchn-abi.ts";

/** The scheduler word: written by the hypervisor, waited on by the domain at delivery points. */
/**
 * The words of DomainBoot.pollers: threads polling now, how many may poll now, and the domain
 * threads whose event loop is awake now (working or polling, not asleep).
 */
export const POLLERS = { polling: 0, limit: 1, awake: 2, bytes: 12 } as const;

export const SCHED = { running: 0, paused: 1, dying: 2 } as const;

export interface DomainBoot {
  readonly domid: number;
  readonly name: string;
  /** Dom0 only: privileged hypercalls and a privileged XenStore connection. */
  readonly privileged: boolean;
  /** The pages the builder populated, by gfn (the others are holes until populated). */
  readonly pages: ReadonlyMap<number, SharedArrayBuffer>;
  /** Most pages the domain may have (its memory size). */
  readonly maxPages: number;
  readonly grantFrames: readonly SharedArrayBuffer[];
  /** vCPU 0's event-channel boot record (its MessagePort goes in the transfer list). */
  readonly events: DomainEventsBoot;
  readonly hypercall: { readonly port: MessagePort; readonly control: SharedArrayBuffer };
  /** One int32: SCHED.*. */
  readonly sched: SharedArrayBuffer;
  /** start_info's store_mfn and store_evtchn. */
  readonly store: { readonly gfn: number; readonly port: number };
  /** start_info's console.domU.mfn and evtchn. */
  readonly console: { readonly gfn: number; readonly port: number };
  /** Monotonic time (performance.timeOrigin + now) of the domain's creation: dmesg's zero. */
  readonly bootTime: number;
  /** Modules to load at boot, as `insmod` would (module URLs). */
  readonly modules: readonly string[];
  /** The longest halt-polling window of the kernel's event loop, µs; 0: never poll. */
  readonly haltPollUs: number;
  /**
   * Int32s shared by every domain (POLLERS): the threads halt-polling now, how many may poll now
   * (the host lowers it to 0 while the machine's cores are all wanted), and the domain threads
   * awake now.
   */
  readonly pollers: SharedArrayBuffer;
  /**
   * Set when the domain is a restored one (`xenlab restore`, a migration's receiver): its pages
   * are the saved ones, and instead of booting its modules afresh the kernel loads each saved
   * module again and hands it what it saved (docs/save-format.md).
   */
  readonly restore?: KernelImage;
}

/** A module as the kernel saved it at suspend: how to load it again and what it asked to keep. */
export interface SavedModule {
  readonly name: string;
  readonly url: string;
  readonly args: readonly string[];
  /** What the module's `save()` returned; null: it has none (it is loaded anew with `init`). */
  readonly state: Uint8Array | null;
}

/**
 * What a kernel keeps across save and restore beyond its pages. Linux keeps a driver's state in
 * guest memory, which the save file carries; a worker's heap is not guest memory, so each module
 * and each kernel subsystem (XenBus) puts what it must keep into bytes at suspend.
 */
export interface KernelImage {
  readonly modules: readonly SavedModule[];
  /** By subsystem name (`xenbus`). */
  readonly subsystems: Readonly<Record<string, Uint8Array>>;
}

/**
 * Hypercalls a domain may make, with their arguments. Each returns a number (0 or a port on
 * success, a negative errno or GNTST_* on failure) unless noted.
 */
export interface Hypercalls {
  evtchn_alloc_unbound(dom: number, remoteDom: number): number;
  evtchn_bind_interdomain(remoteDom: number, remotePort: number): number;
  evtchn_close(port: number): number;
  evtchn_bind_vcpu(port: number, vcpu: number): number;
  evtchn_status(dom: number, port: number): unknown;
  /** Returns `{ status, handle, page, readonly, gfn }` or `{ status }` (GNTST_*). */
  grant_map(flags: number, ref: number, dom: number): unknown;
  grant_unmap(handle: number): number;
  grant_copy(op: unknown): number;
  /** gntdev's SET_UNMAP_NOTIFY on a mapping: on unmap or death, zero byte `offset`, signal `port`. */
  grant_set_unmap_notify(handle: number, offset: number, port: number): number;
  /** gntalloc's SET_UNMAP_NOTIFY on a page the caller shares in `ref`. */
  gntshr_set_notify(ref: number, offset: number, port: number): number;
  /** Ends the share's notification on `ref`, firing it when `fire` is true (the share is freed). */
  gntshr_end_notify(ref: number, fire: boolean): number;
  /** XENMEM_populate_physmap for one page: `{ gfn, page }`, or a negative errno. */
  memory_populate(): unknown;
  /** XENMEM_decrease_reservation for one page. */
  memory_release(gfn: number): number;
  /**
   * SCHEDOP_shutdown(SHUTDOWN_suspend) with what the kernel keeps: the vCPU stops here while the
   * toolstack saves the domain. Returns 1 when the domain goes on where it was (a checkpoint, or
   * a cancelled save or migration); a saved domain is destroyed and never returns.
   */
  sched_suspend(image: KernelImage): number;
}

export type HypercallName = keyof Hypercalls;

/** Messages a domain's kernel posts to the host on `parentPort`. */
export type KernelMessage =
  /** Kernel log lines, oldest first (a worker batches the lines of one turn into one message). */
  | { readonly kind: "log"; readonly lines: readonly string[] }
  | { readonly kind: "ready" }
  /** Its code is in (a restored domain's modules read): it waits for the first unpause. */
  | { readonly kind: "built" }
  | { readonly kind: "insmod-done"; readonly id: number; readonly error?: string; readonly name?: string }
  | { readonly kind: "rmmod-done"; readonly id: number; readonly error?: string }
  /** The names of the loaded modules, in load order (`lsmod`). */
  | { readonly kind: "lsmod-done"; readonly id: number; readonly names: readonly string[] }
  | { readonly kind: "call-done"; readonly id: number; readonly error?: string; readonly result?: unknown }
  | {
      readonly kind: "attribute-done";
      readonly id: number;
      readonly error?: string;
      readonly result?: unknown;
    }
  | { readonly kind: "panic"; readonly error: string };

/** Messages the host posts to a domain's kernel. */
export type HostMessage =
  | { readonly kind: "insmod"; readonly id: number; readonly url: string; readonly args: readonly string[] }
  | { readonly kind: "rmmod"; readonly id: number; readonly name: string }
  /** Reads an attribute a kernel subsystem publishes (its sysfs file, e.g. `bus/xen/drivers`). */
  | { readonly kind: "attribute"; readonly id: number; readonly path: string }
  | { readonly kind: "lsmod"; readonly id: number }
  | {
      readonly kind: "call";
      readonly id: number;
      readonly module: string;
      readonly cmd: string;
      readonly arg: unknown;
    };
