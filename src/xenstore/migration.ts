/**
 * The daemon's whole state as a XenStore migration stream (migration-format.ts), and back:
 * what C xenstored's live update dumps (lu.c `lu_dump_state`) and reads (`lu_read_state`).
 * docs/xenstore-migration.md says what is kept, what is not, and why.
 *
 * Dump, in C's order: GLOBAL, GLOBAL_QUOTA (version 2), dom0's ring connection when dom0 has
 * none (C's reader needs dom0 before the nodes it owns), each connection with its watches, the
 * special nodes, every node parents first (children in their order), DOMAIN records (version 2). Version 1 holds only the record types Xen 4.17 knows (0–5), so its daemon can
 * read it. As in C no TRANSACTION record is written; open transactions are counted and lost.
 *
 * Load, into a running core, through the same requests a privileged client would send (a
 * private socket connection): INTRODUCE for each ring connection's domain, WRITE for each node
 * and SET_PERMS where its inherited permissions are not the stream's, SET_PERMS for the special
 * nodes, SET_TARGET, and then RM of any node the stream does not hold. So the quotas, the
 * journal (`--state`) and the node counters see a load as they see any change, and a
 * privileged writer meets no quota, as C's restore (`no_quota_check`). Watches are added to their domain's connection without an initial
 * event, as C restores them. What the stream holds that a new process cannot take over is
 * reported, not loaded: socket connections (their fds belonged to the old process) and their
 * watches, bytes in flight on a connection, nodes and records of transactions.
 */
import { DOMID_INVALID } from "../xen/xen.ts";
import type { Connection, Daemon } from "./daemon.ts";
import { StateStreamError } from "./errors.ts";
import {
  type ConnSpec,
  type QuotaValue,
  STATE_VERSION_MAX,
  type StatePerm,
  type StateRecord,
  type StateStream,
} from "./migration-format.ts";
import { childPath } from "./paths.ts";
import { formatPerm, type Perms } from "./perms.ts";
import { HARD_QUOTAS, type Quotas, SOFT_QUOTAS } from "./quota.ts";
import { fromLatin1, joinStrings, latin1, type XsPacket, XsType } from "./wire.ts";

/** Special nodes, in the order C dumps them. */
const SPECIAL_NODES = ["@releaseDomain", "@introduceDomain"] as const;
/** C's name of a soft quota: the hard name with this prefix. */
const SOFT_PREFIX = "soft-";
/** xenlab's "no limit" (SET_QUOTA 0); the stream's is 0. */
const UNLIMITED = Number.MAX_SAFE_INTEGER;

export interface DumpResult {
  readonly stream: StateStream;
  /** Open transactions left out (C refuses a live update while any is open). */
  readonly transactions: number;
}

function statePerms(path: string, perms: Perms): StatePerm[] {
  return perms.map((p) => {
    if (p.id > 0xffff)
      throw new StateStreamError(
        `Cannot dump ${path}: its permission ${formatPerm(p)} names a domid the stream's 16 bits cannot hold`,
      );
    return { access: p.perms & 3, domid: p.id, ignore: false };
  });
}

function quotaValue(v: number): number {
  return v > 0xffffffff ? 0 : v;
}

function globalQuotas(quotas: Quotas): QuotaValue[] {
  const out: QuotaValue[] = HARD_QUOTAS.map((q) => ({ name: q.name, value: quotaValue(quotas[q.key]) }));
  for (const q of SOFT_QUOTAS) out.push({ name: SOFT_PREFIX + q.name, value: quotaValue(quotas[q.key]) });
  return out;
}

function domainQuotas(own: Readonly<Partial<Quotas>> | undefined): QuotaValue[] {
  const out: QuotaValue[] = [];
  if (own === undefined) return out;
  for (const q of HARD_QUOTAS) {
    const v = own[q.key];
    if (v !== undefined) out.push({ name: q.name, value: quotaValue(v) });
  }
  for (const q of SOFT_QUOTAS) {
    const v = own[q.key];
    if (v !== undefined) out.push({ name: SOFT_PREFIX + q.name, value: quotaValue(v) });
  }
  return out;
}

/** A connection with nothing in flight: xenlab dumps between requests. */
function connectionRecord(connId: number, spec: ConnSpec): StateRecord {
  const none = new Uint8Array(0);
  return { type: "connection", connId, spec, inData: none, outRespLen: 0, outData: none, uniqueId: null };
}

/** A committed node (outside any transaction). */
function nodeRecord(path: string, value: Uint8Array, perms: Perms): StateRecord {
  return { type: "node", connId: 0, txId: 0, access: 0, path, value, perms: statePerms(path, perms) };
}

/** A watch's path as its client gave it: relative watches without their home. */
function watchPath(node: string, relativeTo: string | null): string {
  return relativeTo === null ? node : node.slice(relativeTo.length + 1);
}

/** The daemon's state as a stream (version 2 by default; 1 for Xen 4.17's reader). */
export function dumpState(d: Daemon, opts: { readonly version?: number } = {}): DumpResult {
  const version = opts.version ?? STATE_VERSION_MAX;
  if (version !== 1 && version !== 2) throw new RangeError(`Cannot dump version ${version}: use 1 or 2`);
  const records: StateRecord[] = [{ type: "global", socketFd: -1, evtchnFd: -1 }];
  if (version >= 2) records.push({ type: "global-quota", domain: globalQuotas(d.quotas), global: [] });
  let transactions = 0;
  const dom0 = d.domains.get(0);
  if (dom0 !== undefined && dom0.conn === null) {
    // C xenstored always has dom0's ring (it maps dom0's page at start), and its reader needs
    // dom0 known before any node dom0 owns: a daemon without one writes it, with no watches.
    let id = 1;
    for (const c of d.connections) id = Math.max(id, c.id + 1);
    records.push(connectionRecord(id, { kind: "ring", domid: 0, tdomid: DOMID_INVALID, evtchn: dom0.port }));
  }
  for (const conn of d.connections) {
    const domain = d.domains.get(conn.domid);
    const ring = domain !== undefined && domain.conn === conn;
    records.push(
      connectionRecord(
        conn.id,
        ring
          ? { kind: "ring", domid: conn.domid, tdomid: conn.target ?? DOMID_INVALID, evtchn: domain.port }
          : { kind: "socket", fd: -1 },
      ),
    );
    for (const w of conn.watches)
      records.push({
        type: "watch",
        connId: conn.id,
        path: watchPath(w.node, w.relativeTo),
        token: w.token,
        depth: null,
      });
    transactions += conn.transactions.size;
  }
  for (const name of SPECIAL_NODES) {
    const perms = d.specialPerms.get(name);
    if (perms !== undefined) records.push(nodeRecord(name, new Uint8Array(0), perms));
  }
  const nodes = d.store.nodes;
  const walk = (name: string): void => {
    const n = nodes.get(name);
    if (n === undefined) return;
    records.push(nodeRecord(name, latin1(n.value), n.perms));
    for (const c of n.children) walk(childPath(name, c));
  };
  walk("/");
  if (version >= 2) {
    for (const dom of d.domains.values()) {
      if (dom.conn === null) continue;
      records.push({
        type: "domain",
        domid: dom.domid,
        features: 0,
        quotas: domainQuotas(d.accounts.overrides(dom.domid)),
      });
    }
  }
  return { stream: { version, bigEndian: false, records }, transactions };
}

// ------------------------------------------------------------------------------ loading

/** What a load needs of the core: a privileged connection and its requests. */
export interface LoadTarget extends Daemon {
  connectSocket(): Connection;
  step(conn: Connection, req: XsPacket): { readonly reply: XsPacket };
}

export interface LoadResult {
  readonly nodes: number;
  readonly domains: number;
  readonly watches: number;
  /** What the stream held that this load could not take over, one line each. */
  readonly dropped: readonly string[];
}

function setQuotas(d: Daemon, domid: number | null, quotas: readonly QuotaValue[], dropped: string[]): void {
  for (const q of quotas) {
    const soft = q.name.startsWith(SOFT_PREFIX);
    const table = soft ? SOFT_QUOTAS : HARD_QUOTAS;
    const name = soft ? q.name.slice(SOFT_PREFIX.length) : q.name;
    const entry = table.find((x) => x.name === name);
    if (entry === undefined) {
      dropped.push(`quota "${q.name}"${domid === null ? "" : ` of domain ${domid}`}: unknown to xenlab`);
      continue;
    }
    const v = q.value === 0 ? UNLIMITED : q.value;
    if (domid === null) d.quotas[entry.key] = v;
    else d.accounts.setLimit(domid, entry.key, v);
  }
}

/** Sends one request on `conn`; an error reply throws, naming what was being restored. */
function request(
  core: LoadTarget,
  conn: Connection,
  type: number,
  args: readonly string[],
  what: string,
  tail?: Uint8Array,
): void {
  const payload = joinStrings(args, tail);
  const { reply } = core.step(conn, { type, reqId: 0, txId: 0, payload });
  if (reply.type === XsType.ERROR)
    throw new StateStreamError(`Cannot restore ${what}: ${fromLatin1(reply.payload).replace(/\0$/, "")}`);
}

function permStrings(perms: readonly StatePerm[]): string[] {
  // A stale entry (its domain went away): C keeps it, ignores it when checking, and still
  // lists it in GET_PERMS. xenlab removes a gone domain from every ACL when it releases it
  // (domain.ts), so that the next domain given that domid gets none of its rights; a stale
  // entry is dropped here likewise. The owner stays whatever it is.
  return perms
    .filter((p, i) => i === 0 || !p.ignore)
    .map((p) => formatPerm({ id: p.domid, perms: p.access }));
}

/**
 * Replaces the core's nodes, special permissions, quotas and domains with the stream's, and
 * adds the watches of its ring connections. Throws StateStreamError when a record refers to
 * what the stream has not defined or the core refuses a record; what was loaded until then
 * stays (a daemon loads before it serves anyone, and stops on the error).
 */
export function loadState(core: LoadTarget, stream: StateStream): LoadResult {
  const dropped: string[] = [];
  const rings = new Map<number, { domid: number; tdomid: number }>();
  const kinds = new Map<number, string>();
  const conn = core.connectSocket();
  const inStream = new Set<string>();
  let nodes = 0;
  let domains = 0;
  let watches = 0;
  const pendingWatches: { connId: number; path: string; token: string }[] = [];
  try {
    for (const r of stream.records) {
      switch (r.type) {
        case "global":
          break;
        case "global-quota":
          setQuotas(core, null, [...r.domain, ...r.global], dropped);
          break;
        case "connection": {
          if (r.connId === 0 || kinds.has(r.connId))
            throw new StateStreamError(`Cannot restore connection ${r.connId}: its id is 0 or used twice`);
          const spec = r.spec;
          if (spec.kind === "socket") {
            kinds.set(r.connId, "socket");
            dropped.push(
              `connection ${r.connId} (socket fd ${spec.fd}): a socket does not outlive its process`,
            );
            break;
          }
          kinds.set(r.connId, "ring");
          rings.set(r.connId, { domid: spec.domid, tdomid: spec.tdomid });
          if (r.inData.byteLength + r.outData.byteLength > 0)
            dropped.push(
              `connection ${r.connId} (domain ${spec.domid}): ${r.inData.byteLength} bytes in, ${r.outData.byteLength} bytes out in flight`,
            );
          if (spec.domid !== 0 && !core.domains.has(spec.domid)) {
            // The page's frame is not in the stream (the guest's grant entry 1 holds it).
            request(
              core,
              conn,
              XsType.INTRODUCE,
              [String(spec.domid), "0", String(spec.evtchn)],
              `domain ${spec.domid}`,
            );
            domains++;
          }
          break;
        }
        case "watch": {
          const kind = kinds.get(r.connId);
          if (kind === undefined)
            throw new StateStreamError(
              `Cannot restore watch ${r.path} (${r.token}): connection ${r.connId} comes later or not at all`,
            );
          if (kind === "socket")
            dropped.push(`watch ${r.path} (token ${r.token}) of socket connection ${r.connId}`);
          else pendingWatches.push({ connId: r.connId, path: r.path, token: r.token });
          break;
        }
        case "transaction":
          dropped.push(`transaction ${r.txId} of connection ${r.connId}`);
          break;
        case "node": {
          if (r.connId !== 0) {
            dropped.push(`node ${r.path} in transaction ${r.txId} of connection ${r.connId}`);
            break;
          }
          if (r.perms.length === 0)
            throw new StateStreamError(`Cannot restore ${r.path}: it has no permissions`);
          const perms = permStrings(r.perms);
          let have: Perms | undefined;
          if (r.path.startsWith("@")) {
            have = core.specialPerms.get(r.path);
          } else {
            inStream.add(r.path);
            request(core, conn, XsType.WRITE, [r.path], r.path, r.value);
            have = core.store.nodes.get(r.path)?.perms;
            nodes++;
          }
          // A new node has its parent's permissions already, most often the ones it should have.
          if (have === undefined || have.map(formatPerm).join(",") !== perms.join(","))
            request(core, conn, XsType.SET_PERMS, [r.path, ...perms], `the permissions of ${r.path}`);
          break;
        }
        case "domain":
          if (!core.domains.has(r.domid))
            throw new StateStreamError(
              `Cannot restore domain ${r.domid}'s quotas: no connection introduced it`,
            );
          setQuotas(core, r.domid, r.quotas, dropped);
          break;
        case "unknown":
          dropped.push(`record of type ${r.code} (${r.body.byteLength} bytes): unknown to xenlab`);
          break;
      }
    }
    for (const { domid, tdomid } of rings.values()) {
      if (tdomid !== DOMID_INVALID && domid !== 0)
        request(
          core,
          conn,
          XsType.SET_TARGET,
          [String(domid), String(tdomid)],
          `domain ${domid}'s target ${tdomid}`,
        );
    }
    removeOthers(core, conn, inStream);
    for (const w of pendingWatches) {
      const domid = rings.get(w.connId)!.domid;
      const target = core.domains.get(domid)?.conn ?? null;
      if (target === null) {
        dropped.push(
          `watch ${w.path} (token ${w.token}) of domain ${domid}'s connection: no such connection here`,
        );
        continue;
      }
      const relative = !w.path.startsWith("/") && !w.path.startsWith("@");
      core.watches.add(
        target,
        relative ? `${target.home}/${w.path}` : w.path,
        w.token,
        relative ? target.home : null,
      );
      watches++;
    }
  } finally {
    core.disconnect(conn);
  }
  return { nodes, domains, watches, dropped };
}

/** RM of every node the core holds and the stream does not (the top-most of each subtree). */
function removeOthers(core: LoadTarget, conn: Connection, keep: ReadonlySet<string>): void {
  if (!keep.has("/")) return;
  const extra: string[] = [];
  const walk = (name: string): void => {
    const n = core.store.nodes.get(name);
    if (n === undefined) return;
    for (const c of n.children) {
      const p = childPath(name, c);
      if (keep.has(p)) walk(p);
      else extra.push(p);
    }
  };
  walk("/");
  for (const p of extra) request(core, conn, XsType.RM, [p], `(removing) ${p}`);
}
