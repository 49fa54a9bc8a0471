/**
 * Permission changes against the reference C xenstored and xenlab, as dom0 over the socket:
 * the forms SET_PERMS accepts and rejects, inheritance by new and implicitly created nodes,
 * the special @ nodes, and the watch events a change fires. (Unprivileged callers come
 * through a guest's ring, which this socket-level comparison does not reach: the core's
 * scenario tables, test/xenstore/core.test.ts, cover them.)
 */
import { type DiffTables, describeDiff } from "../helpers/diff-pair.ts";
import type { Step } from "../helpers/xs-script.ts";

const P = "/pt";

/** SET_PERMS `${P}/n` with these entries, then GET_PERMS to see what was stored. */
function setAndGet(entries: readonly string[], note: string): Step[] {
  return [
    { on: "a", op: "SET_PERMS", args: [`${P}/n`, ...entries], note },
    { on: "a", op: "GET_PERMS", args: [`${P}/n`] },
  ];
}

const TABLES: DiffTables = [
  [
    "the permission forms SET_PERMS accepts and rejects",
    [
      { on: "a", op: "WRITE", args: [`${P}/n`], value: "v" },
      ...setAndGet(["b0"], "owner with b"),
      ...setAndGet(["w3"], "owner with w"),
      ...setAndGet(["n0", "r1", "r1"], "duplicate entry"),
      ...setAndGet(["n0", "n1", "r2", "w3", "b4", "r5", "r6", "r7"], "eight entries"),
      ...setAndGet(["n0", "r65535"], "domid 65535"),
      ...setAndGet(["n0", "r32757"], "DOMID_ANY"),
      ...setAndGet(["n0", "r4294967296"], "domid over 32 bits"),
      ...setAndGet(["n0", "r-1"], "negative domid"),
      ...setAndGet(["n0", "r01"], "leading zero"),
      ...setAndGet(["n0", "r1x"], "trailing garbage"),
      ...setAndGet(["n0", "R1"], "upper-case letter"),
      ...setAndGet(["n0", "r"], "no domid"),
      ...setAndGet(["n0", ""], "empty entry"),
      ...setAndGet(["n0", "r 1"], "space"),
      ...setAndGet(["n7"], "owner 7"),
      { on: "a", op: "SET_PERMS", raw: `${P}/n\0n0\0r1`, note: "last entry without NUL" },
      { on: "a", op: "GET_PERMS", args: [`${P}/n`] },
      { on: "a", op: "SET_PERMS", raw: `${P}/n`, note: "path without NUL" },
      { on: "a", op: "SET_PERMS", args: ["", "n0"], note: "empty path" },
      { on: "a", op: "SET_PERMS", args: [`${P}/bad path`, "n0"] },
      { on: "a", op: "SET_PERMS", args: ["/", "n0", "r1"], note: "root" },
      { on: "a", op: "GET_PERMS", args: ["/"] },
      { on: "a", op: "SET_PERMS", args: ["/", "n0"] },
      { on: "a", op: "SET_PERMS", args: ["pt-rel", "n0"], note: "relative, missing" },
      { on: "a", op: "WRITE", args: ["pt-rel"], value: "r" },
      { on: "a", op: "SET_PERMS", args: ["pt-rel", "n2", "r0"], note: "relative" },
      { on: "a", op: "GET_PERMS", args: ["/local/domain/0/pt-rel"] },
      { on: "a", op: "RM", args: ["pt-rel"] },
    ],
  ],
  [
    "inheritance by new and implicitly created nodes",
    [
      { on: "a", op: "MKDIR", args: [`${P}/i`] },
      { on: "a", op: "SET_PERMS", args: [`${P}/i`, "n3", "r4", "w5"] },
      { on: "a", op: "WRITE", args: [`${P}/i/x/y/z`], value: "deep" },
      { on: "a", op: "GET_PERMS", args: [`${P}/i/x`], note: "implicit parent" },
      { on: "a", op: "GET_PERMS", args: [`${P}/i/x/y/z`] },
      { on: "a", op: "MKDIR", args: [`${P}/i/m`] },
      { on: "a", op: "GET_PERMS", args: [`${P}/i/m`], note: "mkdir child" },
      { on: "a", op: "SET_PERMS", args: [`${P}/i`, "n0"], note: "parent changes later" },
      { on: "a", op: "GET_PERMS", args: [`${P}/i/m`], note: "child keeps its own" },
      { on: "a", op: "WRITE", args: [`${P}/i/x/y/z`], value: "rewrite" },
      { on: "a", op: "GET_PERMS", args: [`${P}/i/x/y/z`], note: "rewrite keeps perms" },
      { on: "a", op: "RM", args: [`${P}/i/x`] },
      { on: "a", op: "WRITE", args: [`${P}/i/x`], value: "recreated" },
      { on: "a", op: "GET_PERMS", args: [`${P}/i/x`], note: "recreated: from the parent now" },
    ],
  ],
  [
    "the special @ nodes",
    [
      { on: "a", op: "SET_PERMS", args: ["@releaseDomain", "n0", "r5"] },
      { on: "a", op: "GET_PERMS", args: ["@releaseDomain"] },
      { on: "a", op: "SET_PERMS", args: ["@introduceDomain", "n0", "r5"] },
      { on: "a", op: "SET_PERMS", args: ["@other", "n0"], note: "unknown special" },
      { on: "a", op: "SET_PERMS", args: ["@releaseDomain", "x"], note: "bad entry" },
      { on: "a", op: "GET_PERMS", args: ["@other"] },
    ],
  ],
  [
    "watch events fired by permission changes",
    [
      { on: "w", op: "WATCH", args: [P, "p"] },
      { on: "w", op: "WATCH", args: ["@releaseDomain", "r"] },
      { on: "a", op: "SET_PERMS", args: [`${P}/n`, "n0", "r9"] },
      { on: "a", op: "SET_PERMS", args: [`${P}/n`, "n0", "r9"], note: "unchanged" },
      { on: "a", op: "SET_PERMS", args: [`${P}/n`, "bogus"], note: "rejected" },
      { on: "a", op: "SET_PERMS", args: [`${P}/missing`, "n0"], note: "missing node" },
      { on: "a", op: "SET_PERMS", args: ["@releaseDomain", "n0"], note: "special node" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t" },
      { on: "a", op: "SET_PERMS", args: [`${P}/n`, "n0", "r8"], tx: "t", note: "in tx" },
      { on: "a", op: "GET_PERMS", args: [`${P}/n`], note: "outside tx" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t" },
      { on: "a", op: "GET_PERMS", args: [`${P}/n`] },
      { on: "w", op: "RESET_WATCHES", raw: "" },
      { on: "a", op: "RM", args: [P] },
    ],
  ],
];

describeDiff("permission changes, against the reference C xenstored", TABLES);
