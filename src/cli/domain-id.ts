/**
 * A DOMAIN argument as xl takes it (libxl_domain_qualifier_to_domid): a domid, or the name of a
 * running domain; and xl's words when it is neither.
 */
import { controlCall, type ListedDomain } from "../host/control-client.ts";

/** The domid `q` names: itself when it is a number, else the domain of that name; undefined if none. */
export async function domainId(ctl: string, q: string): Promise<number | undefined> {
  if (/^\d+$/.test(q)) return Number(q);
  const list = (await controlCall(ctl, { op: "list" })) as ListedDomain[];
  return list.find((d) => d.name === q)?.domid;
}

/** xl's message for a DOMAIN that names no domain. */
export function invalidDomain(q: string): string {
  return `${q} is an invalid domain identifier (rc=-6)`;
}

/** The domid `q` names; when none, xl's line on stderr and undefined. */
export async function domainIdOrSay(ctl: string, q: string): Promise<number | undefined> {
  const domid = await domainId(ctl, q);
  if (domid === undefined) process.stderr.write(`${invalidDomain(q)}\n`);
  return domid;
}

/**
 * xl's `*-list DOMAIN...` verbs: the rows `list` gives for each DOMAIN in turn. A DOMAIN that
 * names no domain gets xl's line on stderr, the others are still listed, and `bad` is set (exit 1).
 */
export async function listEachDomain<R>(
  ctl: string,
  queries: readonly string[],
  list: (domid: number) => Promise<readonly R[]>,
): Promise<{ rows: R[]; bad: boolean }> {
  const rows: R[] = [];
  let bad = false;
  for (const q of queries) {
    const domid = await domainIdOrSay(ctl, q);
    if (domid === undefined) bad = true;
    else rows.push(...(await list(domid)));
  }
  return { rows, bad };
}
