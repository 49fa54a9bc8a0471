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
