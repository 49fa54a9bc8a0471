/**
 * Why a device is where it is: one line that says what each end of a XenBus device waits for,
 * from what XenStore and the two kernels show. Linux can only say
 * `Timeout connecting to device: device/vfb/0 (local state 3, remote state 1)`; this says which
 * end holds the handshake up and on what.
 *
 * The handshake it reads (io/xenbus.h, io/blkif.h "Standard handshake", Linux xenbus_probe.c):
 *
 *   toolstack   writes both directories, both `state` = Initialising (1)
 *   backend     probed by its driver; publishes its features; → InitWait (2)
 *   frontend    probed by its driver; once the backend is in InitWait, grants its ring, allocates
 *               an event channel, writes `ring-ref` and `event-channel`; → Initialised (3)
 *   backend     maps the ring, binds the port; → Connected (4)
 *   frontend    sees Connected; → Connected (4)
 *   close       either end → Closing (5); the other follows; both → Closed (6); the toolstack
 *               removes the directories. A driver that fails writes `error/<nodename>/error` in
 *               its own domain's home (xenbus_dev_fatal) and goes Closing.
 *
 * Worked examples (each a test in test/xenbus/why-stuck.test.ts):
 *
 *   frontend 1, backend 1, no frontend driver   frontend Initialising: no driver for alice_dev in domain 1
 *   frontend 1, backend 2                       backend InitWait: waits for the frontend's ring-ref and event-channel (frontend Initialising)
 *   frontend 3, backend 2                       backend InitWait: the frontend is Initialised (ring-ref = 8, event-channel = 3); waits for domain 0 to map the ring and bind the port
 *   frontend 5, error in the guest's home       frontend Closing: error/device/vbd/51712/error = ENOSPC …
 *   frontend 4, backend 4                       connected
 */
import { XenbusState, xenbusStateName } from "../xen/xenbus-abi.ts";

/** One end of a device as the toolstack sees it. */
export interface DeviceEnd {
  readonly domid: number;
  /** Its directory, absolute. */
  readonly path: string;
  /** Its `state` key as a number; undefined when the directory or the key is missing. */
  readonly state: number | undefined;
  /** The keys in its directory and their values. */
  readonly keys: ReadonlyMap<string, string>;
  /** `error/<nodename>/error` in its domain's home, with the path it was read at. */
  readonly error?: { readonly path: string; readonly value: string };
  /** Whether its domain's kernel has a driver for the type on this end's bus (undefined: unknown). */
  readonly hasDriver: boolean | undefined;
}

export interface DeviceView {
  readonly type: string;
  readonly devid: string;
  readonly frontend: DeviceEnd;
  readonly backend: DeviceEnd;
}

/** `Connected (4)`, `missing` for no state. */
export function stateText(state: number | undefined): string {
  return state === undefined ? "missing" : `${xenbusStateName(state)} (${state})`;
}

function name(state: number | undefined): string {
  return state === undefined ? "missing" : xenbusStateName(state);
}

/** Closing or Closed (Reconfiguring and Reconfigured, 7 and 8, are not). */
function isClosing(state: number | undefined): boolean {
  return state === XenbusState.Closing || state === XenbusState.Closed;
}

/** The keys by which a frontend publishes its rings and ports (`ring-ref`, `tx-ring-ref`, `event-channel`, …). */
function ringKeys(keys: ReadonlyMap<string, string>): string[] {
  return [...keys.keys()].filter((k) => /(^|-)ring-ref\d*$|^event-channel(-\w+)?$/.test(k)).sort();
}

/** The one line that says why the device is where it is. */
export function whyStuck(d: DeviceView): string {
  const fe = d.frontend;
  const be = d.backend;
  const S = XenbusState;
  // A driver that failed said why, in its own domain's error node: that is the answer.
  for (const [end, side] of [
    ["frontend", fe],
    ["backend", be],
  ] as const) {
    if (side.error !== undefined)
      return `${end} ${name(side.state)}: ${side.error.path} = ${side.error.value}`;
  }
  // libxl writes the primary console's backend directory too, but its frontend is the guest's
  // `console` directory, not a XenBus device: xenconsoled serves it from `ring-ref` and `port`.
  if (d.type === "console" && fe.path === `/local/domain/${fe.domid}/console`) {
    const ring = fe.keys.get("ring-ref");
    const port = fe.keys.get("port");
    return ring !== undefined && port !== undefined
      ? `the primary console: no XenBus handshake, xenconsoled serves ring-ref ${ring}, port ${port}`
      : `the primary console: waits for the guest's console/ring-ref and console/port`;
  }
  if (fe.state === undefined && be.state === undefined) return "neither end has a state key";
  if (fe.state === undefined) return `frontend missing: domain ${fe.domid} has no ${fe.path}/state`;
  if (be.state === undefined) return `backend missing: domain ${be.domid} has no ${be.path}/state`;
  if (fe.state === S.Connected && be.state === S.Connected) return "connected";

  if (isClosing(fe.state) || isClosing(be.state)) {
    if (fe.state === S.Closed && be.state === S.Closed)
      return "closed: waits for the toolstack to remove the device";
    const [closing, self, otherName, other] = isClosing(fe.state)
      ? (["frontend", fe, "backend", be] as const)
      : (["backend", be, "frontend", fe] as const);
    if (isClosing(other.state)) {
      return `${closing} ${name(self.state)}: waits for the ${otherName} to reach Closed (${otherName} ${name(other.state)})`;
    }
    return `${closing} ${name(self.state)}: waits for the ${otherName} to close (${otherName} ${name(other.state)})`;
  }

  if (be.state <= S.Initialising) {
    if (be.hasDriver === false && fe.hasDriver === false && fe.state <= S.Initialising) {
      return `both Initialising: no driver for ${d.type} in domain ${be.domid} (backend) nor in domain ${fe.domid} (frontend)`;
    }
    if (be.hasDriver === false) return `backend Initialising: no driver for ${d.type} in domain ${be.domid}`;
    if (fe.hasDriver === false) return `frontend Initialising: no driver for ${d.type} in domain ${fe.domid}`;
    return `backend Initialising: domain ${be.domid}'s ${d.type} driver has not gone to InitWait (see its dmesg)`;
  }
  if (fe.state <= S.Initialising || fe.state === S.InitWait) {
    if (fe.hasDriver === false) return `frontend Initialising: no driver for ${d.type} in domain ${fe.domid}`;
    const published = ringKeys(fe.keys);
    const has = published.length === 0 ? "" : `; it wrote ${published.join(", ")}`;
    return `backend ${name(be.state)}: waits for the frontend's ring-ref and event-channel (frontend ${name(fe.state)}${has})`;
  }
  if (fe.state === S.Initialised) {
    if (be.state === S.Connected) {
      return `frontend Initialised: the backend is Connected; waits for domain ${fe.domid} to see it and connect`;
    }
    const refs = ringKeys(fe.keys)
      .map((k) => `${k} = ${fe.keys.get(k)}`)
      .join(", ");
    return `backend ${name(be.state)}: the frontend is Initialised (${refs || "no ring-ref or event-channel"}); waits for domain ${be.domid} to map the ring and bind the port`;
  }
  // The frontend is Connected and the backend is not (yet): a frontend that connected early.
  return `frontend Connected, backend ${name(be.state)}: waits for domain ${be.domid} to connect`;
}
