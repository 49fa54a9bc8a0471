/**
 * Watch events against the reference C xenstored and xenlab: which changes fire which
 * watches, with what path, in what order; removal of subtrees; relative watches; the special
 * @introduceDomain / @releaseDomain watches fired by INTRODUCE and RELEASE. Watchers are w
 * and v, the writer is c.
 */
import { after, before, describe, it } from "node:test";
import { DiffPair } from "../helpers/diff-pair.ts";
import type { Step } from "../helpers/xs-script.ts";

const W = "/wt";

const TABLES: ReadonlyArray<readonly [string, readonly Step[]]> = [
  [
    "which changes fire, and with which path",
    [
      { on: "w", op: "WATCH", args: [W, "sub"] },
      { on: "w", op: "WATCH", args: [`${W}/a`, "leaf"] },
      { on: "w", op: "WATCH", args: [`${W}/a`, "leaf2"], note: "same path, second token" },
      { on: "w", op: "WATCH", args: [`${W}/ab`, "prefix"], note: "/wt/a must not match /wt/ab" },
      { on: "v", op: "WATCH", args: [`${W}/a`, "leaf"], note: "same path and token, other connection" },
      { on: "c", op: "WRITE", args: [`${W}/a`], value: "1", note: "create" },
      { on: "c", op: "WRITE", args: [`${W}/a`], value: "1", note: "same value again" },
      { on: "c", op: "WRITE", args: [`${W}/a/b/c`], value: "2", note: "implicit parent under a" },
      { on: "c", op: "WRITE", args: [`${W}/ab`], value: "3" },
      { on: "c", op: "MKDIR", args: [`${W}/m`], note: "mkdir new" },
      { on: "c", op: "MKDIR", args: [`${W}/m`], note: "mkdir existing" },
      { on: "c", op: "SET_PERMS", args: [`${W}/a`, "n0", "r3"], note: "perms change" },
      { on: "c", op: "SET_PERMS", args: [`${W}/a`, "n0", "r3"], note: "same perms again" },
      { on: "c", op: "READ", args: [`${W}/a`], note: "read fires nothing" },
      { on: "c", op: "RM", args: [`${W}/zz`], note: "rm missing" },
      { on: "c", op: "WRITE", args: [`${W}/bad path`], value: "x", note: "failed write" },
      { on: "w", op: "UNWATCH", args: [`${W}/a`, "leaf2"] },
      { on: "c", op: "WRITE", args: [`${W}/a`], value: "4", note: "after unwatch of leaf2" },
      { on: "w", op: "UNWATCH", args: [`${W}/a`, "leaf2"], note: "unwatch twice" },
      { on: "w", op: "UNWATCH", args: [`${W}/nope`, "leaf"], note: "token right, path wrong" },
      { on: "w", op: "WATCH", args: ["/", "root"], note: "watch on /" },
      { on: "c", op: "WRITE", args: ["/elsewhere"], value: "1" },
      { on: "c", op: "RM", args: ["/elsewhere"] },
      { on: "w", op: "UNWATCH", args: ["/", "root"] },
    ],
  ],
  [
    "removing subtrees",
    [
      { on: "c", op: "WRITE", args: [`${W}/t/x/y`], value: "1" },
      { on: "c", op: "WRITE", args: [`${W}/t/x/z`], value: "2" },
      { on: "c", op: "WRITE", args: [`${W}/t/q`], value: "3" },
      { on: "v", op: "WATCH", args: [`${W}/t/x/y`, "y"] },
      { on: "v", op: "WATCH", args: [`${W}/t/x`, "x"] },
      { on: "v", op: "WATCH", args: [`${W}/t/x/never`, "never"], note: "watch on a node that never exists" },
      { on: "v", op: "WATCH", args: [`${W}/t`, "t"] },
      { on: "v", op: "WATCH", args: [`${W}/t/q`, "q"] },
      { on: "c", op: "RM", args: [`${W}/t/x`], note: "one subtree" },
      { on: "c", op: "WRITE", args: [`${W}/t/x/y`], value: "again" },
      { on: "c", op: "RM", args: [`${W}/t`], note: "whole tree" },
      { on: "c", op: "RM", args: [`${W}/t`], note: "again: parent exists, node gone" },
      { on: "v", op: "RESET_WATCHES", raw: "" },
    ],
  ],
  [
    "relative watches",
    [
      { on: "v", op: "WATCH", args: ["rw", "rel"] },
      { on: "v", op: "WATCH", args: ["/local/domain/0/rw", "abs"] },
      { on: "v", op: "WATCH", args: ["rw/deeper", "rel2"] },
      { on: "c", op: "WRITE", args: ["rw/a"], value: "1", note: "relative write" },
      { on: "c", op: "WRITE", args: ["/local/domain/0/rw/deeper/b"], value: "2", note: "absolute write" },
      { on: "c", op: "RM", args: ["rw"], note: "relative rm" },
      {
        on: "v",
        op: "UNWATCH",
        args: ["/local/domain/0/rw", "rel"],
        note: "absolute unwatch of relative watch",
      },
      { on: "v", op: "UNWATCH", args: ["rw", "rel"] },
      { on: "v", op: "WATCH", args: ["rw", "abs"], note: "relative twin of an absolute watch" },
      { on: "c", op: "WRITE", args: ["rw"], value: "x" },
      { on: "v", op: "RESET_WATCHES", raw: "" },
    ],
  ],
  [
    "watch arguments",
    [
      { on: "v", op: "WATCH", args: [`${W}/d`, "tok", "1"], note: "depth argument (4.17 has none)" },
      { on: "v", op: "WATCH", args: [`${W}/d`, ""], note: "empty token" },
      { on: "v", op: "WATCH", args: ["", "tok"], note: "empty path" },
      { on: "v", op: "WATCH", args: [`${W}/d/`, "tok"], note: "trailing slash" },
      { on: "v", op: "WATCH", raw: `${W}/d\0tok`, note: "token without NUL" },
      { on: "v", op: "WATCH", args: [`${W}/${"p".repeat(2100)}`, "long"], note: "long path" },
      { on: "v", op: "WATCH", args: ["@introduceDomain/5", "sub"], note: "@ path with a domid" },
      { on: "v", op: "UNWATCH", args: [`${W}/d`], note: "unwatch without token" },
      { on: "v", op: "UNWATCH", args: [`${W}/d`, ""], note: "unwatch empty token" },
      { on: "c", op: "WRITE", args: [`${W}/d`], value: "1" },
      { on: "v", op: "RESET_WATCHES", raw: "" },
      { on: "v", op: "RESET_WATCHES", args: ["x"], note: "RESET_WATCHES with an argument" },
      { on: "v", op: "WATCH", args: [`${W}/long`, "T".repeat(3000)], note: "token of 3000 bytes" },
      { on: "c", op: "WRITE", args: [`${W}/long/${"s".repeat(900)}`], value: "1", note: "event of ~3.9 KB" },
      {
        on: "c",
        op: "WRITE",
        args: [`${W}/long/${"l".repeat(1200)}`],
        value: "1",
        note: "event over 4096 bytes",
      },
      { on: "c", op: "RM", args: [`${W}/long`] },
      { on: "v", op: "RESET_WATCHES", raw: "" },
    ],
  ],
  [
    "@introduceDomain and @releaseDomain",
    [
      { on: "w", op: "WATCH", args: ["@introduceDomain", "I"] },
      { on: "w", op: "WATCH", args: ["@releaseDomain", "R"] },
      { on: "v", op: "WATCH", args: ["@releaseDomain", "R"], note: "second watcher" },
      { on: "v", op: "WATCH", args: ["/local/domain", "dom"] },
      { on: "c", op: "INTRODUCE", args: ["7", "12345", "9"] },
      { on: "c", op: "IS_DOMAIN_INTRODUCED", args: ["7"] },
      { on: "c", op: "INTRODUCE", args: ["7", "12345", "9"], note: "again" },
      { on: "c", op: "GET_DOMAIN_PATH", args: ["7"] },
      { on: "c", op: "WRITE", args: ["/local/domain/7/name"], value: "guest" },
      { on: "c", op: "SET_PERMS", args: ["/local/domain/7", "n7", "r0"] },
      { on: "c", op: "WRITE", args: ["/local/domain/7/owned"], value: "by-7", note: "inherits owner 7" },
      { on: "c", op: "RESUME", args: ["7"] },
      { on: "c", op: "RELEASE", args: ["7"] },
      { on: "c", op: "IS_DOMAIN_INTRODUCED", args: ["7"] },
      { on: "c", op: "READ", args: ["/local/domain/7/owned"], note: "nodes owned by 7 after release" },
      { on: "c", op: "DIRECTORY", args: ["/local/domain/7"] },
      { on: "c", op: "RELEASE", args: ["7"], note: "again" },
      { on: "c", op: "RESUME", args: ["7"], note: "released" },
      { on: "c", op: "INTRODUCE", args: ["0", "1", "1"], note: "dom0 itself" },
      { on: "c", op: "INTRODUCE", args: ["x", "1", "1"], note: "bad domid" },
      { on: "c", op: "INTRODUCE", args: ["32752", "1", "1"], note: "DOMID_SELF" },
      { on: "c", op: "IS_DOMAIN_INTRODUCED", args: ["32752"], note: "DOMID_SELF" },
      { on: "c", op: "RM", args: ["/local/domain/7"] },
      { on: "w", op: "UNWATCH", args: ["@introduceDomain", "I"] },
      { on: "w", op: "UNWATCH", args: ["@releaseDomain", "R"] },
      { on: "v", op: "RESET_WATCHES", raw: "" },
      { on: "c", op: "RM", args: [W] },
    ],
  ],
  [
    // Last: the reference C xenstored crashes when a domain that is another's target is
    // released (use after free), so these domains stay introduced.
    "SET_TARGET between introduced domains",
    [
      { on: "c", op: "INTRODUCE", args: ["8", "12346", "10"] },
      { on: "c", op: "INTRODUCE", args: ["9", "12347", "11"] },
      { on: "c", op: "SET_TARGET", args: ["8", "9"] },
      { on: "c", op: "SET_TARGET", args: ["8", "9"], note: "again" },
      { on: "c", op: "SET_TARGET", args: ["8", "10"], note: "target not introduced" },
      { on: "c", op: "SET_TARGET", args: ["10", "9"], note: "domain not introduced" },
      { on: "c", op: "SET_TARGET", args: ["8"], note: "one argument" },
      { on: "c", op: "IS_DOMAIN_INTRODUCED", args: ["8"] },
    ],
  ],
];

describe("watch events, against the reference C xenstored", () => {
  const pair = new DiffPair();
  before(() => pair.start());
  after(() => pair.stop());

  for (const [name, steps] of TABLES) {
    it(`gives the reference's replies and events: ${name}`, async (t) => {
      if (!pair.require(t)) return;
      await pair.check(steps);
    });
  }
});
