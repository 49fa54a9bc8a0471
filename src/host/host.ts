/**
 * The host: one process holding the hypervisor, xenstored (the core, its Unix socket for dom0's
 * tools, and the rings of every domain) and the toolstack, with dom0 and the guests as workers.
 *
 * Creating a guest is what `xl create` does through libxl, in the same order:
 *
 *   1. the hypervisor builds the domain, paused (pages, grant refs 0 and 1, store and console
 *      ports unbound towards dom0, the worker waiting);
 *   2. one transaction writes its XenStore directory with libxl's permissions
 *      (`libxl__domain_make`: /local/domain/N owned by dom0 and readable by N; device, control,
 *      cpu, memory likewise; data, drivers, feature, attr, error, control/shutdown … owned by N),
 *      then `libxl__build_post`'s keys: name, domid, memory, store/port, store/ring-ref;
 *   3. XS_INTRODUCE: xenstored maps the store page and binds the port (xenstored-domains.ts),
 *      and fires @introduceDomain; then the primary console's keys (src/console/keys.ts),
 *      which the console daemon (src/console/xenconsoled.ts) connects to;
 *   4. the domain is unpaused and its kernel boots, finding xenstored attached.
 *
 * Destroying: the hypervisor tears the domain down, then xenstored releases it (@releaseDomain,
 * its own nodes removed unless --keep-orphans) and the toolstack removes /local/domain/N, as
 * `libxl__destroy_domid` does.
 */

import { addPrimaryConsole } from "../console/keys.ts";
import { logFilesIn } from "../console/log-file.ts";
import { ConsoleBackend } from "../console/xenconsoled.ts";
import { type CreateOptions, type DomainInfo, Hypervisor } from "../hv/hypervisor.ts";
import { EventChannelUpcall } from "../kernel/evtchn.ts";
import { errorMessage } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { parseXenbusState, XenbusState } from "../xen/xenbus-abi.ts";
import { BACKEND_BUS, devicePaths } from "../xenbus/bus-type.ts";
import { writeDeviceNodes } from "../xenbus/device-nodes.ts";
import { domainPath, XenbusKey } from "../xenbus/keys.ts";
import { XsClient, type XsOps } from "../xenstore/client.ts";
import { type CoreOptions, XenStoreCore } from "../xenstore/core.ts";
import { deliver } from "../xenstore/daemon.ts";
import { NodeDumpFiles, NodeTraceFiles } from "../xenstore/state-files.ts";
import { Trace } from "../xenstore/trace.ts";
import { LocalChannel } from "../xenstore/transport-local.ts";
import { SocketTransport } from "../xenstore/transport-socket.ts";
import { HostCapture } from "./capture.ts";
import type { GuestConfig } from "./guest-config.ts";
import { PollGovernor } from "./poll-governor.ts";
import { XenstoredDomains } from "./xenstored-domains.ts";

export interface HostOptions {
  readonly log: Logger;
  /** xenstored's options (quotas, keepOrphans); `hooks` and `log` are the host's. */
  readonly xenstored?: Omit<CoreOptions, "hooks" | "log">;
  /** Dom0's memory in pages and the modules its kernel loads at boot. */
  readonly dom0?: Omit<CreateOptions, "domid" | "name"> & { readonly name?: string };
  /** Each kernel log line of each domain. */
  readonly onKernelLog?: (domid: number, line: string) => void;
  /** The domain kernel's entry (tests); default src/kernel/domain-worker. */
  readonly workerEntry?: URL;
  /** Where the console daemon keeps `guest-<name>.log` files (none: no log files). */
  readonly consoleLogDir?: string;
  /** Each domain's longest halt-polling window, µs (default HALT_POLL_US_DEFAULT; 0: off). */
  readonly haltPollUs?: number;
  /**
   * Capture into this directory from the start (`xenlab up --pcap`): every XenStore packet in
   * xenstore.pcapng, and the directory published for netback's per-vif captures (capture.ts).
   */
  readonly pcapDir?: string;
  /**
   * Whether polling stops while every core is wanted by a thread with work (poll-governor.ts);
   * default true. false leaves one polling thread per core allowed whatever the load.
   */
  readonly governPolling?: boolean;
}

export class Host {
  readonly hv: Hypervisor;
  readonly core: XenStoreCore;
  /** The toolstack's own XenStore connection (dom0 user space, privileged). */
  readonly xs: XsClient;
  readonly xenstored: XenstoredDomains;
  /** The console daemon (xenconsoled), beside xenstored on dom0's vCPU 1. */
  readonly console: ConsoleBackend;
  readonly #vcpu1: EventChannelUpcall;
  /** Stops halt polling while the cores are all wanted; null with polling off or ungoverned. */
  readonly pollGovernor: PollGovernor | null;
  readonly #log: Logger;
  /**
   * What the toolstack does when a guest's kernel ends by itself (`crashed`: of an error),
   * set by src/host/guest.ts; none: the guest stays, crashed, as with on_crash=preserve.
   */
  onGuestExit: ((domid: number, crashed: boolean) => void) | null = null;
  /** The configuration each guest was created from, when it came from one (xl create -f). */
  readonly configs = new Map<number, GuestConfig>();
  readonly #logWatchers = new Set<(domid: number, line: string | null) => void>();
  #loop: Promise<void> | null = null;
  #socket: SocketTransport | null = null;
  /** The tail of the toolstack's transactions, run one at a time (transaction()). */
  #txTail: Promise<unknown> = Promise.resolve();
  /** ensureModule's loads in progress, by "domid url": concurrent callers share one. */
  readonly #loading = new Map<string, Promise<void>>();
  /** The captures (`pcapDir`), or null. */
  capture: HostCapture | null = null;

  private constructor(opts: HostOptions, hv: Hypervisor) {
    this.#log = opts.log;
    this.hv = hv;
    this.pollGovernor =
      opts.governPolling === false || opts.haltPollUs === 0 ? null : new PollGovernor({ target: hv });
    // Dom0's vCPU 1 runs here: xenstored's event channels are bound to it.
    this.#vcpu1 = new EventChannelUpcall(hv.events.vcpuBoot(0, 1), {
      onError: (err, port) => this.#log.error({ port, err: errorMessage(err) }, "xenstored event failed"),
    });
    this.xenstored = new XenstoredDomains(hv, this.#vcpu1);
    // Closed until `xenstore-control logfile FILE` opens one, as C xenstored without -T; memreport
    // FILE writes its report either way.
    const trace = new Trace(new NodeTraceFiles(), { log: opts.log });
    // `xenstore-control dump-state FILE` writes Xen's migration stream (docs/xenstore-migration.md).
    this.core = new XenStoreCore({
      ...opts.xenstored,
      log: opts.log,
      hooks: this.xenstored,
      trace,
      dumpFiles: new NodeDumpFiles(),
    });
    this.xenstored.attach(this.core);
    this.xs = new XsClient(new LocalChannel(this.core));
    this.console = new ConsoleBackend({
      hv,
      vcpu: this.#vcpu1,
      xs: new XsClient(new LocalChannel(this.core)),
      log: opts.log,
      ...(opts.consoleLogDir === undefined ? {} : { openLog: logFilesIn(opts.consoleLogDir) }),
    });
  }

  /** Starts a host: the hypervisor, dom0 (running, its ring attached) and xenstored. */
  static async start(opts: HostOptions): Promise<Host> {
    let host: Host | null = null;
    const hv = new Hypervisor({
      log: opts.log,
      onKernelLog: (domid, line) => {
        opts.onKernelLog?.(domid, line);
        if (host !== null) for (const w of host.#logWatchers) w(domid, line);
      },
      onDestroyed: (domid) => {
        if (host !== null) host.#released(domid);
      },
      onExited: (domid, crashed) => host?.onGuestExit?.(domid, crashed),
      ...(opts.workerEntry === undefined ? {} : { workerEntry: opts.workerEntry }),
      ...(opts.haltPollUs === undefined ? {} : { haltPollUs: opts.haltPollUs }),
    });
    hv.create({ ...opts.dom0, domid: 0, name: opts.dom0?.name ?? "Domain-0" });
    host = new Host(opts, hv);
    host.#loop = host.#vcpu1.start();
    host.#loop.catch(() => {});
    // Before dom0's ring is attached, so the capture sees its first request.
    if (opts.pcapDir !== undefined) {
      try {
        host.capture = await HostCapture.start(opts.pcapDir, host.core, host.xs, opts.log);
      } catch (e) {
        await hv.shutdown();
        await host.#vcpu1.stop();
        throw e;
      }
    }
    host.pollGovernor?.start();
    host.xenstored.attachDom0();
    // What xen-init-dom0 writes.
    await host.xs.write("/local/domain/0/domid", "0");
    await host.xs.write("/local/domain/0/name", opts.dom0?.name ?? "Domain-0");
    hv.unpause(0);
    await hv.ready(0);
    await host.console.start();
    return host;
  }

  /**
   * Opens xenstored's Unix socket for dom0's tools (Debian's xenstore-*, libxenstore, pyxs):
   * every socket connection is dom0, privileged, as in Xen.
   */
  async listen(path: string): Promise<void> {
    if (this.#socket !== null) throw new Error("Cannot listen: the host's xenstored socket is open already");
    const t = new SocketTransport(this.core);
    await t.listen(path);
    this.#socket = t;
  }

  /**
   * `xl create`: builds, describes in XenStore, introduces and boots a guest (see above).
   * `targetKib` is the memory target written for the guest (default: all its pages). A name
   * must be given and not be another domain's, as libxl__domain_rename insists.
   */
  async createDomain(
    opts: CreateOptions & {
      readonly targetKib?: number;
      /** Runs before the unpause (a restore adds the saved devices there, as libxl does). */
      readonly beforeUnpause?: (domid: number) => Promise<void>;
      /** Leave it paused (a migration's receiver, until the sender clears it). */
      readonly paused?: boolean;
    },
  ): Promise<DomainInfo> {
    if (opts.name === "") throw new RangeError("Domain name must be specified.");
    if (this.hv.list().some((d) => d.name === opts.name))
      throw new RangeError(`Domain with name "${opts.name}" already exists.`);
    const info = this.hv.create(opts);
    const { domid } = info;
    try {
      await this.#describe(info, opts.targetKib);
      await this.xs.introduce(domid, info.store.gfn, info.store.port);
      // libxl's domcreate_launch_dm: the primary console, which xenconsoled then connects.
      await this.transaction((t) => addPrimaryConsole(t, domid, info.console));
      await opts.beforeUnpause?.(domid);
      if (opts.paused !== true) {
        this.hv.unpause(domid);
        await this.hv.ready(domid);
      }
    } catch (e) {
      await this.destroyDomain(domid);
      throw e;
    }
    return this.hv.info(domid)!;
  }

  /**
   * A toolstack transaction (XsClient.transaction), after the toolstack's earlier ones have
   * ended, as one xl process runs its transactions one after the other. Run side by side they
   * conflict: each guest's directory and devices are new children of the same parents
   * (/local/domain, backend/vbd), so all but one end in EAGAIN and are retried with every write
   * sent again; a storm of 20 guests created at once made about 10 attempts per transaction.
   */
  transaction<T>(fn: (t: XsOps) => Promise<T>): Promise<T> {
    const run = this.#txTail.then(() => this.xs.transaction(fn));
    this.#txTail = run.catch(() => {});
    return run;
  }

  /**
   * Loads module `name` from `url` into `domid` unless it is loaded (by an earlier call, or by
   * hand: then nothing happens, and nothing is logged). Concurrent calls for one module share one
   * load: a guest boot storm attaches many disks at once, and a second insmod of xen_blkback
   * while the first one runs fails ("vbd already has a driver").
   */
  ensureModule(domid: number, name: string, url: string): Promise<void> {
    const key = `${domid} ${url}`;
    const loading = this.#loading.get(key);
    if (loading !== undefined) return loading;
    const load = (async () => {
      if ((await this.hv.lsmod(domid)).includes(name)) return;
      try {
        await this.hv.insmod(domid, url);
      } catch (e) {
        // Loaded meanwhile by another path (insmod by hand).
        if (!/already loaded/.test((e as Error).message)) throw e;
      }
    })().finally(() => this.#loading.delete(key));
    this.#loading.set(key, load);
    return load;
  }

  /**
   * Attaches a device as libxl does (`libxl__device_generic_add`), in one transaction: the
   * frontend directory owned by the guest and readable by the backend domain, the backend
   * directory owned by dom0 and readable by the guest, each end's pointer to the other, and both
   * `state` keys Initialising. (examples/alice/activate.sh writes the same keys but leaves the
   * frontend directory dom0's: enough for probing, not for the handshake, where the frontend
   * writes `ring-ref`, `event-channel` and `state`.)
   */
  async attachDevice(type: string, domid: number, devid = 0): Promise<void> {
    const { frontend: fe, backend: be } = devicePaths(type, domid, devid);
    const K = XenbusKey;
    await this.transaction((t) => writeDeviceNodes(t, domid, { fe, be }, [[K.online, "1"]], []));
  }

  /**
   * Detaches a device as libxl does: the backend is told to close (online 0, state Closing), the
   * toolstack waits for the backend to reach Closed, then removes both directories.
   */
  async detachDevice(type: string, domid: number, devid = 0, timeoutMs = 10_000): Promise<void> {
    const { frontend: fe, backend: be } = devicePaths(type, domid, devid);
    const beState = `${be}/${XenbusKey.state}`;
    await this.xs.transaction(async (t) => {
      await t.write(`${be}/${XenbusKey.online}`, "0");
      await t.write(beState, String(XenbusState.Closing));
    });
    const closed = async (xs: XsClient) => parseXenbusState(await xs.tryRead(beState)) === XenbusState.Closed;
    await this.xs.wait(beState, closed, { signal: AbortSignal.timeout(timeoutMs) });
    await this.xs.rm(fe);
    await this.xs.rm(be);
  }

  /**
   * Calls `fn` with each kernel log line of every domain as it is logged (`xenlab dmesg -f`),
   * and with null when a domain is destroyed; returns the function that stops it.
   */
  watchKernelLog(fn: (domid: number, line: string | null) => void): () => void {
    this.#logWatchers.add(fn);
    return () => this.#logWatchers.delete(fn);
  }

  /** `xl destroy`. */
  async destroyDomain(domid: number): Promise<void> {
    if (domid === 0) throw new RangeError("Cannot destroy dom0: stop the host instead");
    await this.hv.destroy(domid);
  }

  /** Stops every domain (dom0 last) and the event loop of dom0's vCPU 1. */
  async stop(): Promise<void> {
    this.pollGovernor?.stop();
    await this.#socket?.close();
    this.#socket = null;
    await this.console.stop();
    await this.hv.shutdown();
    await this.#vcpu1.stop();
    await this.xs.close();
    this.capture?.close();
  }

  /** libxl__domain_make + libxl__build_post, in one transaction. */
  async #describe(info: DomainInfo, targetKib?: number): Promise<void> {
    const { domid } = info;
    const dom = domainPath(domid);
    const ro = [`n0`, `r${domid}`];
    const rw = [`n${domid}`];
    await this.transaction(async (t: XsOps) => {
      await t.rm(dom).catch(() => {});
      const mknod = async (path: string, perms: string[]): Promise<void> => {
        await t.write(path, "");
        await t.setPerms(path, perms);
      };
      await mknod(dom, ro);
      for (const p of ["cpu", "memory", "device", "control"]) await mknod(`${dom}/${p}`, ro);
      for (const p of [
        "control/shutdown",
        "control/feature-poweroff",
        "control/feature-reboot",
        "control/feature-suspend",
        "control/sysrq",
        "data",
        "drivers",
        "feature",
        "attr",
        "error",
      ]) {
        await mknod(`${dom}/${p}`, rw);
      }
      const kib = info.maxPages * 4;
      await t.write(`${dom}/name`, info.name);
      await t.write(`${dom}/domid`, String(domid));
      await t.write(`${dom}/memory/static-max`, String(kib));
      await t.write(`${dom}/memory/target`, String(targetKib ?? kib));
      await t.write(`${dom}/store/port`, String(info.store.port));
      await t.write(`${dom}/store/ring-ref`, String(info.store.gfn));
    });
  }

  /**
   * After the hypervisor destroyed a domain: xenstored releases it, and the toolstack removes
   * its directory and its devices' backend directories (libxl__devices_destroy), so each
   * backend driver's `remove` runs and unmaps what it mapped from the dead domain.
   */
  #released(domid: number): void {
    this.configs.delete(domid);
    for (const w of this.#logWatchers) w(domid, null);
    deliver(this.core.releaseDomain(domid));
    void this.#cleanUp(domid).catch((e: unknown) => {
      this.#log.debug({ domid, err: errorMessage(e) }, "cleaning up a domain's nodes");
    });
  }

  async #cleanUp(domid: number): Promise<void> {
    await this.xs.rm(domainPath(domid)).catch(() => {});
    // Every device of the guest's, whatever its type: backend/<type>/<domid> in dom0.
    const backends = `${domainPath(0)}/${BACKEND_BUS.root}`;
    const types = await this.xs.directory(backends).catch(() => [] as string[]);
    for (const type of types) await this.xs.rm(`${backends}/${type}/${domid}`).catch(() => {});
  }
}
