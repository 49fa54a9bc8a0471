/**
 * The hypervisor: domains, their memory, grant tables, event channels and hypercalls.
 *
 * A domain is a worker thread with a domid, a name and its own memory: 4 KiB pages, each its own
 * SharedArrayBuffer, indexed by gfn. The main thread is the hypervisor; it alone holds every
 * domain's pages. A worker is given, at boot, the pages the builder populated (its XenStore and
 * console pages) and its grant frames; later only pages it populates itself (XENMEM
 * populate_physmap, `memory_populate`) and pages a grant map returns (`grant_map`, one page).
 * A worker has no other way to reach memory: workers share nothing but what is posted to them,
 * and the only code posting SharedArrayBuffers to a worker is this file's hypercall handler and
 * boot record (the event-memory hand-off of evtchn.ts posts event bitmaps, never pages).
 *
 * Life cycle, as Xen's `domain_create` + the domain builder + `xl`:
 *
 *   create()   domid, pages, grant frames (ref 0 → console page, ref 1 → XenStore page, both
 *              granted to dom0 as the builder does), event channels with the store and console
 *              ports allocated unbound towards dom0, the worker spawned. The domain is created
 *              PAUSED: its worker waits on the scheduler word before running any kernel code.
 *   unpause()  the worker runs. The toolstack introduces the domain to XenStore before this, so
 *              the guest's first request finds a daemon attached to its ring.
 *   pause()    cooperative: the kernel stops at its next delivery point (before an upcall) and
 *              sleeps until unpaused. A worker cannot be preempted mid-handler.
 *   destroy()  the worker is terminated, then everything the domain held is released: what it
 *              mapped (Xen's gnttab_release_mappings), its event channels (peers see their ports
 *              revert to unbound), and `onDestroyed` tells the toolstack, which has XenStore fire
 *              @releaseDomain and remove the domain's nodes. Pages other domains still map stay
 *              alive in their mappings until unmapped, as a dying domain's pages do in Xen.
 */
import { availableParallelism } from "node:os";
import { MessageChannel, type Worker } from "node:worker_threads";
import type { Logger } from "../lib/log.ts";
import { siblingModule, spawnWorker } from "../lib/spawn.ts";
import { Tracer } from "../lib/tracer.ts";
import {
  type DomainBoot,
  type HostMessage,
  type HypercallName,
  type KernelImage,
  type KernelMessage,
  POLLERS,
  SCHED,
} from "../xen/domain-boot.ts";
import { XEN_ERRNO } from "../xen/evtchn-abi.ts";
import { GNTTAB_RESERVED, GrantTableFrames, grantForeignAccess } from "../xen/grant-table-abi.ts";
import { type HypercallRequest, HypercallServer, newControlWord } from "../xen/hypercall.ts";
import { DOMID_FIRST_RESERVED, pageBytes, XEN_PAGE_SIZE } from "../xen/xen.ts";
import { type DomainImage, restoreImage } from "./domain-image.ts";
import { EventChannels } from "./evtchn.ts";
import { type GrantDomain, GrantTables } from "./grant-table.ts";
import { newPage } from "./page.ts";

/** Default memory of a domain: 1 MiB (256 pages), populated on demand. */
const DEFAULT_MAX_PAGES = 256;
/** Grant table frames per domain: 4 frames, 2048 refs (Linux asks for more only when it runs out). */
const GRANT_FRAMES = 4;
/** Kernel log lines kept per domain (the host's `dmesg` buffer). */
const LOG_LINES = 4096;

export type { DomainImage } from "./domain-image.ts";

/** `suspended`: the guest acknowledged a save and its vCPU waits in SCHEDOP_shutdown(suspend). */
export type DomainState = "paused" | "running" | "suspended" | "crashed" | "dying";

/**
 * The hypervisor's trace events (src/lib/tracer.ts), built only while a subscriber listens: each
 * hypercall a domain made (grant map/unmap/copy, event-channel operations, memory) with its
 * result (a number: 0, a port, a handle or a negative errno; 0 when the result is a record), and
 * each change of a domain's state.
 */
export type HvTraceEvent =
  | { readonly kind: "hv-hypercall"; readonly domid: number; readonly op: string; readonly result: number }
  | {
      readonly kind: "hv-domain";
      readonly domid: number;
      readonly name: string;
      readonly state: DomainState | "destroyed";
    };

export interface CreateOptions {
  readonly name: string;
  /** Default: the next domid never used in this hypervisor's life (Xen's default), from 1. */
  readonly domid?: number;
  /** Memory size in 4 KiB pages (default 256). */
  readonly maxPages?: number;
  /** vCPUs of the event-channel model (default 1; dom0 gets 2, see README). */
  readonly vcpus?: number;
  /** Module URLs the kernel loads at boot, as `insmod` would. */
  readonly modules?: readonly string[];
  /** The longest halt-polling window of the domain's event loop, µs (default: the hypervisor's). */
  readonly haltPollUs?: number;
  /**
   * Build the domain from a saved image (xc_domain_restore): its pages and grant entries as
   * saved, except the XenStore and console pages, which start empty as their daemons attach anew,
   * and no entry marked in use (no domain maps the new domain's pages yet).
   */
  readonly restore?: DomainImage;
}

export interface DomainInfo {
  readonly domid: number;
  readonly name: string;
  readonly state: DomainState;
  readonly privileged: boolean;
  readonly vcpus: number;
  /**
   * Seconds the domain's thread has been busy: its worker's event-loop active time
   * (`worker.performance.eventLoopUtilization()`; Node 20 has no per-thread CPU clock). It counts
   * kernel and module code, halt polling, and a synchronous block in Atomics.wait; the time the
   * worker sleeps in its event loop is not counted.
   */
  readonly cpuTime: number;
  /** Pages populated now. */
  readonly pages: number;
  readonly maxPages: number;
  /** start_info's store and console pages and ports. */
  readonly store: { readonly gfn: number; readonly port: number };
  readonly console: { readonly gfn: number; readonly port: number };
}

export interface HypervisorOptions {
  readonly log: Logger;
  /** Each kernel log line (already timestamped), as the domain prints it. */
  readonly onKernelLog?: (domid: number, line: string) => void;
  /** After a domain's worker is gone and its mappings and ports are released. */
  readonly onDestroyed?: (domid: number) => void;
  /**
   * When a domain's worker ended by itself (not destroyed): `crashed` if it died of an uncaught
   * error or a kernel panic. The domain stays, its state "crashed", until the toolstack acts.
   */
  readonly onExited?: (domid: number, crashed: boolean) => void;
  /** The domain kernel's entry; default the sibling `domain-worker` module. */
  readonly workerEntry?: URL;
  /**
   * The longest halt-polling window of each domain's event loop, µs (src/kernel/evtchn.ts):
   * default HALT_POLL_US_DEFAULT; 0 turns polling off (every wait sleeps).
   */
  readonly haltPollUs?: number;
}

/**
 * The default longest window, µs: 5× KVM's x86 default (KVM_HALT_POLL_NS_DEFAULT, 200 µs), since a
 * wake-up on these VMs costs 10–90 µs, ten times bare metal's (`bench blk` sleeps per MiB read: 0.4–0.6
 * at 200 µs, 0.05 at 1000 µs).
 */
export const HALT_POLL_US_DEFAULT = 1000;

interface Dom extends GrantDomain {
  readonly domid: number;
  name: string;
  readonly privileged: boolean;
  readonly vcpus: number;
  readonly pages: (SharedArrayBuffer | undefined)[];
  readonly grantFrames: SharedArrayBuffer[];
  readonly maxPages: number;
  readonly store: { gfn: number; port: number };
  readonly console: { gfn: number; port: number };
  readonly sched: Int32Array;
  readonly worker: Worker;
  readonly hypercalls: HypercallServer;
  readonly log: string[];
  populated: number;
  state: DomainState;
  /** Resolves when the kernel says it booted (or rejects if it died first). */
  readonly ready: Promise<void>;
  /** Resolves when its worker has read in its code and waits for the first unpause. */
  readonly built: Promise<void>;
  readonly requests: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  readonly exited: Promise<void>;
  /** While suspended: what the kernel saved, and how to let its vCPU go on (1: in place). */
  suspend: { readonly image: KernelImage; readonly wake: (cancelled: number) => void } | null;
  /** Waiters for the domain's suspend (Hypervisor.suspended). */
  readonly onSuspend: Set<(image: KernelImage | Error) => void>;
}

export class Hypervisor {
  readonly events = new EventChannels();
  /** The live view's events: off, one field check per hypercall, until subscribed. */
  readonly tracer = new Tracer<HvTraceEvent>();
  readonly grants: GrantTables;
  readonly #domains = new Map<number, Dom>();
  readonly #log: Logger;
  readonly #opts: HypervisorOptions;
  /** POLLERS: domain threads halt-polling now (kernel/evtchn.ts), and how many may. */
  readonly #pollers = new Int32Array(new SharedArrayBuffer(POLLERS.bytes));
  #nextDomid = 1;
  #nextRequest = 1;

  constructor(opts: HypervisorOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.grants = new GrantTables((domid) => this.#domains.get(domid), {
      sendEvent: (domid, port) => void this.events.send(domid, port),
    });
    this.#pollers[POLLERS.limit] = availableParallelism();
  }

  /** Domain threads whose event loop is awake now: working or polling, not asleep. */
  get awakeThreads(): number {
    return Atomics.load(this.#pollers, POLLERS.awake);
  }

  /** How many domain threads may halt-poll at once (default: one per core; 0: none). */
  get pollLimit(): number {
    return Atomics.load(this.#pollers, POLLERS.limit);
  }

  set pollLimit(n: number) {
    if (!(Number.isInteger(n) && n >= 0)) throw new RangeError(`Poll limit ${n} is not an integer >= 0`);
    Atomics.store(this.#pollers, POLLERS.limit, n);
  }

  /**
   * Builds a domain and starts its worker, paused (see the module comment). Domid 0 is dom0, the
   * privileged domain; it must be created first if at all.
   */
  create(opts: CreateOptions): DomainInfo {
    const domid = opts.domid ?? this.#allocDomid();
    if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_FIRST_RESERVED) {
      throw new RangeError(`Cannot create domain ${domid}: domids are 0 to ${DOMID_FIRST_RESERVED - 1}`);
    }
    if (this.#domains.has(domid)) throw new RangeError(`Cannot create domain ${domid}: it exists`);
    const privileged = domid === 0;
    if (!privileged && !this.#domains.has(0)) {
      throw new RangeError(
        `Cannot create domain ${domid}: create dom0 first (it runs the backends and xenstored)`,
      );
    }
    const maxPages = opts.maxPages ?? DEFAULT_MAX_PAGES;
    if (!Number.isInteger(maxPages) || maxPages < 2) {
      throw new RangeError(`Cannot create domain ${domid}: needs at least 2 pages, got ${maxPages}`);
    }

    // Memory: the builder populates the console and XenStore pages at the top, as the x86 PV
    // builder puts its special pages after the kernel.
    const pages: (SharedArrayBuffer | undefined)[] = [];
    const store = { gfn: maxPages - 1, port: 0 };
    const console = { gfn: maxPages - 2, port: 0 };
    const storePage = newPage();
    const consolePage = newPage();
    pages[store.gfn] = storePage;
    pages[console.gfn] = consolePage;
    const grantFrames = Array.from({ length: GRANT_FRAMES }, () => new SharedArrayBuffer(XEN_PAGE_SIZE));
    const table = new GrantTableFrames(grantFrames);
    const restore = opts.restore;
    if (restore !== undefined) restoreImage(restore, pages, grantFrames, table, [store.gfn, console.gfn]);
    // xc_dom_gnttab_init: the two reserved refs, granted to the backend domain (dom0).
    grantForeignAccess(table, GNTTAB_RESERVED.console, 0, console.gfn, false);
    grantForeignAccess(table, GNTTAB_RESERVED.xenstore, 0, store.gfn, false);

    const vcpus = opts.vcpus ?? (privileged ? 2 : 1);
    const events = this.events.addDomain(domid, { privileged, vcpus });
    // The builder allocates both ports unbound towards dom0 (xc_evtchn_alloc_unbound).
    store.port = this.events.allocUnbound(0, domid, 0);
    console.port = this.events.allocUnbound(0, domid, 0);
    if (store.port < 0 || console.port < 0) {
      this.events.destroyDomain(domid);
      throw new Error(`Cannot create domain ${domid}: allocating its ports failed`);
    }

    const control = newControlWord();
    const { port1, port2 } = new MessageChannel();
    const sched = new Int32Array(new SharedArrayBuffer(4));
    sched[0] = SCHED.paused;
    const boot: DomainBoot = {
      domid,
      name: opts.name,
      privileged,
      pages: new Map(pages.flatMap((p, gfn) => (p === undefined ? [] : [[gfn, p] as const]))),
      maxPages,
      grantFrames,
      events,
      hypercall: { port: port2, control },
      sched: sched.buffer as SharedArrayBuffer,
      store: { ...store },
      console: { ...console },
      bootTime: performance.timeOrigin + performance.now(),
      modules: opts.modules ?? [],
      haltPollUs: opts.haltPollUs ?? this.#opts.haltPollUs ?? HALT_POLL_US_DEFAULT,
      pollers: this.#pollers.buffer as SharedArrayBuffer,
      ...(restore === undefined ? {} : { restore: restore.kernel }),
    };
    const entry = this.#opts.workerEntry ?? siblingModule(import.meta.url, "../kernel/domain-worker");
    const worker = spawnWorker(entry, boot, [events.peers, port2]);
    // Not events.once: that rejects on the worker's 'error', which comes before 'exit' on a crash.
    const exitCode = new Promise<number>((resolve) => worker.once("exit", resolve));

    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    ready.catch(() => {});
    let builtResolve!: () => void;
    const built = Promise.race([new Promise<void>((res) => (builtResolve = res)), ready]);
    built.catch(() => {});
    const d: Dom = {
      domid,
      name: opts.name,
      privileged,
      vcpus,
      pages,
      grantFrames,
      maxPages,
      store,
      console,
      sched,
      worker,
      hypercalls: new HypercallServer(port1, control, (req) => this.#hypercall(d, req)),
      log: [],
      populated: pages.filter((p) => p !== undefined).length,
      suspend: null,
      onSuspend: new Set(),
      state: "paused",
      ready,
      built,
      requests: new Map(),
      exited: exitCode.then((code) => {
        const byItself = d.state !== "dying";
        if (byItself) {
          this.#log.warn({ domid, code }, `domain ${domid} (${d.name}) exited by itself`);
          this.#kernelLog(d, `domain exited with code ${code}`);
          d.state = "crashed";
          this.#traceDomain(d);
        }
        readyReject(new Error(`Domain ${domid} exited before it was ready`));
        for (const w of d.onSuspend) w(new Error(`Domain ${domid} (${d.name}) exited before it suspended`));
        d.onSuspend.clear();
        for (const r of d.requests.values()) r.reject(new Error(`Domain ${domid} is gone`));
        d.requests.clear();
        if (byItself) this.#opts.onExited?.(domid, code !== 0);
      }),
    };
    worker.on("error", (err) => {
      this.#log.error({ domid, err: err.message }, `domain ${domid} (${d.name}) crashed`);
      this.#kernelLog(d, `Kernel panic: ${err.message}`);
    });
    worker.on("message", (m: KernelMessage) =>
      m.kind === "built" ? builtResolve() : this.#kernelMessage(d, m, readyResolve),
    );
    this.#domains.set(domid, d);
    this.#log.info({ domid, domain: opts.name }, `domain ${domid} (${opts.name}) created`);
    this.#traceDomain(d);
    return this.#info(d);
  }

  /** Lets a paused domain run (the first unpause boots its kernel). */
  unpause(domid: number): void {
    const d = this.#get(domid);
    if (d.state !== "paused") return;
    d.state = "running";
    Atomics.store(d.sched, 0, SCHED.running);
    Atomics.notify(d.sched, 0);
    this.#traceDomain(d);
  }

  /** Pauses a domain at its next delivery point (see the module comment). */
  pause(domid: number): void {
    const d = this.#get(domid);
    if (d.state !== "running") return;
    d.state = "paused";
    Atomics.store(d.sched, 0, SCHED.paused);
    this.#traceDomain(d);
  }

  /**
   * Resolves with what the domain's kernel keeps once it has suspended itself (SCHEDOP_shutdown
   * suspend, after its drivers' suspend callbacks); rejects if it ends first or on `signal`.
   */
  suspended(domid: number, signal?: AbortSignal): Promise<KernelImage> {
    const d = this.#get(domid);
    if (d.suspend !== null) return Promise.resolve(d.suspend.image);
    return new Promise((resolve, reject) => {
      const done = (r: KernelImage | Error): void => {
        d.onSuspend.delete(done);
        signal?.removeEventListener("abort", abort);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      const abort = (): void => done(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
      if (signal?.aborted) return abort();
      signal?.addEventListener("abort", abort, { once: true });
      d.onSuspend.add(done);
    });
  }

  /**
   * xc_domain_resume (fast): a suspended domain goes on where it was, its suspend hypercall
   * answering 1 (a checkpoint, or a save or migration that failed).
   */
  resumeSuspended(domid: number): void {
    const d = this.#get(domid);
    const s = d.suspend;
    if (s === null) return;
    d.suspend = null;
    d.state = "running";
    s.wake(1);
  }

  /** A suspended domain's pages and grant frames, copied, with what its kernel keeps. */
  image(domid: number): DomainImage {
    const d = this.#get(domid);
    if (d.suspend === null) throw new Error(`Cannot save domain ${domid}: it is not suspended`);
    const pages = new Map<number, Uint8Array>();
    d.pages.forEach((p, gfn) => {
      if (p !== undefined) pages.set(gfn, pageBytes(p).slice());
    });
    return {
      pages,
      grantFrames: d.grantFrames.map((f) => new Uint8Array(f).slice()),
      kernel: d.suspend.image,
    };
  }

  /** Renames a domain (libxl_domain_rename; the toolstack writes its XenStore `name`). */
  rename(domid: number, name: string): void {
    this.#get(domid).name = name;
  }

  /** Resolves once a paused domain's worker has read in its code (a restored one's modules). */
  built(domid: number): Promise<void> {
    return this.#get(domid).built;
  }

  /** Resolves once the domain's kernel has booted (run unpause() first). */
  ready(domid: number): Promise<void> {
    return this.#get(domid).ready;
  }

  /** Destroys a domain and releases all it held (see the module comment). */
  async destroy(domid: number): Promise<void> {
    const d = this.#domains.get(domid);
    if (d === undefined || d.state === "dying") return;
    d.state = "dying";
    Atomics.store(d.sched, 0, SCHED.dying);
    Atomics.notify(d.sched, 0);
    await d.worker.terminate();
    await d.exited;
    d.hypercalls.close();
    const unmapped = this.grants.releaseMappings(domid);
    this.grants.releaseShares(domid);
    this.events.destroyDomain(domid);
    this.#domains.delete(domid);
    this.#log.info({ domid, unmapped }, `domain ${domid} (${d.name}) destroyed`);
    this.#traceDomain(d, "destroyed");
    this.#opts.onDestroyed?.(domid);
  }

  /** Destroys every domain, dom0 last. */
  async shutdown(): Promise<void> {
    const ids = [...this.#domains.keys()].sort((a, b) => b - a);
    for (const id of ids) await this.destroy(id);
  }

  list(): DomainInfo[] {
    return [...this.#domains.values()].sort((a, b) => a.domid - b.domid).map((d) => this.#info(d));
  }

  info(domid: number): DomainInfo | undefined {
    const d = this.#domains.get(domid);
    return d === undefined ? undefined : this.#info(d);
  }

  /** The kernel log of a live domain, oldest first. */
  dmesg(domid: number): readonly string[] {
    return [...this.#get(domid).log];
  }

  /**
   * Loads a driver module into a running domain (`insmod`): its `init` runs inside the domain.
   * Resolves with the module's name.
   */
  insmod(domid: number, url: string, args: readonly string[] = []): Promise<string> {
    return this.#request(domid, (id) => ({ kind: "insmod", id, url, args })).then(
      (n) => (n as string | undefined) ?? url,
    );
  }

  /** Unloads a module by name (`rmmod`): its `exit` runs inside the domain. */
  async rmmod(domid: number, name: string): Promise<void> {
    await this.#request(domid, (id) => ({ kind: "rmmod", id, name }));
  }

  /** The names of the modules loaded in a domain (`lsmod`), in load order. */
  async lsmod(domid: number): Promise<string[]> {
    return [...((await this.#request(domid, (id) => ({ kind: "lsmod", id }))) as readonly string[])];
  }

  /**
   * A request to a module loaded in a domain (its `call(kernel, cmd, arg)` export), answered
   * with what it returns: how dom0's tools reach a driver, as an ioctl would.
   */
  call(domid: number, module: string, cmd: string, arg?: unknown): Promise<unknown> {
    return this.#request(domid, (id) => ({ kind: "call", id, module, cmd, arg }));
  }

  /**
   * An attribute a subsystem of the domain's kernel publishes (`bus/xen/drivers`, …), as dom0's
   * tools read a guest's sysfs; undefined when nothing publishes it.
   */
  attribute(domid: number, path: string): Promise<unknown> {
    return this.#request(domid, (id) => ({ kind: "attribute", id, path }));
  }

  /**
   * The hypervisor's own view of a page of a domain, for the toolstack and tests (Xen's
   * foreign map by a privileged tool). Undefined for a hole.
   */
  page(domid: number, gfn: number): SharedArrayBuffer | undefined {
    return this.#domains.get(domid)?.pages[gfn];
  }

  /**
   * The grant entries of a domain that are in use (flags not 0), as `xl debug-keys g` lists them:
   * ref, GTF_* flags, the grantee and the frame.
   */
  grantEntries(domid: number): { ref: number; flags: number; domid: number; frame: number }[] {
    const d = this.#domains.get(domid);
    if (d === undefined) return [];
    const t = new GrantTableFrames(d.grantFrames);
    const out: { ref: number; flags: number; domid: number; frame: number }[] = [];
    for (let ref = 0; ref < t.nrEntries; ref++) {
      const flags = t.flags(ref);
      if (flags !== 0) out.push({ ref, flags, domid: t.domid(ref), frame: t.frame(ref) });
    }
    return out;
  }

  #request(domid: number, make: (id: number) => HostMessage): Promise<unknown> {
    const d = this.#get(domid);
    if (d.state === "dying") return Promise.reject(new Error(`Domain ${domid} is dying`));
    if (d.state === "crashed") return Promise.reject(new Error(`Domain ${domid} has crashed`));
    const id = this.#nextRequest++;
    return new Promise((resolve, reject) => {
      d.requests.set(id, { resolve, reject });
      d.worker.postMessage(make(id));
      // A guest's vCPU may be dozing in a blocking wait, its event loop held: wake it to take this.
      // (dom0 never dozes: src/kernel/kernel.ts.)
      if (!d.privileged) this.events.nudge(domid);
    });
  }

  #kernelMessage(d: Dom, m: KernelMessage, ready: () => void): void {
    switch (m.kind) {
      case "log":
        for (const line of m.lines) this.#kernelLog(d, line);
        return;
      case "ready":
        ready();
        return;
      case "panic":
        this.#kernelLog(d, `Kernel panic: ${m.error}`);
        this.#log.error({ domid: d.domid, err: m.error }, `domain ${d.domid} (${d.name}) panicked`);
        return;
      case "insmod-done":
      case "rmmod-done":
      case "call-done":
      case "attribute-done":
      case "lsmod-done": {
        const r = d.requests.get(m.id);
        if (r === undefined) return;
        d.requests.delete(m.id);
        if (m.kind === "lsmod-done") r.resolve(m.names);
        else if (m.error !== undefined) r.reject(new Error(m.error));
        else r.resolve(m.kind === "insmod-done" ? m.name : m.kind === "rmmod-done" ? undefined : m.result);
        return;
      }
    }
  }

  #kernelLog(d: Dom, line: string): void {
    d.log.push(line);
    if (d.log.length > LOG_LINES) d.log.splice(0, d.log.length - LOG_LINES);
    this.#opts.onKernelLog?.(d.domid, line);
  }

  /** A hypercall from domain `d`'s worker; `d` is `current`, never taken from the arguments. */
  #hypercall(d: Dom, req: HypercallRequest): unknown {
    const result = this.#dispatch(d, req);
    // Counted only for a viewer (`all`); a domain's state changes are traced always.
    if (this.tracer.on && this.tracer.all) {
      const r = typeof result === "number" ? result : 0;
      this.tracer.emit({ kind: "hv-hypercall", domid: d.domid, op: req.op, result: r });
    }
    return result;
  }

  #dispatch(d: Dom, req: HypercallRequest): unknown {
    const a = req.args as number[];
    const caller = d.domid;
    switch (req.op as HypercallName) {
      case "evtchn_alloc_unbound":
        return this.events.allocUnbound(caller, num(a[0]), num(a[1]));
      case "evtchn_bind_interdomain":
        return this.events.bindInterdomain(caller, num(a[0]), num(a[1]));
      case "evtchn_close":
        return this.events.close(caller, num(a[0]));
      case "evtchn_bind_vcpu":
        return this.events.bindVcpu(caller, num(a[0]), num(a[1]));
      case "evtchn_status":
        return this.events.status(caller, num(a[0]), num(a[1]));
      case "grant_map":
        return this.grants.mapGrantRef(caller, { flags: num(a[0]), ref: num(a[1]), dom: num(a[2]) });
      case "grant_unmap":
        return this.grants.unmapGrantRef(caller, num(a[0]));
      case "grant_set_unmap_notify":
        return this.grants.setUnmapNotify(caller, num(a[0]), { offset: num(a[1]), port: num(a[2]) });
      case "gntshr_set_notify":
        return this.grants.setShareNotify(caller, num(a[0]), { offset: num(a[1]), port: num(a[2]) });
      case "gntshr_end_notify":
        return this.grants.endShareNotify(caller, num(a[0]), req.args[1] === true);
      case "grant_copy":
        return this.grants.copy(caller, req.args[0] as Parameters<GrantTables["copy"]>[1]);
      case "memory_populate":
        return this.#populate(d);
      case "sched_suspend":
        return this.#suspend(d, req.args[0] as KernelImage);
      case "memory_release": {
        const gfn = num(a[0]);
        if (d.pages[gfn] === undefined) return -XEN_ERRNO.EINVAL;
        d.pages[gfn] = undefined;
        d.populated--;
        return 0;
      }
      default:
        throw new Error(`Unknown hypercall '${req.op}'`);
    }
  }

  #suspend(d: Dom, image: KernelImage): Promise<number> {
    if (d.suspend !== null || d.state !== "running") return Promise.resolve(-XEN_ERRNO.EINVAL);
    return new Promise((wake) => {
      d.suspend = { image, wake };
      d.state = "suspended";
      this.#log.info({ domid: d.domid }, `domain ${d.domid} (${d.name}) suspended`);
      for (const w of [...d.onSuspend]) w(image);
    });
  }

  #populate(d: Dom): { gfn: number; page: SharedArrayBuffer } | number {
    if (d.populated >= d.maxPages) return -12; // ENOMEM
    let gfn = 0;
    while (d.pages[gfn] !== undefined) gfn++;
    const page = newPage();
    d.pages[gfn] = page;
    d.populated++;
    return { gfn, page };
  }

  #traceDomain(d: Dom, state: DomainState | "destroyed" = d.state): void {
    if (this.tracer.on) this.tracer.emit({ kind: "hv-domain", domid: d.domid, name: d.name, state });
  }

  #info(d: Dom): DomainInfo {
    return {
      domid: d.domid,
      name: d.name,
      state: d.state,
      privileged: d.privileged,
      vcpus: d.vcpus,
      cpuTime: d.state === "dying" ? 0 : d.worker.performance.eventLoopUtilization().active / 1000,
      pages: d.populated,
      maxPages: d.maxPages,
      store: { ...d.store },
      console: { ...d.console },
    };
  }

  #get(domid: number): Dom {
    const d = this.#domains.get(domid);
    if (d === undefined) throw new RangeError(`No domain ${domid}`);
    return d;
  }

  #allocDomid(): number {
    while (this.#domains.has(this.#nextDomid)) this.#nextDomid++;
    return this.#nextDomid++;
  }
}

function num(v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v))
    throw new TypeError(`Invalid hypercall argument ${String(v)}`);
  return v;
}
