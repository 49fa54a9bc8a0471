/**
 * The live view's aggregator (docs/live-view.md): it subscribes to the host's one trace stream,
 * xenstored's requests and watch events and the hypervisor's hypercalls and domain changes, and
 * keeps only what the page needs that no table holds: counters, the last requests (a bounded
 * log), who last wrote each node, which nodes changed in which tick, and each device's timeline.
 * Everything else (the tree, the watches, grants, ports, rings, domains) it reads from the live
 * structures when a snapshot is taken, so its cost per traced event is a few map updates.
 *
 * Guests' XenBus state changes are traced where they land: every `state` write reaches
 * xenstored as a request of the guest's connection, and a ring's indexes are read from its
 * page (live-rings.ts), so a guest's worker carries no tracing at all.
 *
 * Writes inside a transaction are held per (connection, transaction) and recorded when it
 * commits; an aborted transaction's writes are dropped, as xenstored drops them.
 */
import { consoleText } from "../console/output-tail.ts";
import type { HvTraceEvent } from "../hv/hypervisor.ts";
import type { Tracer } from "../lib/tracer.ts";
import type {
  LiveCounters,
  LiveDevice,
  LiveGrant,
  LiveNode,
  LivePort,
  LiveRing,
  LiveState,
  LogEntry,
  TimelineEntry,
} from "../web/protocol.ts";
import { EVTCHNSTAT } from "../xen/evtchn-abi.ts";
import { GTF } from "../xen/grant-table-abi.ts";
import { parseXenbusState, xenbusStateName } from "../xen/xenbus-abi.ts";
import { XenbusKey } from "../xenbus/keys.ts";
import { RINGS_ATTRIBUTE, type RingIndexes } from "../xenbus/xenbus.ts";
import { formatPerm } from "../xenstore/perms.ts";
import type { Store } from "../xenstore/store.ts";
import type { XsTraceEvent } from "../xenstore/trace-events.ts";
import { listDevices } from "./devices.ts";
import type { Host } from "./host.ts";
import { domainRings, ioRing } from "./live-rings.ts";

/** The one trace stream of a host: xenstored's events and the hypervisor's. */
export type TraceEvent = XsTraceEvent | HvTraceEvent;

/** Subscribes `fn` to both sources; returns the function that stops it. */
export function subscribeHost(host: Host, fn: (e: TraceEvent) => void): () => void {
  const offs = [host.core.tracer.subscribe(fn), host.hv.tracer.subscribe(fn)];
  return () => {
    for (const off of offs) off();
  };
}

const LOG_KEEP = 1000;
const TIMELINE_KEEP = 200;
const CONSOLE_LINES = 60;

const FRONT = /^\/local\/domain\/(\d+)\/device\/([^/]+)\/([^/]+)(?:\/(.+))?$/;
const BACK = /^\/local\/domain\/(\d+)\/backend\/([^/]+)\/(\d+)\/([^/]+)(?:\/(.+))?$/;

/** The device a path belongs to: its id (`type/frontend domid/devid`), the side, the key. */
/** A cheap first test of deviceOf(): a path under some domain's `device/` or `backend/`. */
function isDevicePath(path: string): boolean {
  return path.startsWith("/local/domain/") && (path.includes("/device/") || path.includes("/backend/"));
}

export function deviceOf(path: string): { id: string; side: "frontend" | "backend"; key: string } | null {
  if (!isDevicePath(path)) return null;
  let m = FRONT.exec(path);
  if (m !== null) return { id: `${m[2]}/${m[1]}/${m[3]}`, side: "frontend", key: m[4] ?? "" };
  m = BACK.exec(path);
  if (m !== null) return { id: `${m[2]}/${m[3]}/${m[4]}`, side: "backend", key: m[5] ?? "" };
  return null;
}

const MODIFY = new Set(["WRITE", "MKDIR", "RM", "SET_PERMS"]);

/** The GTF_* names of a v1 entry's flags. */
export function grantFlagNames(flags: number): string[] {
  const type = flags & GTF.type_mask;
  const names = [["invalid", "permit_access", "accept_transfer", "transitive"][type]!];
  for (const f of ["readonly", "reading", "writing", "sub_page"] as const) if (flags & GTF[f]) names.push(f);
  return names;
}

const PORT_STATE = new Map<number, string>(Object.entries(EVTCHNSTAT).map(([k, v]) => [v, k]));

interface Pending {
  readonly path: string;
  readonly type: string;
  readonly label: string;
  readonly domid: number;
}

/**
 * What the live view records of the trace stream, per event: counters, the request log, last
 * writers, changed ticks and device timelines. It needs only xenstored's store (to read the value
 * a committed write left), so a bare daemon (`xenlab xenstored --live-trace`) can carry it too.
 */
export class LiveRecorder {
  readonly #store: Store;
  /** The tick the next snapshot will have (LiveView moves it). */
  nextTick = 1;
  /**
   * Full: every request is logged and counted and every node's last writer kept (while a viewer
   * is connected). Otherwise only what a viewer opening the page later could not rebuild: the
   * devices' timelines (their `state` and other keys written, the watch events under them).
   */
  #full = false;
  /** The tracers it listens to: told to skip what only a viewer needs while it is not full. */
  readonly #tracers: readonly Pick<Tracer<unknown>, "all">[];
  #seq = 0;
  /**
   * The last LOG_KEEP requests, request `seq` at `seq % LOG_KEEP`, as columns: no object per
   * request and no shifting, so a request leaves only its path string behind (the rest are
   * numbers or strings shared by every request of a kind).
   */
  readonly #logT = new Float64Array(LOG_KEEP);
  readonly #logDomid = new Int32Array(LOG_KEEP);
  readonly #logConn: string[] = new Array<string>(LOG_KEEP).fill("");
  readonly #logType: string[] = new Array<string>(LOG_KEEP).fill("");
  readonly #logPath: string[] = new Array<string>(LOG_KEEP).fill("");
  readonly #logResult: string[] = new Array<string>(LOG_KEEP).fill("");
  readonly writers = new Map<string, string>();
  readonly changed = new Map<string, number>();
  readonly timelines = new Map<string, TimelineEntry[]>();
  readonly #pending = new Map<string, Pending[]>();
  #xsRequests = 0;
  #xsErrors = 0;
  #watchEvents = 0;
  readonly #hypercalls = new Map<string, number>();

  constructor(store: Store, tracers: readonly Pick<Tracer<unknown>, "all">[] = []) {
    this.#store = store;
    this.#tracers = tracers;
    for (const t of tracers) t.all = false;
  }

  get full(): boolean {
    return this.#full;
  }

  set full(on: boolean) {
    this.#full = on;
    for (const t of this.#tracers) t.all = on;
  }

  get counters(): LiveCounters {
    return {
      xsRequests: this.#xsRequests,
      xsErrors: this.#xsErrors,
      watchEvents: this.#watchEvents,
      hypercalls: Object.fromEntries(this.#hypercalls),
    };
  }

  /** The last requests with a sequence number above `seq`, oldest first, at most `max`. */
  logSince(seq: number, max: number): LogEntry[] {
    const out: LogEntry[] = [];
    const first = Math.max(seq + 1, this.#seq - LOG_KEEP + 1, this.#seq - max + 1, 1);
    for (let seq = first; seq <= this.#seq; seq++) {
      const i = seq % LOG_KEEP;
      out.push({
        seq,
        t: this.#logT[i]!,
        conn: this.#logConn[i]!,
        domid: this.#logDomid[i]!,
        type: this.#logType[i]!,
        path: this.#logPath[i]!,
        result: this.#logResult[i]!,
      });
    }
    return out;
  }

  get lastSeq(): number {
    return this.#seq;
  }

  event(e: TraceEvent): void {
    switch (e.kind) {
      case "xs-request":
        this.#request(e);
        return;
      case "xs-watch-event": {
        if (this.full) this.#watchEvents++;
        const dev = deviceOf(e.path);
        if (dev !== null)
          this.#timeline(dev.id, dev.side, "watch", `event ${e.path} → ${e.label} (${e.token})`);
        return;
      }
      case "xs-connection":
        // A connection that went away ends its transactions unfinished.
        if (!e.open)
          for (const k of this.#pending.keys()) if (k.startsWith(`${e.conn}:`)) this.#pending.delete(k);
        return;
      case "hv-hypercall":
        if (this.full) this.#hypercalls.set(e.op, (this.#hypercalls.get(e.op) ?? 0) + 1);
        return;
      default:
        return;
    }
  }

  #request(e: XsTraceEvent & { kind: "xs-request" }): void {
    // Without a viewer: only writes under a device directory and the commits that may hold them.
    if (!this.full && e.type !== "TRANSACTION_END" && (e.type !== "WRITE" || !isDevicePath(e.path))) return;
    if (this.full) {
      this.#xsRequests++;
      if (e.result !== "OK") this.#xsErrors++;
      const seq = ++this.#seq;
      const i = seq % LOG_KEEP;
      this.#logT[i] = Date.now();
      this.#logDomid[i] = e.domid;
      this.#logConn[i] = e.label;
      this.#logType[i] = e.type;
      this.#logPath[i] = e.path;
      this.#logResult[i] = e.result;
    }
    if (e.type === "TRANSACTION_END") {
      const txKey = `${e.conn}:${e.tx}`;
      const held = this.#pending.get(txKey);
      this.#pending.delete(txKey);
      if (e.result === "OK" && held !== undefined) for (const p of held) this.#modified(p);
      return;
    }
    if (e.result !== "OK" || !MODIFY.has(e.type)) return;
    const p = { path: e.path, type: e.type, label: e.label, domid: e.domid };
    if (e.tx === 0) this.#modified(p);
    else {
      const txKey = `${e.conn}:${e.tx}`;
      const held = this.#pending.get(txKey);
      if (held === undefined) this.#pending.set(txKey, [p]);
      else held.push(p);
    }
  }

  /** A node changed (committed): its writer, its tick, and its device's timeline. */
  #modified(p: Pending): void {
    if (!this.full) {
      this.#timelineOf(p);
      return;
    }
    if (p.type === "RM") this.writers.delete(p.path);
    else this.writers.set(p.path, p.label);
    this.changed.set(p.path, this.nextTick);
    // An RM takes a subtree with it: entries of nodes gone are dropped once the maps hold twice
    // as many paths as the store has nodes, so their size stays bounded at O(1) amortised cost.
    if (this.changed.size > 2 * this.#store.nodes.size + 64) this.#prune();
    this.#timelineOf(p);
  }

  #timelineOf(p: Pending): void {
    const dev = deviceOf(p.path);
    // The timeline shows values written; a permission change or a mkdir changes no value.
    if (dev === null || dev.key === "" || p.type !== "WRITE") return;
    const node = this.#store.nodes.get(p.path);
    const value = node === undefined ? "" : node.value;
    if (dev.key === XenbusKey.state) {
      const s = parseXenbusState(value);
      this.#timeline(dev.id, dev.side, "state", `${xenbusStateName(s)} (${s}) by ${p.label}`, s);
    } else {
      this.#timeline(dev.id, dev.side, "key", `${dev.key} = ${value} by ${p.label}`);
    }
  }

  #prune(): void {
    const nodes = this.#store.nodes;
    for (const path of this.changed.keys()) {
      if (nodes.has(path)) continue;
      this.changed.delete(path);
      this.writers.delete(path);
    }
  }

  #timeline(
    id: string,
    side: "frontend" | "backend",
    kind: TimelineEntry["kind"],
    text: string,
    state?: number,
  ): void {
    let tl = this.timelines.get(id);
    if (tl === undefined) {
      tl = [];
      this.timelines.set(id, tl);
    }
    tl.push({ t: Date.now(), side, kind, text, ...(state === undefined ? {} : { state }) });
    if (tl.length > TIMELINE_KEEP) tl.splice(0, tl.length - TIMELINE_KEEP);
  }
}

export class LiveView {
  readonly #host: Host;
  readonly recorder: LiveRecorder;
  #off: (() => void) | null = null;
  #tick = 0;
  #last: { tick: number; json: string; body: string } | null = null;

  constructor(host: Host) {
    this.#host = host;
    this.recorder = new LiveRecorder(host.core.store, [host.core.tracer, host.hv.tracer]);
  }

  start(): void {
    if (this.#off === null) this.#off = subscribeHost(this.#host, (e) => this.recorder.event(e));
  }

  stop(): void {
    this.#off?.();
    this.#off = null;
  }

  /**
   * Everything the page shows, read now, as the JSON of a LiveState: its `tick` moves only when
   * something in it changed, so the server sends a state only when it differs.
   */
  async snapshot(): Promise<{ tick: number; json: string }> {
    const body = JSON.stringify(await this.#read());
    if (this.#last !== null && this.#last.body === body) return this.#last;
    const tick = ++this.#tick;
    this.recorder.nextTick = tick + 1;
    this.#last = { tick, body, json: `{"tick":${tick},${body.slice(1)}` };
    return this.#last;
  }

  async #read(): Promise<Omit<LiveState, "tick">> {
    const h = this.#host;
    const hv = h.hv;
    const domains = hv.list().filter((d) => d.state !== "dying");
    const domids = domains.map((d) => d.domid);

    const nodes: LiveNode[] = [];
    /** `domid:value` of each device's grant-ref and port keys → the key's path. */
    const refKeys = new Map<string, string>();
    const portKeys = new Map<string, string>();
    for (const n of [...h.core.store.nodes.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const value = n.value;
      const writer = this.recorder.writers.get(n.name);
      nodes.push({
        path: n.name,
        value,
        perms: n.perms.map(formatPerm),
        ...(writer === undefined ? {} : { writer }),
        changed: this.recorder.changed.get(n.name) ?? 0,
      });
      const dev = deviceOf(n.name);
      const owner = /^\/local\/domain\/(\d+)\//.exec(n.name)?.[1];
      if (owner === undefined) continue;
      if (dev !== null && /(^|-)ring-ref(\d*)$/.test(dev.key)) refKeys.set(`${owner}:${value}`, n.name);
      if (dev !== null && /^event-channel/.test(dev.key)) portKeys.set(`${owner}:${value}`, n.name);
      if (n.name.endsWith("/store/port") || n.name.endsWith("/console/port"))
        portKeys.set(`${owner}:${value}`, n.name);
    }

    const watches = [...h.core.connections].flatMap((c) =>
      c.watches.map((w) => ({ conn: c.label, domid: c.domid, path: w.node, token: w.token })),
    );

    const grants: LiveGrant[] = [];
    const rings: LiveRing[] = [];
    for (const domid of domids) {
      const mappers = new Map<number, number[]>();
      for (const u of hv.grants.usesOf(domid)) {
        const list = mappers.get(u.ref) ?? [];
        list.push(u.mapper);
        mappers.set(u.ref, list);
      }
      for (const g of hv.grantEntries(domid)) {
        const key = refKeys.get(`${domid}:${g.ref}`);
        grants.push({
          domid,
          ref: g.ref,
          flags: g.flags,
          flagNames: grantFlagNames(g.flags),
          grantee: g.domid,
          frame: g.frame,
          mappedBy: mappers.get(g.ref) ?? [],
          ...(key === undefined ? {} : { key }),
        });
        const dev = key === undefined ? null : deviceOf(key);
        const page = hv.page(domid, g.frame);
        if (dev !== null && key !== undefined && page !== undefined) {
          rings.push(ioRing(page, dev.id.split("/")[0]!, dev.id, domid, `gref ${g.ref} of dom${domid}`, key));
        }
      }
      rings.push(...domainRings(hv, domid));
    }

    // Each end's private indexes, from the drivers that show their rings.
    const pvt = new Map<string, { front?: Record<string, number>; back?: Record<string, number> }>();
    for (const domid of domids) {
      const shown = await hv.attribute(domid, RINGS_ATTRIBUTE).catch(() => undefined);
      if (!Array.isArray(shown)) continue;
      for (const r of shown as RingIndexes[]) {
        const dev = deviceOf(`/local/domain/${domid}/${r.nodename}`);
        if (dev === null) continue;
        const entry = pvt.get(dev.id) ?? {};
        entry[r.end] = { ...r.indexes };
        pvt.set(dev.id, entry);
      }
    }
    for (let i = 0; i < rings.length; i++) {
      const p = pvt.get(rings[i]!.id);
      if (p !== undefined && rings[i]!.kind === "io") rings[i] = { ...rings[i]!, pvt: p };
    }

    const ports: LivePort[] = [];
    for (const domid of domids) {
      for (const p of hv.events.openPorts(domid)) {
        const s = p.status;
        const remote =
          "port" in s
            ? `dom${s.dom} port ${s.port}`
            : "dom" in s
              ? `dom${s.dom}`
              : "virq" in s
                ? `virq ${s.virq}`
                : "";
        const key = portKeys.get(`${domid}:${p.port}`);
        ports.push({
          domid,
          port: p.port,
          state: PORT_STATE.get(s.status) ?? String(s.status),
          remote,
          pending: p.pending,
          masked: p.masked,
          ...(key === undefined ? {} : { key }),
        });
      }
    }

    // Read from the store itself, not through a connection: the view's own reads would otherwise
    // fill the request log it shows.
    const store = h.core.store.nodes;
    const reader = {
      directory: async (path: string) => [...(store.get(path)?.children ?? [])],
      tryRead: async (path: string) => {
        const n = store.get(path);
        return n === undefined ? undefined : n.value;
      },
    };
    const reports = await listDevices({
      xs: reader,
      domids: () => domids,
      attribute: (id, path) => hv.attribute(id, path),
    }).catch(() => []);
    const devices: LiveDevice[] = reports.map((d) => {
      const id = `${d.type}/${d.frontend.domid}/${d.devid}`;
      const end = (e: typeof d.frontend) => ({
        domid: e.domid,
        path: e.path,
        state: e.state === undefined ? "missing" : `${xenbusStateName(e.state)} (${e.state})`,
        driver: e.hasDriver ?? null,
      });
      return {
        id,
        type: d.type,
        devid: d.devid,
        frontend: end(d.frontend),
        backend: end(d.backend),
        why: d.why,
        timeline: this.recorder.timelines.get(id) ?? [],
      };
    });

    const consoles = domains.map((d) => {
      const out = h.console.recentOutput(d.domid);
      return {
        domid: d.domid,
        name: d.name,
        output: out === undefined ? null : consoleText(out.bytes),
        outputBytes: out?.total ?? 0,
        lines: hv.dmesg(d.domid).slice(-CONSOLE_LINES),
      };
    });

    return {
      domains: domains.map((d) => ({
        domid: d.domid,
        name: d.name,
        state: d.state,
        pages: d.pages,
        maxPages: d.maxPages,
        vcpus: d.vcpus,
      })),
      nodes,
      watches,
      devices,
      grants,
      ports,
      rings,
      consoles,
      counters: this.recorder.counters,
    };
  }
}
