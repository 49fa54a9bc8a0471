/**
 * The trace events of xenstored (src/lib/tracer.ts): what the live view learns of each request
 * and each watch event it queues. Built only while a subscriber listens.
 */
import type { Tracer } from "../lib/tracer.ts";
import type { Connection, Delivery } from "./daemon.ts";
import { firstString, fromLatin1, getStrings, typeName, type XsPacket, XsType } from "./wire.ts";

/** A connection, as the events name it. */
export interface XsTraceConn {
  /** The connection's number (the trace file's `0x…`). */
  readonly conn: number;
  readonly domid: number;
  /** `socket#3` or `dom5`. */
  readonly label: string;
}

export type XsTraceEvent =
  /** One request answered: its type's name, the path it named (empty for none), OK or the errno. */
  | (XsTraceConn & {
      readonly kind: "xs-request";
      readonly type: string;
      readonly path: string;
      readonly tx: number;
      readonly result: string;
    })
  /** A watch event queued for a connection (C `fire_watches` → `send_event`). */
  | (XsTraceConn & { readonly kind: "xs-watch-event"; readonly path: string; readonly token: string })
  | (XsTraceConn & { readonly kind: "xs-connection"; readonly open: boolean });

/** The first argument as the daemon reads it, one char per byte (a path as the store keys it). */
function latin1Arg(b: Uint8Array): string {
  const end = b.indexOf(0);
  return fromLatin1(b, 0, end === -1 ? b.byteLength : end);
}

const SLASH = 47;
const AT = 64;
/** The requests whose first argument is a node's path, relative ones under the caller's home. */
const PATH_TYPES: ReadonlySet<number> = new Set([
  XsType.READ,
  XsType.WRITE,
  XsType.MKDIR,
  XsType.RM,
  XsType.DIRECTORY,
  XsType.DIRECTORY_PART,
  XsType.GET_PERMS,
  XsType.SET_PERMS,
  XsType.WATCH,
  XsType.UNWATCH,
]);

/**
 * The events of one answered request: the request (with its first argument: the path, absolute,
 * for a node request), then the watch events it queued.
 */
export function traceStep(
  t: Tracer<XsTraceEvent>,
  conn: Connection,
  req: XsPacket,
  reply: XsPacket,
  events: readonly Delivery[],
): void {
  const noPath = req.type === XsType.TRANSACTION_START || req.type === XsType.TRANSACTION_END;
  let path = noPath ? "" : latin1Arg(req.payload);
  const c = path.charCodeAt(0);
  if (PATH_TYPES.has(req.type) && path !== "" && c !== SLASH && c !== AT) path = `${conn.home}/${path}`;
  const result = reply.type === XsType.ERROR ? firstString(reply.payload) : "OK";
  t.emit({
    kind: "xs-request",
    conn: conn.id,
    domid: conn.domid,
    label: conn.label,
    type: typeName(req.type),
    path,
    tx: req.txId,
    result,
  });
  for (const d of events) {
    if (d.packet.type !== XsType.WATCH_EVENT) continue;
    const [p = "", token = ""] = getStrings(d.packet.payload);
    t.emit({
      kind: "xs-watch-event",
      conn: d.conn.id,
      domid: d.conn.domid,
      label: d.conn.label,
      path: p,
      token,
    });
  }
}
