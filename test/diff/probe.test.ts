/**
 * ../shared/refxs/probe.py's dom0 sequence, ported as data: every request the probe sends
 * over the socket, section by section, against the reference C xenstored and xenlab. The
 * guest (dom5, shared ring) section waits for the hypervisor issue; the malformed one-arg
 * requests are left out because they abort the reference daemon (see refxs/README.md).
 *
 * Connections: d0 (the probe's main one), w (its second writer), x1..x8 (fresh ones the
 * probe opens for odd messages and the oversize payload).
 */
import { after, before, describe, it } from "node:test";
import { DiffPair } from "../helpers/diff-pair.ts";
import type { Step } from "../helpers/xs-script.ts";

const B = "/refxs-probe";

const SECTIONS: ReadonlyArray<readonly [string, readonly Step[]]> = [
  [
    "setup, basic reads and writes, relative paths",
    [
      { on: "d0", op: "RM", args: [B] },
      { on: "d0", op: "RM", args: ["/local/domain/5"] },
      { on: "d0", op: "READ", args: [B], note: "missing node" },
      { on: "d0", op: "WRITE", raw: `${B}/a\0hello`, note: "value has no NUL" },
      { on: "d0", op: "READ", args: [`${B}/a`] },
      { on: "d0", op: "WRITE", raw: `${B}/deep/x/y/z\0v`, note: "implicit parents" },
      { on: "d0", op: "READ", args: [`${B}/deep/x`], note: "implicit parent value" },
      { on: "d0", op: "WRITE", raw: `${B}/empty\0`, note: "empty value" },
      { on: "d0", op: "READ", args: [`${B}/empty`] },
      { on: "d0", op: "WRITE", raw: `${B}/nonul`, note: "WRITE path without NUL/value" },
      { on: "d0", op: "WRITE", raw: "", note: "WRITE empty payload" },
      { on: "d0", op: "MKDIR", args: [`${B}/dir`] },
      { on: "d0", op: "MKDIR", args: [`${B}/dir`], note: "mkdir existing" },
      { on: "d0", op: "MKDIR", args: [`${B}/a`], note: "mkdir existing node with value" },
      { on: "d0", op: "READ", args: [`${B}/a`], note: "value kept after mkdir" },
      { on: "d0", op: "DIRECTORY", args: [B] },
      { on: "d0", op: "DIRECTORY", args: [`${B}/nope`] },
      { on: "d0", op: "DIRECTORY", args: [`${B}/a`], note: "leaf" },
      { on: "d0", op: "DIRECTORY_PART", args: [B, "0"], note: "starts with generation count" },
      { on: "d0", op: "WRITE", args: ["probe-rel"], value: "relative", note: "relative path (dom0 home)" },
      { on: "d0", op: "READ", args: ["/local/domain/0/probe-rel"] },
      { on: "d0", op: "RM", args: ["probe-rel"] },
    ],
  ],
  [
    "invalid paths",
    [
      ...[
        "",
        "/",
        `${B}/`,
        `${B}//a`,
        "//",
        `${B}/a b`,
        `${B}/a\tb`,
        `${B}/a%b`,
        `${B}/a-b_c.d@e`,
        "@foo",
      ].map((p): Step => ({ on: "d0", op: "READ", args: [p] })),
      ...["@introduceDomain", "/@x", `${B}/${"x".repeat(3000)}`, "x".repeat(2100)].map(
        (p): Step => ({ on: "d0", op: "READ", args: [p] }),
      ),
      { on: "d0", op: "WRITE", args: [`${B}/bad path`], value: "v" },
      { on: "d0", op: "WRITE", args: ["@foo"], value: "v" },
      { on: "d0", op: "WRITE", args: [`${B}/${"x".repeat(3100)}`], value: "v", note: "abs path > 3072" },
      { on: "d0", op: "WRITE", args: [`${B}/${"y".repeat(3000)}`], value: "v", note: "abs path ~3013" },
    ],
  ],
  [
    "rm",
    [
      { on: "d0", op: "RM", args: [`${B}/nope`], note: "missing leaf, parent exists" },
      { on: "d0", op: "RM", args: [`${B}/nope/deeper`], note: "missing parent" },
      { on: "d0", op: "RM", args: [`${B}/deep`] },
      { on: "d0", op: "READ", args: [`${B}/deep/x/y/z`] },
    ],
  ],
  [
    "permissions as dom0",
    [
      { on: "d0", op: "GET_PERMS", args: [`${B}/a`] },
      { on: "d0", op: "GET_PERMS", args: [`${B}/nope`] },
      { on: "d0", op: "SET_PERMS", args: [`${B}/a`, "n0", "r5", "w7", "b9"] },
      { on: "d0", op: "GET_PERMS", args: [`${B}/a`] },
      { on: "d0", op: "SET_PERMS", args: [`${B}/a`, "x0"], note: "bad perm letter" },
      { on: "d0", op: "SET_PERMS", args: [`${B}/a`, "n"], note: "no domid" },
      { on: "d0", op: "SET_PERMS", args: [`${B}/a`], note: "no perms at all" },
      { on: "d0", op: "SET_PERMS", args: [`${B}/a`, "r0"], note: "owner entry with r" },
      { on: "d0", op: "GET_PERMS", args: [`${B}/a`] },
      { on: "d0", op: "SET_PERMS", args: [`${B}/a`, "n0"] },
      { on: "d0", op: "SET_PERMS", args: [`${B}/nope`, "n0"] },
      { on: "d0", op: "WRITE", args: [`${B}/inherit/child`], value: "v" },
      { on: "d0", op: "SET_PERMS", args: [`${B}/inherit`, "n3", "r4"] },
      { on: "d0", op: "WRITE", args: [`${B}/inherit/child2`], value: "v", note: "new child inherits" },
      { on: "d0", op: "GET_PERMS", args: [`${B}/inherit/child2`] },
      { on: "d0", op: "GET_PERMS", args: [`${B}/inherit/child`] },
      { on: "d0", op: "GET_PERMS", args: ["@releaseDomain"] },
      { on: "d0", op: "GET_PERMS", args: ["@introduceDomain"] },
      { on: "d0", op: "GET_PERMS", args: ["/"] },
    ],
  ],
  [
    "watches",
    [
      { on: "d0", op: "WATCH", args: [B, "tok1"], note: "initial event expected" },
      { on: "d0", op: "WATCH", args: [B, "tok1"], note: "duplicate" },
      { on: "d0", op: "WATCH", args: [B, "tok2"], note: "same path, new token" },
      { on: "d0", op: "UNWATCH", args: [B, "tok2"] },
      { on: "d0", op: "WATCH", args: [`${B}/missing/node`, "tokm"], note: "watch missing node" },
      { on: "w", op: "WRITE", args: [`${B}/a`], value: "changed" },
      { on: "w", op: "WRITE", args: [`${B}/missing/node/below`], value: "x" },
      { on: "w", op: "SET_PERMS", args: [`${B}/a`, "n0", "r1"] },
      { on: "w", op: "MKDIR", args: [`${B}/dir`], note: "mkdir existing: no event" },
      { on: "w", op: "RM", args: [`${B}/missing`], note: "rm of parent of watched node" },
      { on: "w", op: "RM", args: [`${B}/nope`], note: "rm of nonexistent: no event" },
      { on: "d0", op: "UNWATCH", args: [B, "wrongtok"] },
      { on: "d0", op: "UNWATCH", args: [`${B}/missing/node`, "tokm"] },
      { on: "d0", op: "WATCH", args: ["rel-watch", "tokr"], note: "relative watch" },
      {
        on: "w",
        op: "WRITE",
        args: ["/local/domain/0/rel-watch"],
        value: "1",
        note: "event path is relative",
      },
      { on: "w", op: "RM", args: ["/local/domain/0/rel-watch"] },
      { on: "d0", op: "UNWATCH", args: ["rel-watch", "tokr"] },
      { on: "d0", op: "WATCH", args: ["@introduceDomain", "tokI"] },
      { on: "d0", op: "WATCH", args: ["@releaseDomain", "tokR"] },
      { on: "d0", op: "WATCH", args: ["@other", "tokO"], note: "unknown special" },
      { on: "d0", op: "WATCH", args: [`${B}/bad path`, "tokB"] },
      { on: "d0", op: "WATCH", args: [B], note: "missing token" },
      { on: "d0", op: "RESET_WATCHES", raw: "", note: "drops all watches of this connection" },
      { on: "w", op: "WRITE", args: [`${B}/a`], value: "after-reset", note: "no event after reset" },
    ],
  ],
  [
    "transactions",
    [
      { on: "d0", op: "TRANSACTION_START", args: [""], bind: "t1" },
      { on: "d0", op: "READ", args: [`${B}/a`], tx: "t1" },
      { on: "d0", op: "WRITE", args: [`${B}/a`], value: "in-tx", tx: "t1" },
      { on: "d0", op: "READ", args: [`${B}/a`], tx: "t1" },
      { on: "w", op: "READ", args: [`${B}/a`], note: "outside sees old value" },
      { on: "w", op: "WRITE", args: [`${B}/a`], value: "conflict" },
      { on: "d0", op: "TRANSACTION_END", args: ["T"], tx: "t1", note: "conflict expected" },
      { on: "d0", op: "READ", args: [`${B}/a`], tx: "t1", note: "tx already gone" },
      { on: "d0", op: "TRANSACTION_END", args: ["T"], tx: "t1", note: "end twice" },
      { on: "d0", op: "TRANSACTION_END", args: ["T"], tx: 424242, note: "unknown tx" },
      { on: "d0", op: "READ", args: [`${B}/a`], tx: 424242, note: "op in unknown tx" },
      { on: "d0", op: "TRANSACTION_START", args: [""], bind: "t2" },
      { on: "d0", op: "WRITE", args: [`${B}/t2`], value: "x", tx: "t2" },
      { on: "d0", op: "TRANSACTION_END", args: ["F"], tx: "t2", note: "abort" },
      { on: "d0", op: "READ", args: [`${B}/t2`] },
      { on: "d0", op: "TRANSACTION_START", args: [""], bind: "t3" },
      { on: "d0", op: "TRANSACTION_START", args: [""], tx: "t3", note: "nested start" },
      { on: "d0", op: "TRANSACTION_END", args: ["X"], tx: "t3", note: "bad end arg" },
      { on: "d0", op: "TRANSACTION_END", raw: "", tx: "t3", note: "empty end arg" },
      { on: "d0", op: "TRANSACTION_END", args: ["T"], tx: "t3" },
      { on: "d0", op: "WATCH", args: [B, "txw"] },
      { on: "d0", op: "TRANSACTION_START", args: [""], bind: "t4" },
      { on: "d0", op: "WRITE", args: [`${B}/t4`], value: "x", tx: "t4", note: "no event before commit" },
      { on: "d0", op: "RM", args: [`${B}/t4gone`], tx: "t4" },
      { on: "d0", op: "TRANSACTION_END", args: ["T"], tx: "t4", note: "events at commit" },
      { on: "d0", op: "UNWATCH", args: [B, "txw"] },
      { on: "d0", op: "TRANSACTION_START", args: [""], bind: "t5" },
      { on: "d0", op: "READ", args: [`${B}/nope5`], tx: "t5" },
      { on: "w", op: "WRITE", args: [`${B}/nope5`], value: "created" },
      { on: "d0", op: "TRANSACTION_END", args: ["T"], tx: "t5", note: "read-missing then created outside" },
      { on: "d0", op: "TRANSACTION_START", args: [""], bind: "t6" },
      { on: "d0", op: "DIRECTORY", args: [B], tx: "t6" },
      { on: "w", op: "WRITE", args: [`${B}/newchild`], value: "x" },
      { on: "d0", op: "WRITE", args: [`${B}/other6`], value: "x", tx: "t6" },
      { on: "d0", op: "TRANSACTION_END", args: ["T"], tx: "t6", note: "dir listed, child added outside" },
    ],
  ],
  [
    "domain operations as dom0",
    [
      { on: "d0", op: "GET_DOMAIN_PATH", args: ["0"] },
      { on: "d0", op: "GET_DOMAIN_PATH", args: ["5"] },
      { on: "d0", op: "GET_DOMAIN_PATH", args: ["abc"] },
      { on: "d0", op: "GET_DOMAIN_PATH", raw: "", note: "empty" },
      { on: "d0", op: "IS_DOMAIN_INTRODUCED", args: ["0"] },
      { on: "d0", op: "IS_DOMAIN_INTRODUCED", args: ["5"] },
      { on: "d0", op: "RELEASE", args: ["6"], note: "not introduced" },
      { on: "d0", op: "RESUME", args: ["6"] },
      { on: "d0", op: "SET_TARGET", args: ["6", "7"] },
      { on: "d0", op: "INTRODUCE", args: ["6", "0"], note: "too few args" },
      { on: "d0", op: "INTRODUCE", args: ["6", "0", "0"], note: "port 0" },
    ],
  ],
  [
    "odd messages, each on a fresh connection",
    [
      { on: "x1", op: 20, args: ["x"], note: "removed XS_RESTRICT" },
      { on: "x1", op: "READ", args: [`${B}/a`], note: "connection still usable" },
      { on: "x1", close: true },
      { on: "x2", op: 99, args: ["x"], note: "unknown type" },
      { on: "x2", op: "READ", args: [`${B}/a`], note: "connection still usable" },
      { on: "x2", close: true },
      { on: "x3", op: "WATCH_EVENT", args: ["x", "y"], note: "client-sent WATCH_EVENT" },
      { on: "x3", op: "READ", args: [`${B}/a`], note: "connection still usable" },
      { on: "x3", close: true },
      { on: "x4", op: "ERROR", args: ["x"], note: "client-sent ERROR" },
      { on: "x4", op: "READ", args: [`${B}/a`], note: "connection still usable" },
      { on: "x4", close: true },
      { on: "x5", op: "CONTROL", args: ["print", "hello from probe"] },
      { on: "x5", op: "READ", args: [`${B}/a`], note: "connection still usable" },
      { on: "x5", close: true },
      { on: "x6", op: "CONTROL", args: ["bogus-cmd"] },
      { on: "x6", op: "READ", args: [`${B}/a`], note: "connection still usable" },
      { on: "x6", close: true },
    ],
  ],
  [
    "size limits",
    [
      {
        on: "d0",
        op: "WRITE",
        raw: `${B}/big\0${"v".repeat(4096 - B.length - 5)}`,
        note: "payload exactly 4096",
      },
      { on: "d0", op: "READ", args: [`${B}/big`] },
      { on: "x7", op: "WRITE", raw: `${B}/big2\0${"v".repeat(4096)}`, note: "payload > 4096" },
      { on: "x7", op: "READ", args: [`${B}/a`], note: "connection still usable?" },
      { on: "x7", close: true },
    ],
  ],
  [
    "destructive requests and cleanup",
    [
      { on: "d0", op: "WRITE", args: [`${B}/keep`], value: "1" },
      { on: "d0", op: "RM", args: ["/"], note: "rm root" },
      { on: "d0", op: "READ", args: [`${B}/keep`], note: "still there" },
      { on: "d0", op: "DIRECTORY", args: ["/"] },
      { on: "d0", op: "RM", args: [B] },
      { on: "d0", op: "RM", args: ["/local/domain/5"] },
    ],
  ],
];

describe("probe.py's dom0 requests, against the reference C xenstored", () => {
  const pair = new DiffPair();
  before(() => pair.start());
  after(() => pair.stop());

  for (const [name, steps] of SECTIONS) {
    it(`gives the reference's replies and events: ${name}`, async (t) => {
      if (!pair.require(t)) return;
      await pair.check(steps);
    });
  }
});
