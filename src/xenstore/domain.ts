/**
 * Domains (C xenstored_domain.c): INTRODUCE, RELEASE, RESUME, IS_DOMAIN_INTRODUCED,
 * SET_TARGET and GET_DOMAIN_PATH, the per-domain features and quotas (GET/SET_FEATURE,
 * GET/SET_QUOTA, as current Xen has them), and what letting go of a domain does to the store.
 */

import { XS_SERVER_FEATURE } from "../ring/byte-ring.ts";
import { DOMID_SELF } from "../xen/xen.ts";
import { type Daemon, type Delivery, type Domain, OK, type RequestContext } from "./daemon.ts";
import { XsError } from "./errors.ts";
import { childPath } from "./paths.ts";
import { HARD_QUOTAS } from "./quota.ts";
import { View } from "./store.ts";
import { atoi, getStrings, onearg } from "./wire.ts";

/**
 * The `server_features` bits this daemon offers (C xenstored 4.17: reconnection and error
 * reporting): advertised in each ring's page and answered to GET_FEATURE.
 */
export const OFFERED_FEATURES = XS_SERVER_FEATURE.reconnection | XS_SERVER_FEATURE.error;

/** GET_DOMAIN_PATH `domid|`: `/local/domain/<domid>`, known or not. */
export function doGetDomainPath(_d: Daemon, ctx: RequestContext): string {
  const arg = onearg(ctx.payload);
  if (arg === null) throw new XsError("EINVAL");
  return `/local/domain/${atoi(arg) >>> 0}\0`;
}

/** IS_DOMAIN_INTRODUCED `domid|`: `T` or `F` (DOMID_SELF is always introduced). */
export function doIsDomainIntroduced(d: Daemon, ctx: RequestContext): string {
  const arg = onearg(ctx.payload);
  if (arg === null) throw new XsError("EINVAL");
  const domid = atoi(arg) >>> 0;
  return domid === DOMID_SELF || d.domains.has(domid) ? "T\0" : "F\0";
}

/** INTRODUCE `domid|gfn|port|` (C `do_introduce`); again for a known domain, a restore. */
export function doIntroduce(d: Daemon, ctx: RequestContext): string {
  const args = getStrings(ctx.payload);
  if (args.length < 3) throw new XsError("EINVAL");
  const domid = atoi(args[0]!) >>> 0;
  const port = atoi(args[2]!) >>> 0;
  if (port === 0) throw new XsError("EINVAL");
  // DOMID_FIRST_RESERVED and above (DOMID_SELF, DOMID_IO, ...) name no domain: mapping fails.
  if (domid >= DOMID_SELF) throw new XsError("EINVAL");
  const existing = d.domains.get(domid);
  if (existing !== undefined) {
    // Re-introduction (restore): rebind the event channel; the ring side resets its connection.
    existing.port = port;
    d.journal?.metaChanged();
    d.hooks.reintroduce?.(domid, port);
    return OK;
  }
  // Without a hypervisor attached the domain still gets a connection (with no ring), so
  // it is "connected" for SET_TARGET, as every introduced domain is in C xenstored.
  const conn = d.hooks.introduce?.(domid, args[1]!, port) ?? d.connectDomain(domid);
  d.domains.set(domid, { domid, conn, gfn: args[1]!, port, shutdown: false });
  d.writeRate.addDomain(domid);
  d.journal?.metaChanged();
  d.log.info({ domid, port }, `domain ${domid} introduced`);
  d.watches.fire("@introduceDomain", null, true, null, ctx.before);
  return OK;
}

/** `domid|` naming an introduced domain other than dom0 (C `onearg_domain`). */
function oneargDomain(d: Daemon, ctx: RequestContext): Domain {
  const arg = onearg(ctx.payload);
  if (arg === null) throw new XsError("EINVAL");
  const domid = atoi(arg) >>> 0;
  if (domid === 0) throw new XsError("EINVAL");
  const domain = d.domains.get(domid);
  if (domain === undefined) throw new XsError("ENOENT");
  return domain;
}

/** RELEASE `domid|` (C `do_release`). */
export function doRelease(d: Daemon, ctx: RequestContext): string {
  const domain = oneargDomain(d, ctx);
  ctx.before.push(...releaseDomain(d, domain.domid));
  return OK;
}

/** RESUME `domid|`: the next shutdown fires @releaseDomain again. */
export function doResume(d: Daemon, ctx: RequestContext): string {
  oneargDomain(d, ctx).shutdown = false;
  return OK;
}

/** SET_TARGET `domid|target|`: `domid` may act for `target` (a stub domain for its guest). */
export function doSetTarget(d: Daemon, ctx: RequestContext): string {
  const args = getStrings(ctx.payload);
  if (args.length < 2) throw new XsError("EINVAL");
  const connected = (domid: number): Domain => {
    const domain = d.domains.get(domid);
    if (domain === undefined) throw new XsError("ENOENT");
    if (domain.conn === null && domid !== 0) throw new XsError("EINVAL");
    return domain;
  };
  const domain = connected(atoi(args[0]!) >>> 0);
  const target = connected(atoi(args[1]!) >>> 0);
  if (domain.conn !== null) domain.conn.target = target.domid;
  return OK;
}

/** GET_FEATURE `[domid|]`: the features offered (a domain's, for the privileged). */
export function doGetFeature(d: Daemon, ctx: RequestContext): string {
  const args = getStrings(ctx.payload);
  if (args.length > 1) throw new XsError("EINVAL");
  if (args.length === 1) {
    if (!ctx.conn.privileged) throw new XsError("EACCES");
    if (!d.domains.has(atoi(args[0]!) >>> 0)) throw new XsError("ENOENT");
  }
  return `${OFFERED_FEATURES}\0`;
}

/** SET_FEATURE `domid|features|`. */
export function doSetFeature(d: Daemon, ctx: RequestContext): string {
  const args = getStrings(ctx.payload);
  if (args.length !== 2) throw new XsError("EINVAL");
  if (!d.domains.has(atoi(args[0]!) >>> 0)) throw new XsError("ENOENT");
  // Features can only be taken away from what the server offers.
  if ((atoi(args[1]!) >>> 0) & ~OFFERED_FEATURES) throw new XsError("EINVAL");
  return OK;
}

/** GET_QUOTA `[[domid|]name|]`: the quota names, a global value, or a domain's. */
export function doGetQuota(d: Daemon, ctx: RequestContext): string {
  const args = getStrings(ctx.payload);
  if (args.length === 0) return `${HARD_QUOTAS.map((q) => q.name).join(" ")}\0`;
  const name = args[args.length - 1]!;
  const q = HARD_QUOTAS.find((x) => x.name === name);
  if (q === undefined || args.length > 2) throw new XsError("EINVAL");
  if (args.length === 1) return `${d.quotas[q.key]}\0`;
  const domid = atoi(args[0]!) >>> 0;
  if (!d.domains.has(domid)) throw new XsError("ENOENT");
  return `${d.accounts.limit(domid, q.key)}\0`;
}

/** SET_QUOTA `[domid|]name|value|`; 0 is no limit. */
export function doSetQuota(d: Daemon, ctx: RequestContext): string {
  const args = getStrings(ctx.payload);
  if (args.length < 2 || args.length > 3) throw new XsError("EINVAL");
  const name = args[args.length - 2]!;
  const q = HARD_QUOTAS.find((x) => x.name === name);
  if (q === undefined) throw new XsError("EINVAL");
  const domid = args.length === 3 ? atoi(args[0]!) >>> 0 : null;
  if (domid !== null && !d.domains.has(domid)) throw new XsError("ENOENT");
  const v = atoi(args[args.length - 1]!);
  if (v < 0) throw new XsError("EINVAL");
  const value = v === 0 ? Number.MAX_SAFE_INTEGER : v;
  // A domain's own value is kept apart from the global one, as current Xen keeps it.
  if (domid === null) d.quotas[q.key] = value;
  else d.accounts.setLimit(domid, q.key, value);
  d.log.info({ domid, quota: q.name, value }, `quota ${q.name} set to ${value}`);
  return OK;
}

/**
 * Forgets a domain (RELEASE, or the domain died): drops its connection, deletes the
 * nodes it owns (or gives them to dom0 with keepOrphans), removes it from every ACL,
 * and fires `@releaseDomain`.
 */
export function releaseDomain(d: Daemon, domid: number): Delivery[] {
  const domain = d.domains.get(domid);
  if (domain === undefined || domid === 0) return [];
  d.domains.delete(domid);
  if (domain.conn !== null) d.disconnect(domain.conn);
  for (const c of [...d.connections]) if (c.domid === domid && !c.privileged) d.disconnect(c);
  d.hooks.release?.(domid);
  const events: Delivery[] = [];
  const view = new View(d.store, null, (id, delta) => d.entryAdjust(id, delta), Number.POSITIVE_INFINITY);
  if ((d.entries.get(domid) ?? 0) > 0) {
    const visit = (name: string): void => {
      const n = d.store.nodes.get(name);
      if (n === undefined) return;
      if (n.perms[0]!.id === domid) {
        if (d.keepOrphans) {
          const perms = [{ id: 0, perms: n.perms[0]!.perms }, ...n.perms.slice(1)];
          d.store.nodes.set(name, { ...n, perms });
          d.entryAdjust(domid, -1);
          d.entryAdjust(0, 1);
        } else {
          d.rmNode(view, name);
          return;
        }
      }
      // A copy: removing a child changes the list being walked.
      for (const c of n.children.toArray()) visit(childPath(name, c));
    };
    visit("/");
  }
  d.watches.fireAll(view.fires, events);
  stripDomainFromAcls(d, domid);
  d.accounts.forget(domid);
  d.writeRate.removeDomain(domid);
  d.log.info({ domid }, `domain ${domid} released`);
  d.watches.fire("@releaseDomain", null, true, null, events);
  d.journal?.metaChanged();
  d.journal?.commit();
  return events;
}

/** A gone domain must not hand its rights to the next domain given its domid. */
function stripDomainFromAcls(d: Daemon, domid: number): void {
  for (const [name, n] of d.store.nodes) {
    if (n.perms.length < 2 || !n.perms.some((p, i) => i > 0 && p.id === domid)) continue;
    d.store.nodes.set(name, { ...n, perms: n.perms.filter((p, i) => i === 0 || p.id !== domid) });
  }
  for (const [name, p] of d.specialPerms) {
    const owner = p[0]!.id === domid ? { id: 0, perms: p[0]!.perms } : p[0]!;
    d.specialPerms.set(name, [owner, ...p.slice(1).filter((e) => e.id !== domid)]);
  }
}
