/**
 * XenStore quotas with C xenstored's names and defaults (xenstored_core.c globals,
 * xenstored_control.c `hard_quotas`/`soft_quotas`). Quotas never apply to the privileged
 * domain.
 */

export interface Quotas {
  /** Nodes owned per domain (-E, `nodes`). */
  nodes: number;
  /** Watches per domain (-W, `watches`). */
  watches: number;
  /** Open transactions per domain (-t, `transactions`). */
  transactions: number;
  /** Outstanding requests per domain (-Q outstanding=, `outstanding`). */
  outstanding: number;
  /** Nodes one transaction may touch (-Q transaction-nodes=, `transaction-nodes`). */
  transactionNodes: number;
  /** Memory per domain, hard limit (-Q memory=, `memory`). */
  memory: number;
  /** Size of one node record: 16-byte header + 8 per perm + value + child names (-S, `node-size`). */
  nodeSize: number;
  /** Path length after `/local/domain/<id>/` (-M, `path-max`). */
  pathMax: number;
  /** Permission entries per node (-A, `permissions`). */
  permissions: number;
  /** Memory per domain, soft limit: a warning (-q memory=, soft `memory`). */
  memorySoft: number;
}

export const DEFAULT_QUOTAS: Readonly<Quotas> = {
  nodes: 1000,
  watches: 128,
  transactions: 10,
  outstanding: 20,
  transactionNodes: 1024,
  memory: 2 * 1024 * 1024 + 512 * 1024,
  nodeSize: 2048,
  pathMax: 2048,
  permissions: 5,
  memorySoft: 2 * 1024 * 1024,
};

/** CONTROL `quota` names, in the order and with the descriptions C xenstored prints. */
export const HARD_QUOTAS: ReadonlyArray<{ name: string; key: keyof Quotas; descr: string }> = [
  { name: "nodes", key: "nodes", descr: "Nodes per domain" },
  { name: "watches", key: "watches", descr: "Watches per domain" },
  { name: "transactions", key: "transactions", descr: "Transactions per domain" },
  { name: "outstanding", key: "outstanding", descr: "Outstanding requests per domain" },
  {
    name: "transaction-nodes",
    key: "transactionNodes",
    descr: "Max. number of accessed nodes per transaction",
  },
  { name: "memory", key: "memory", descr: "Total Xenstore memory per domain (error level)" },
  { name: "node-size", key: "nodeSize", descr: "Max. size of a node" },
  { name: "path-max", key: "pathMax", descr: "Max. length of a node path" },
  { name: "permissions", key: "permissions", descr: "Max. number of permissions per node" },
];

export const SOFT_QUOTAS: ReadonlyArray<{ name: string; key: keyof Quotas; descr: string }> = [
  { name: "memory", key: "memorySoft", descr: "Total Xenstore memory per domain (warning level)" },
];
