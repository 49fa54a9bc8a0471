/**
 * What every reply must look like, whatever the request was (the fuzzer's oracle), and the
 * counters a run reports: replies by type and error, outcomes by request type and by the kind
 * of path asked for, mutators used, connections dropped, ring errors.
 */
import { XS_ERROR_NAMES } from "../xenstore/errors.ts";
import { parsePerm } from "../xenstore/perms.ts";
import {
  encodePacket,
  fromLatin1,
  getStrings,
  typeName,
  XENSTORE_PAYLOAD_MAX,
  type XsPacket,
  XsType,
} from "../xenstore/wire.ts";
import { hex } from "./mutate.ts";

const ERRORS = new Set<string>(XS_ERROR_NAMES);

/** Requests on a path that answer "OK\0" when they succeed. */
const PATH_OK_TYPES = [
  XsType.WRITE,
  XsType.MKDIR,
  XsType.RM,
  XsType.SET_PERMS,
  XsType.WATCH,
  XsType.UNWATCH,
] as const;

/** Types whose only successful reply is "OK\0". */
const OK_TYPES = new Set<number>([
  ...PATH_OK_TYPES,
  XsType.TRANSACTION_END,
  XsType.INTRODUCE,
  XsType.RELEASE,
  XsType.RESUME,
  XsType.SET_TARGET,
  XsType.RESET_WATCHES,
  XsType.SET_FEATURE,
  XsType.SET_QUOTA,
]);

/** NUL-terminated strings; null if bytes follow the last NUL. */
function nulStrings(b: Uint8Array): string[] | null {
  return b.byteLength > 0 && b[b.byteLength - 1] !== 0 ? null : getStrings(b);
}

/** The error name of an ERROR reply, or null if `p` is not one. */
export function errorName(p: XsPacket): string | null {
  if (p.type !== XsType.ERROR) return null;
  return fromLatin1(p.payload).replace(/\0$/, "");
}

/** A problem with `reply` as the answer to `req`, or null if it is well formed. */
export function replyProblem(req: XsPacket, reply: XsPacket): string | null {
  if (reply.reqId !== req.reqId) return `reply req_id ${reply.reqId} to request req_id ${req.reqId}`;
  if (reply.txId !== req.txId) return `reply tx_id ${reply.txId} to request tx_id ${req.txId}`;
  if (reply.payload.byteLength > XENSTORE_PAYLOAD_MAX) return `reply of ${reply.payload.byteLength} bytes`;
  const body = fromLatin1(reply.payload);
  if (reply.type === XsType.ERROR) {
    const m = /^([A-Z0-9]+)\0$/.exec(body);
    if (m === null || !ERRORS.has(m[1]!)) return `error reply ${JSON.stringify(body)}`;
    return null;
  }
  if (reply.type !== req.type) return `reply type ${typeName(reply.type)} to ${typeName(req.type)}`;
  if (OK_TYPES.has(req.type))
    return body === "OK\0" ? null : `${typeName(req.type)} answered ${JSON.stringify(body)}`;
  switch (req.type) {
    case XsType.TRANSACTION_START:
      return /^[1-9][0-9]*\0$/.test(body) && Number(body.slice(0, -1)) <= 0xffffffff
        ? null
        : `TRANSACTION_START answered ${JSON.stringify(body)}`;
    case XsType.IS_DOMAIN_INTRODUCED:
      return body === "T\0" || body === "F\0"
        ? null
        : `IS_DOMAIN_INTRODUCED answered ${JSON.stringify(body)}`;
    case XsType.GET_DOMAIN_PATH:
      return /^\/local\/domain\/[0-9]+\0$/.test(body)
        ? null
        : `GET_DOMAIN_PATH answered ${JSON.stringify(body)}`;
    case XsType.GET_PERMS: {
      const perms = nulStrings(reply.payload);
      if (perms === null || perms.length === 0 || perms.some((p) => parsePerm(p) === null))
        return `GET_PERMS answered ${JSON.stringify(body)}`;
      return null;
    }
    case XsType.DIRECTORY: {
      const names = nulStrings(reply.payload);
      if (names === null || names.some((n) => n.length === 0 || n.includes("/")))
        return `DIRECTORY answered ${JSON.stringify(body.slice(0, 80))}`;
      return null;
    }
    case XsType.DIRECTORY_PART:
      return /^[0-9]+\0/.test(body) ? null : `DIRECTORY_PART answered ${JSON.stringify(body.slice(0, 80))}`;
    case XsType.CONTROL:
    case XsType.GET_FEATURE:
    case XsType.GET_QUOTA:
      return body.endsWith("\0")
        ? null
        : `${typeName(req.type)} answered ${JSON.stringify(body.slice(0, 80))}`;
    default:
      return null; // READ: any bytes
  }
}

/** A problem with a watch event, or null. */
export function eventProblem(p: XsPacket): string | null {
  if (p.type !== XsType.WATCH_EVENT) return `event of type ${typeName(p.type)}`;
  if (p.reqId !== 0 || p.txId !== 0) return `event with req_id ${p.reqId} tx_id ${p.txId}`;
  const parts = nulStrings(p.payload);
  if (parts === null || parts.length !== 2 || parts[0]!.length === 0)
    return `event payload ${JSON.stringify(fromLatin1(p.payload).slice(0, 80))}`;
  return null;
}

/**
 * Checks what a connection got back for `requests`: every watch event well formed, every
 * other packet a well-formed reply to the next request, in order; counts both, and hands each
 * request and its reply to `onReply`. Returns how many requests were answered.
 */
export function checkInbox(
  inbox: readonly XsPacket[],
  requests: readonly XsPacket[],
  stats: FuzzStats,
  fail: (msg: string) => never,
  onReply?: (req: XsPacket, reply: XsPacket) => void,
): number {
  let i = 0;
  for (const p of inbox) {
    if (p.type === XsType.WATCH_EVENT) {
      stats.events++;
      const ep = eventProblem(p);
      if (ep !== null) fail(ep);
      continue;
    }
    const req = requests[i++];
    if (req === undefined) return fail(`an extra reply ${hex(encodePacket(p))}`);
    const problem = replyProblem(req, p);
    if (problem !== null) fail(`${problem} (request ${hex(encodePacket(req))})`);
    stats.reply(req, p);
    onReply?.(req, p);
  }
  return i;
}

/** Types whose first argument is a path. */
const PATH_TYPES = new Set<number>([
  XsType.READ,
  XsType.DIRECTORY,
  XsType.DIRECTORY_PART,
  XsType.GET_PERMS,
  ...PATH_OK_TYPES,
]);

/** The kind of path a request names, for the coverage counters; null for other types. */
export function pathKind(p: XsPacket): string | null {
  if (!PATH_TYPES.has(p.type)) return null;
  const s = fromLatin1(p.payload);
  const nul = s.indexOf("\0");
  if (nul < 0) return "unterminated";
  const path = s.slice(0, nul);
  if (path.length === 0) return "empty";
  let kind = path.startsWith("@") ? "special" : path.startsWith("/") ? "absolute" : "relative";
  if (!/^[A-Za-z0-9/_@-]*$/.test(path)) kind += "+bad-char";
  else if (path.includes("//") || (path.length > 1 && path.endsWith("/"))) kind += "+bad-slash";
  if (path.length > 2048) kind += "+long";
  return kind;
}

/** Counters of one run, per target and in all. */
export class FuzzStats {
  packets = 0;
  bytes = 0;
  batches = 0;
  events = 0;
  /** Connections the daemon dropped (payload over 4096), and ring connections it ignored. */
  drops = 0;
  goodChecks = 0;
  treeChecks = 0;
  seconds = 0;
  readonly replies = new Map<string, number>();
  readonly outcomes = new Map<string, number>();
  readonly paths = new Map<string, number>();
  readonly mutators = new Map<string, number>();
  readonly ringErrors = new Map<string, number>();

  static bump(m: Map<string, number>, k: string, n = 1): void {
    m.set(k, (m.get(k) ?? 0) + n);
  }

  /** Counts one request and its reply. */
  reply(req: XsPacket, reply: XsPacket): void {
    this.packets++;
    const err = errorName(reply);
    const outcome = err ?? "ok";
    FuzzStats.bump(this.replies, err === null ? typeName(reply.type) : `ERROR ${err}`);
    // Unknown types by number would drown the table: one row for them all.
    const name = typeName(req.type);
    FuzzStats.bump(
      this.outcomes,
      `${name.startsWith("TYPE") && req.type !== 20 ? "unknown type" : name} ${outcome}`,
    );
    const kind = pathKind(req);
    if (kind !== null) FuzzStats.bump(this.paths, `${kind} ${outcome}`);
  }

  merge(o: FuzzStats): void {
    this.packets += o.packets;
    this.bytes += o.bytes;
    this.batches += o.batches;
    this.events += o.events;
    this.drops += o.drops;
    this.goodChecks += o.goodChecks;
    this.treeChecks += o.treeChecks;
    this.seconds += o.seconds;
    for (const k of ["replies", "outcomes", "paths", "mutators", "ringErrors"] as const) {
      for (const [key, n] of o[k]) FuzzStats.bump(this[k], key, n);
    }
  }
}

/** A fuzz failure: what went wrong, and what replays it. */
export class FuzzFailure extends Error {
  readonly target: string;
  readonly seed: number;
  readonly batch: number;
  /** The bytes of the batch being sent when it failed (hex). */
  readonly hex: string;
  constructor(target: string, seed: number, batch: number, hex: string, message: string) {
    super(message);
    this.name = "FuzzFailure";
    this.target = target;
    this.seed = seed;
    this.batch = batch;
    this.hex = hex;
  }

  /** The report printed for a failure: the message, the seed and the bytes. */
  report(): string {
    return (
      `FAIL target=${this.target} seed=${this.seed} batch=${this.batch}: ${this.message}\n` +
      `  replay the run:   npm run fuzz -- --target ${this.target} --seed ${this.seed}\n` +
      `  replay the bytes: npm run fuzz -- --target ${this.target} --replay ${this.hex}\n`
    );
  }
}
