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
   * Int32s shared by every domain (POLLERS): the threads halt-polling now, how many may poll
   * now, and the domain threads awake now (the hypervisor lowers it to 0 while the machine's cores are all wanted).
   */
  readonly pollers: SharedArrayBuffer;
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
  /** XENMEM_populate_physmap for one page: `{ gfn, page }`, or a negative errno. */
  memory_populate(): unknown;
  /** XENMEM_decrease_reservation for one page. */
  memory_release(gfn: number): number;
}

export type HypercallName = keyof Hypercalls;

/** Messages a domain's kernel posts to the host on `parentPort`. */
export type KernelMessage =
  /** Kernel log lines, oldest first (a worker batches the lines of one turn into one message). */
  | { readonly kind: "log"; readonly lines: readonly string[] }
  | { readonly kind: "ready" }
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
