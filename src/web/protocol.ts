/**
 * What the live view's server sends the page (server-sent events, docs/live-view.md): types only,
 * shared by src/host/live.ts, which builds them, and the page (src/web/page.ts), which draws them.
 *
 *   event: state   a LiveState, whole: every table of the page, sent at most every tick (100 ms)
 *                  and only when it changed
 *   event: log     LogEntry[]: the requests answered since the last tick (at most LOG_BATCH)
 */

export interface LiveDomain {
  readonly domid: number;
  readonly name: string;
  readonly state: string;
  readonly pages: number;
  readonly maxPages: number;
  readonly vcpus: number;
}

export interface LiveNode {
  readonly path: string;
  readonly value: string;
  /** `n0`, `r1`, … as xenstore-ls -p prints them: the owner first. */
  readonly perms: readonly string[];
  /** Who wrote it last (`dom1`, `socket#3`), since the live view started; absent: before. */
  readonly writer?: string;
  /** The tick it last changed in (the page flashes nodes changed in the last tick). */
  readonly changed: number;
}

export interface LiveWatch {
  readonly conn: string;
  readonly domid: number;
  readonly path: string;
  readonly token: string;
}

export interface TimelineEntry {
  readonly t: number;
  readonly side: "frontend" | "backend";
  /** state: the end's `state` key was written; key: another key of the end's; watch: an event woke it. */
  readonly kind: "state" | "key" | "watch";
  readonly text: string;
  /** For kind state: the XenbusState number. */
  readonly state?: number;
}

export interface LiveDeviceEnd {
  readonly domid: number;
  readonly path: string;
  readonly state: string;
  readonly driver: boolean | null;
}

export interface LiveDevice {
  /** `alice_dev/1/0`: type, frontend domid, devid. */
  readonly id: string;
  readonly type: string;
  readonly devid: string;
  readonly frontend: LiveDeviceEnd;
  readonly backend: LiveDeviceEnd;
  readonly why: string;
  readonly timeline: readonly TimelineEntry[];
}

export interface LiveGrant {
  readonly domid: number;
  readonly ref: number;
  readonly flags: number;
  readonly flagNames: readonly string[];
  readonly grantee: number;
  readonly frame: number;
  /** Domains that map it now. */
  readonly mappedBy: readonly number[];
  /** The XenStore key whose value published it (`…/ring-ref`), when one does. */
  readonly key?: string;
}

export interface LivePort {
  readonly domid: number;
  readonly port: number;
  readonly state: string;
  readonly remote: string;
  readonly pending: boolean;
  readonly masked: boolean;
  readonly key?: string;
}

export interface LiveRing {
  readonly id: string;
  readonly kind: "io" | "xenstore" | "console";
  readonly domid: number;
  /** Where it lives: `gref 8 of dom1`, `store page of dom1`. */
  readonly where: string;
  readonly key?: string;
  /** Index name → value: req_prod, req_event, rsp_prod, rsp_event (io) or each byte ring's cons/prod. */
  readonly indexes: Readonly<Record<string, number>>;
  /**
   * Each end's private indexes, when its driver shows its ring (XenbusDevice.showRing):
   * `front` req_prod_pvt and rsp_cons, `back` req_cons and rsp_prod_pvt.
   */
  readonly pvt?: {
    readonly front?: Readonly<Record<string, number>>;
    readonly back?: Readonly<Record<string, number>>;
  };
  readonly size: number;
  readonly free: number;
  /** The last slots decoded, newest last. */
  readonly last: readonly string[];
}

export interface LiveConsole {
  readonly domid: number;
  readonly name: string;
  /**
   * What the guest wrote on its PV console (hvc0), as xenconsoled read it from the console
   * ring: its last bytes as text (CONSOLE_TAIL_MAX); null when xenconsoled has no console of it
   * (dom0, or a guest not connected yet).
   */
  readonly output: string | null;
  /** Bytes it wrote on hvc0 in all (the text holds the last ones). */
  readonly outputBytes: number;
  /** The kernel's log (its printk buffer in the hypervisor), last lines. */
  readonly lines: readonly string[];
}

export interface LiveCounters {
  readonly xsRequests: number;
  readonly xsErrors: number;
  readonly watchEvents: number;
  readonly hypercalls: Readonly<Record<string, number>>;
}

export interface LiveState {
  readonly tick: number;
  readonly domains: readonly LiveDomain[];
  readonly nodes: readonly LiveNode[];
  readonly watches: readonly LiveWatch[];
  readonly devices: readonly LiveDevice[];
  readonly grants: readonly LiveGrant[];
  readonly ports: readonly LivePort[];
  readonly rings: readonly LiveRing[];
  readonly consoles: readonly LiveConsole[];
  readonly counters: LiveCounters;
}

export interface LogEntry {
  readonly seq: number;
  readonly t: number;
  readonly conn: string;
  readonly domid: number;
  readonly type: string;
  readonly path: string;
  readonly result: string;
}

/** Most requests one tick sends; more are counted in `counters`, not listed. */
export const LOG_BATCH = 200;
