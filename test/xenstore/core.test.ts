import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Row, Scenario } from "./scenario.ts";

describe("XenStoreCore step()", () => {
  it("creates implicit parents with empty values and inherits the parent's permissions", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/p/deep/x|v", expect: "OK|" },
      { who: "dom0", op: "READ", arg: "/p/deep|", expect: "" },
      { who: "dom0", op: "SET_PERMS", arg: "/p|n3|r4|", expect: "OK|" },
      { who: "dom0", op: "WRITE", arg: "/p/child|v", expect: "OK|" },
      { who: "dom0", op: "GET_PERMS", arg: "/p/child|", expect: "n3|r4|" },
      { who: "dom0", op: "GET_PERMS", arg: "/p/deep|", expect: "n0|" },
      { who: "dom0", op: "SET_PERMS", arg: "/p/deep|n32752|", expect: "!ENOENT", note: "owner DOMID_SELF" },
      { who: "dom0", op: "SET_PERMS", arg: "/p/deep|n-5|", expect: "!ENOENT", note: "owner 0xfffffffb" },
      { who: "dom0", op: "SET_PERMS", arg: "/p/deep|n0|r-5|r0x10|", expect: "OK|" },
      { who: "dom0", op: "GET_PERMS", arg: "/p/deep|", expect: "n0|r-5|r16|", note: "strtol forms, %i" },
      { who: "dom0", op: "DIRECTORY", arg: "/p|", expect: "deep|child|", note: "insertion order" },
    ]);
  });

  it("validates paths as C xenstored does", () => {
    const bad = ["|", "/p/|", "/p//a|", "//|", "/p/a b|", "/p/a.b|", "@foo|", "@introduceDomain|"];
    new Scenario().run([
      ...bad.map((arg): Row => ({ who: "dom0", op: "READ", arg, expect: "!EINVAL" })),
      { who: "dom0", op: "READ", arg: "/|", expect: "" },
      { who: "dom0", op: "READ", arg: "/@x|", expect: "!ENOENT" },
      { who: "dom0", op: "READ", arg: `/${"a".repeat(2048)}|`, expect: "!EINVAL", note: "2049 chars" },
      {
        who: "dom0",
        op: "READ",
        arg: `/local/domain/0/${"a".repeat(2048)}|`,
        expect: "!ENOENT",
        note: "relative part 2048",
      },
      { who: "dom0", op: "READ", arg: "/nonul", expect: "!EINVAL", note: "no NUL (reference: stale errno)" },
      { who: "dom0", op: "READ", arg: "/a|b|", expect: "!EINVAL", note: "two strings" },
      { who: "dom0", op: "WRITE", arg: "/nonul", expect: "!EINVAL" },
      { who: "dom0", op: "RM", arg: "/|", expect: "!EINVAL" },
    ]);
  });

  it("resolves relative paths against the connection's domain", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "rel|x", expect: "OK|" },
      { who: "dom0", op: "READ", arg: "/local/domain/0/rel|", expect: "x" },
      { who: "dom5", op: "WRITE", arg: "x|1", expect: "!EACCES", note: "dom5 has no home yet" },
      { who: "dom0", op: "MKDIR", arg: "/local/domain/5|", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5|n5|r0|", expect: "OK|" },
      { who: "dom5", op: "WRITE", arg: "x|1", expect: "OK|" },
      { who: "dom5", op: "GET_PERMS", arg: "x|", expect: "n5|r0|" },
      { who: "dom0", op: "READ", arg: "/local/domain/5/x|", expect: "1" },
    ]);
  });

  it("keeps a guest to what its permissions allow", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/p/a|secret", expect: "OK|" },
      { who: "dom0", op: "MKDIR", arg: "/local/domain/5|", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5|n5|r0|", expect: "OK|" },
      { who: "dom5", op: "READ", arg: "/p/a|", expect: "!EACCES" },
      { who: "dom5", op: "GET_PERMS", arg: "/p/a|", expect: "!EACCES" },
      { who: "dom5", op: "DIRECTORY", arg: "/p|", expect: "!EACCES" },
      { who: "dom5", op: "WRITE", arg: "/p/new|x", expect: "!EACCES" },
      { who: "dom5", op: "RM", arg: "/p/a|", expect: "!EACCES" },
      { who: "dom5", op: "READ", arg: "/p/missing|", expect: "!EACCES", note: "hides existence" },
      { who: "dom5", op: "READ", arg: "/local/domain/5/missing|", expect: "!ENOENT" },
      { who: "dom0", op: "SET_PERMS", arg: "/p/a|n0|r5|", expect: "OK|" },
      { who: "dom5", op: "READ", arg: "/p/a|", expect: "secret" },
      { who: "dom5", op: "WRITE", arg: "/p/a|x", expect: "!EACCES" },
      { who: "dom0", op: "SET_PERMS", arg: "/p/a|n0|b5|", expect: "OK|" },
      { who: "dom5", op: "WRITE", arg: "/p/a|from-guest", expect: "OK|" },
      { who: "dom5", op: "SET_PERMS", arg: "/p/a|n5|", expect: "!EACCES", note: "non-owner chmod" },
      { who: "dom5", op: "WRITE", arg: "x|1", expect: "OK|" },
      {
        who: "dom5",
        op: "SET_PERMS",
        arg: "x|n0|",
        expect: "!EPERM",
        note: "owner may not give a node away",
      },
      { who: "dom5", op: "SET_PERMS", arg: "x|n5|r0|w9|", expect: "OK|" },
      { who: "dom5", op: "INTRODUCE", arg: "8|1|1|", expect: "!EACCES" },
      { who: "dom5", op: "RELEASE", arg: "0|", expect: "!EACCES" },
      { who: "dom5", op: "IS_DOMAIN_INTRODUCED", arg: "0|", expect: "!EACCES" },
      { who: "dom5", op: "SET_TARGET", arg: "8|9|", expect: "!EACCES" },
      { who: "dom5", op: "CONTROL", arg: "print|x|", expect: "!EACCES" },
      { who: "dom5", op: "GET_DOMAIN_PATH", arg: "0|", expect: "/local/domain/0|" },
    ]);
  });

  it("fires watches: initial event, subtree, relative paths, removal, perms, mkdir of an existing node", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/w/a|1", expect: "OK|" },
      { who: "dom0", op: "WATCH", arg: "/w|t1|", expect: "OK|", events: ["dom0 /w t1"] },
      { who: "dom0", op: "WATCH", arg: "/w|t1|", expect: "!EEXIST" },
      { who: "dom0", op: "WATCH", arg: "/w/gone/node|tm|", expect: "OK|", events: ["dom0 /w/gone/node tm"] },
      { who: "dom0", op: "WATCH", arg: "rel|tr|", expect: "OK|", events: ["dom0 rel tr"] },
      { who: "dom0w", op: "WRITE", arg: "/w/a|2", expect: "OK|", events: ["dom0 /w/a t1"] },
      { who: "dom0w", op: "WRITE", arg: "/wx|2", expect: "OK|", note: "/w does not match /wx" },
      {
        who: "dom0w",
        op: "WRITE",
        arg: "/w/gone/node/below|x",
        expect: "OK|",
        events: ["dom0 /w/gone/node/below t1", "dom0 /w/gone/node/below tm"],
      },
      { who: "dom0w", op: "SET_PERMS", arg: "/w/a|n0|r1|", expect: "OK|", events: ["dom0 /w/a t1"] },
      { who: "dom0w", op: "MKDIR", arg: "/w/a|", expect: "OK|", note: "no event" },
      {
        who: "dom0w",
        op: "RM",
        arg: "/w/gone|",
        expect: "OK|",
        events: ["dom0 /w/gone/node tm", "dom0 /w/gone t1"],
        note: "descendants exactly, then the root",
      },
      { who: "dom0w", op: "RM", arg: "/w/nope|", expect: "OK|", note: "missing leaf: no event" },
      { who: "dom0w", op: "WRITE", arg: "/local/domain/0/rel|1", expect: "OK|", events: ["dom0 rel tr"] },
      { who: "dom0", op: "UNWATCH", arg: "/w|wrong|", expect: "!ENOENT" },
      { who: "dom0", op: "UNWATCH", arg: "rel|tr|", expect: "OK|" },
      { who: "dom0", op: "WATCH", arg: "/w|", expect: "!EINVAL", note: "missing token" },
      { who: "dom0", op: "RESET_WATCHES", arg: "", expect: "OK|" },
      { who: "dom0w", op: "WRITE", arg: "/w/a|3", expect: "OK|", note: "after reset: no event" },
    ]);
  });

  it("drops an event identical to one already queued for the connection", () => {
    new Scenario().run([
      { who: "dom0", op: "WATCH", arg: "/d|t|", expect: "OK|", events: ["dom0 /d t"] },
      { who: "dom0", op: "WATCH", arg: "/d/e|t|", expect: "OK|", events: ["dom0 /d/e t"] },
      { who: "dom0w", op: "WRITE", arg: "/d/e/f|1", expect: "OK|", events: ["dom0 /d/e/f t"] },
    ]);
  });

  it("gives a guest only the events for nodes it may read", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/g/a|1", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/g/a|n0|r5|", expect: "OK|" },
      { who: "dom5", op: "WATCH", arg: "/g|gt|", expect: "OK|", events: ["dom5 /g gt"] },
      { who: "dom0", op: "WRITE", arg: "/g/a|2", expect: "OK|", events: ["dom5 /g/a gt"] },
      { who: "dom0", op: "WRITE", arg: "/g/secret|x", expect: "OK|" },
      {
        who: "dom0",
        op: "SET_PERMS",
        arg: "/g/a|n0|",
        expect: "OK|",
        events: ["dom5 /g/a gt"],
        note: "losing access still tells the watcher",
      },
      { who: "dom0", op: "WRITE", arg: "/g/a|3", expect: "OK|" },
    ]);
  });

  it("sends @introduceDomain and @releaseDomain to privileged watchers and to domains given read", () => {
    const s = new Scenario();
    s.run([
      {
        who: "dom0",
        op: "WATCH",
        arg: "@introduceDomain|I|",
        expect: "OK|",
        events: ["dom0 @introduceDomain I"],
      },
      {
        who: "dom0",
        op: "WATCH",
        arg: "@releaseDomain|R|",
        expect: "OK|",
        events: ["dom0 @releaseDomain R"],
      },
      { who: "dom0", op: "WATCH", arg: "@other|O|", expect: "OK|", events: ["dom0 @other O"] },
      { who: "dom0", op: "INTRODUCE", arg: "6|0|", expect: "!EINVAL", note: "too few args" },
      { who: "dom0", op: "INTRODUCE", arg: "6|0|0|", expect: "!EINVAL", note: "port 0" },
      { who: "dom0", op: "INTRODUCE", arg: "7|12345|7|", expect: "OK|", events: ["dom0 @introduceDomain I"] },
      { who: "dom0", op: "IS_DOMAIN_INTRODUCED", arg: "7|", expect: "T|" },
      { who: "dom0", op: "IS_DOMAIN_INTRODUCED", arg: "8|", expect: "F|" },
      { who: "dom0", op: "IS_DOMAIN_INTRODUCED", arg: "0|", expect: "T|" },
      { who: "dom0", op: "IS_DOMAIN_INTRODUCED", arg: `${0x7ff0}|`, expect: "T|", note: "DOMID_SELF" },
      { who: "dom0", op: "RELEASE", arg: "6|", expect: "!ENOENT" },
      { who: "dom0", op: "RELEASE", arg: "0|", expect: "!EINVAL" },
      { who: "dom0", op: "RESUME", arg: "6|", expect: "!ENOENT" },
      { who: "dom0", op: "SET_TARGET", arg: "6|7|", expect: "!ENOENT" },
      { who: "dom0", op: "RESUME", arg: "7|", expect: "OK|" },
      { who: "dom0", op: "RELEASE", arg: "7|", expect: "OK|", events: ["dom0 @releaseDomain R"] },
      { who: "dom0", op: "IS_DOMAIN_INTRODUCED", arg: "7|", expect: "F|" },
      { who: "dom0", op: "GET_DOMAIN_PATH", arg: "abc|", expect: "/local/domain/0|", note: "atoi" },
      {
        who: "dom0",
        op: "GET_DOMAIN_PATH",
        arg: "4294967297|",
        expect: "/local/domain/1|",
        note: "glibc atoi: the low 32 bits",
      },
      {
        who: "dom0",
        op: "GET_DOMAIN_PATH",
        arg: "99999999999999999999|",
        expect: "/local/domain/4294967295|",
        note: "glibc atoi: LONG_MAX, cast to int",
      },
      { who: "dom0", op: "GET_DOMAIN_PATH", arg: "", expect: "!EINVAL" },
    ]);
    s.run([
      {
        who: "dom9",
        op: "WATCH",
        arg: "@releaseDomain|g|",
        expect: "OK|",
        events: ["dom9 @releaseDomain g"],
      },
      { who: "dom0", op: "INTRODUCE", arg: "10|1|3|", expect: "OK|", events: ["dom0 @introduceDomain I"] },
      { who: "dom0", op: "SET_PERMS", arg: "@releaseDomain|n0|r9|", expect: "OK|" },
      {
        who: "dom0",
        op: "RELEASE",
        arg: "10|",
        expect: "OK|",
        events: ["dom0 @releaseDomain R", "dom9 @releaseDomain g"],
      },
      { who: "dom9", op: "SET_PERMS", arg: "@releaseDomain|n9|", expect: "!EACCES" },
      { who: "dom0", op: "SET_PERMS", arg: "@bogus|n0|", expect: "!EINVAL" },
    ]);
  });

  it("deletes a released domain's nodes and its ACL entries, or keeps them with keepOrphans", () => {
    for (const keepOrphans of [false, true]) {
      const s = new Scenario({ keepOrphans });
      s.run([
        { who: "dom0", op: "MKDIR", arg: "/local/domain/5|", expect: "OK|" },
        { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5|n5|r0|", expect: "OK|" },
        { who: "dom5", op: "WRITE", arg: "data/x|1", expect: "OK|" },
        { who: "dom0", op: "WRITE", arg: "/shared|s", expect: "OK|" },
        { who: "dom0", op: "SET_PERMS", arg: "/shared|n0|r5|", expect: "OK|" },
        {
          who: "dom0",
          op: "WATCH",
          arg: "/local/domain/5/data/x|w|",
          expect: "OK|",
          events: ["dom0 /local/domain/5/data/x w"],
        },
      ]);
      s.run([
        {
          who: "dom0",
          op: "RELEASE",
          arg: "5|",
          expect: "OK|",
          events: keepOrphans ? [] : ["dom0 /local/domain/5/data/x w"],
        },
        { who: "dom0", op: "GET_PERMS", arg: "/shared|", expect: "n0|" },
        {
          who: "dom0",
          op: "GET_PERMS",
          arg: "/local/domain/5/data/x|",
          expect: keepOrphans ? "n0|r0|" : "!ENOENT",
        },
      ]);
      assert.deepEqual(s.core.check(), []);
    }
  });
});

describe("transactions", () => {
  // The worked examples of src/xenstore/store.ts, in order.
  it("1. read A, write B, nobody else writes: commits", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/t/a|1", expect: "OK|" },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
      { who: "dom0", tx: "T", op: "READ", arg: "/t/a|", expect: "1" },
      { who: "dom0", tx: "T", op: "WRITE", arg: "/t/b|2", expect: "OK|" },
      { who: "dom0w", op: "READ", arg: "/t/b|", expect: "!ENOENT", note: "invisible until commit" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "OK|" },
      { who: "dom0w", op: "READ", arg: "/t/b|", expect: "2" },
    ]);
  });

  it("2. read A, outside write A: EAGAIN, and the id is gone", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/t/a|1", expect: "OK|" },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
      { who: "dom0", tx: "T", op: "READ", arg: "/t/a|", expect: "1" },
      { who: "dom0w", op: "WRITE", arg: "/t/a|2", expect: "OK|" },
      { who: "dom0", tx: "T", op: "READ", arg: "/t/a|", expect: "1", note: "repeatable read" },
      { who: "dom0", tx: "T", op: "WRITE", arg: "/t/b|2", expect: "OK|" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "!EAGAIN" },
      { who: "dom0", tx: "T", op: "READ", arg: "/t/a|", expect: "!ENOENT" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "!ENOENT" },
      { who: "dom0", op: "READ", arg: "/t/b|", expect: "!ENOENT" },
    ]);
  });

  it("3. read A, outside rm A: EAGAIN", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/t/a|1", expect: "OK|" },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
      { who: "dom0", tx: "T", op: "READ", arg: "/t/a|", expect: "1" },
      { who: "dom0w", op: "RM", arg: "/t/a|", expect: "OK|" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "!EAGAIN" },
    ]);
  });

  it("4. read a missing node, outside creates it: EAGAIN", () => {
    new Scenario().run([
      { who: "dom0", op: "MKDIR", arg: "/t|", expect: "OK|" },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
      { who: "dom0", tx: "T", op: "READ", arg: "/t/c|", expect: "!ENOENT" },
      { who: "dom0w", op: "WRITE", arg: "/t/c|x", expect: "OK|" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "!EAGAIN" },
    ]);
  });

  it("5. write B first, outside write B: EAGAIN, since a write reads the node first", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/t/b|0", expect: "OK|" },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
      { who: "dom0", tx: "T", op: "WRITE", arg: "/t/b|tx", expect: "OK|" },
      { who: "dom0w", op: "WRITE", arg: "/t/b|outside", expect: "OK|" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "!EAGAIN" },
      { who: "dom0", op: "READ", arg: "/t/b|", expect: "outside" },
    ]);
  });

  it("6. list D, outside adds a child: EAGAIN", () => {
    new Scenario().run([
      { who: "dom0", op: "WRITE", arg: "/t/a|1", expect: "OK|" },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
      { who: "dom0", tx: "T", op: "DIRECTORY", arg: "/t|", expect: "a|" },
      { who: "dom0w", op: "WRITE", arg: "/t/new|x", expect: "OK|" },
      { who: "dom0", tx: "T", op: "WRITE", arg: "/other|x", expect: "OK|" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "!EAGAIN" },
    ]);
  });

  it("fires watches at commit only, aborts cleanly, refuses nesting and bad end arguments", () => {
    new Scenario().run([
      { who: "dom0w", op: "WATCH", arg: "/t|w|", expect: "OK|", events: ["dom0w /t w"] },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
      { who: "dom0", tx: "T", op: "WRITE", arg: "/t/x|1", expect: "OK|" },
      {
        who: "dom0",
        tx: "T",
        op: "RM",
        arg: "/t/gone|",
        expect: "OK|",
        note: "missing, its parent exists in T",
      },
      { who: "dom0", tx: "T", op: "TRANSACTION_START", arg: "|", expect: "!EBUSY" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "X|", expect: "!EINVAL" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "", expect: "!EINVAL" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "OK|", events: ["dom0w /t/x w"] },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=U" },
      { who: "dom0", tx: "U", op: "WRITE", arg: "/t/y|1", expect: "OK|" },
      { who: "dom0", tx: "U", op: "TRANSACTION_END", arg: "F|", expect: "OK|" },
      { who: "dom0", op: "READ", arg: "/t/y|", expect: "!ENOENT" },
      { who: "dom0", tx: "99", op: "READ", arg: "/t|", expect: "!ENOENT", note: "unknown tx id" },
      {
        who: "dom0",
        tx: "99",
        op: "WATCH",
        arg: "/t|w2|",
        expect: "OK|",
        events: ["dom0 /t w2"],
        note: "WATCH ignores tx",
      },
    ]);
  });

  it("makes guests' transactions conflict on the directory they both add to", () => {
    new Scenario().run([
      { who: "dom0", op: "MKDIR", arg: "/local/domain/5|", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5|n5|r0|", expect: "OK|" },
      { who: "dom5", op: "TRANSACTION_START", arg: "|", expect: "=G" },
      { who: "dom5", tx: "G", op: "WRITE", arg: "tx|1", expect: "OK|" },
      { who: "dom0", op: "WRITE", arg: "/local/domain/5/tx|dom0", expect: "OK|" },
      { who: "dom5", tx: "G", op: "TRANSACTION_END", arg: "T|", expect: "!EAGAIN" },
    ]);
  });
});

describe("quotas", () => {
  it("limits a guest's nodes, node size, permissions, watches and transactions, not dom0's", () => {
    const s = new Scenario({
      quotas: { nodes: 4, nodeSize: 80, permissions: 2, watches: 1, transactions: 1 },
    });
    s.run([
      { who: "dom0", op: "MKDIR", arg: "/local/domain/5|", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5|n5|r0|", expect: "OK|" },
      { who: "dom5", op: "WRITE", arg: "a|1", expect: "OK|", note: "node 2 (the home dir is 1)" },
      { who: "dom5", op: "WRITE", arg: "b/c|1", expect: "OK|", note: "nodes 3 and 4" },
      { who: "dom5", op: "WRITE", arg: "d|1", expect: "!ENOSPC", note: "node 5" },
      { who: "dom5", op: "WRITE", arg: `a|${"x".repeat(40)}`, expect: "!ENOSPC", note: "24 + 16 + 40 >= 80" },
      { who: "dom5", op: "WRITE", arg: `a|${"x".repeat(30)}`, expect: "OK|" },
      { who: "dom5", op: "SET_PERMS", arg: "a|n5|r1|r2|", expect: "!ENOSPC" },
      { who: "dom5", op: "WATCH", arg: "a|1|", expect: "OK|", events: ["dom5 a 1"] },
      {
        who: "dom5",
        op: "WATCH",
        arg: "a|2|",
        expect: "OK|",
        events: ["dom5 a 2"],
        note: "C allows one over",
      },
      { who: "dom5", op: "WATCH", arg: "a|3|", expect: "!E2BIG" },
      { who: "dom5", op: "TRANSACTION_START", arg: "|", expect: "=A" },
      { who: "dom5", op: "TRANSACTION_START", arg: "|", expect: "=B" },
      { who: "dom5", op: "TRANSACTION_START", arg: "|", expect: "!ENOSPC" },
      { who: "dom0", op: "WRITE", arg: `/big|${"x".repeat(3000)}`, expect: "OK|", note: "dom0 has no quota" },
    ]);
  });

  it("answers EIO to an RM whose walk meets the transaction-nodes quota, as C's tree walk does", () => {
    // Played against C xenstored as dom5 over its ring (-Q transaction-nodes=4), same replies.
    const warnings: string[] = [];
    const log = { info() {}, debug() {}, error() {}, warn: (_o: object, m: string) => warnings.push(m) };
    new Scenario({ quotas: { transactionNodes: 4 }, log }).run([
      { who: "dom0", op: "MKDIR", arg: "/local/domain/5|", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5|n5|r0|", expect: "OK|" },
      { who: "dom5", op: "WRITE", arg: "x/a|1", expect: "OK|" },
      { who: "dom5", op: "WRITE", arg: "x/b|2", expect: "OK|" },
      { who: "dom5", op: "TRANSACTION_START", arg: "|", expect: "=Q" },
      { who: "dom5", tx: "Q", op: "READ", arg: "x|", expect: "" },
      { who: "dom5", tx: "Q", op: "READ", arg: "/local/domain/5|", expect: "" },
      { who: "dom5", tx: "Q", op: "READ", arg: "z1|", expect: "!ENOENT" },
      { who: "dom5", tx: "Q", op: "READ", arg: "z2|", expect: "!ENOENT", note: "4 nodes accessed" },
      { who: "dom5", tx: "Q", op: "READ", arg: "z3|", expect: "!ENOSPC" },
      { who: "dom5", tx: "Q", op: "RM", arg: "x|", expect: "!EIO", note: "the walk cannot read x/a" },
      { who: "dom5", tx: "Q", op: "DIRECTORY", arg: "x|", expect: "a|b|" },
      { who: "dom5", tx: "Q", op: "RM", arg: "x/a|", expect: "!ENOSPC", note: "x/a itself: not the walk" },
      { who: "dom5", tx: "Q", op: "TRANSACTION_END", arg: "T|", expect: "!ENOMEM" },
      { who: "dom5", op: "READ", arg: "x/a|", expect: "1" },
    ]);
    assert.ok(warnings.includes("domain 5 reached quota transaction-nodes (4)"), warnings.join("\n"));
  });

  it("shows and sets quotas through CONTROL as C xenstored prints them", () => {
    const s = new Scenario();
    const { reply } = s.send("dom0", "CONTROL", "quota|");
    assert.match(reply, /^Quota settings:\nnodes {12}: {5}1000 Nodes per domain\n/);
    assert.match(reply, /node-size {8}: {5}2048 Max\. size of a node\n/);
    s.run([
      { who: "dom0", op: "CONTROL", arg: "quota|set|nodes|5|", expect: "OK|" },
      { who: "dom0", op: "CONTROL", arg: "quota|set|nodes|0|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "quota|set|bogus|5|", expect: "!EINVAL" },
      {
        who: "dom0",
        op: "CONTROL",
        arg: "quota-soft|",
        expect: /^Quota settings:\nmemory {11}: {2}2097152 Total/,
      },
      { who: "dom0", op: "CONTROL", arg: "quota|0|", expect: /^Domain 0:\nnodes {11}: / },
      { who: "dom0", op: "CONTROL", arg: "quota|7|", expect: "!ENOENT" },
      { who: "dom0", op: "CONTROL", arg: "bogus|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "check|", expect: "OK|" },
      {
        who: "dom0",
        op: "CONTROL",
        arg: "help|",
        expect: /^check\t\nlog\ton\|off\n.*quota\t\[set <name> <val>\|<domid>\]\n/s,
      },
    ]);
    assert.equal(s.core.quotas.nodes, 5);
  });

  it("logs the domain, the quota and the limit when a guest hits one", () => {
    const lines: string[] = [];
    const log = {
      info() {},
      debug() {},
      error() {},
      warn: (o: object, m: string) => lines.push(`${JSON.stringify(o)} ${m}`),
    };
    const s = new Scenario({ quotas: { watches: 0 }, log });
    s.send("dom5", "WATCH", "/x|a|");
    s.send("dom5", "WATCH", "/x|b|");
    assert.deepEqual(lines, ['{"domid":5,"quota":"watches","limit":0} domain 5 reached quota watches (0)']);
  });
});

describe("replies", () => {
  it("queues a request's own events before its reply, and a new watch's initial event after", () => {
    const s = new Scenario();
    const conn = s.conn("dom0");
    const enc = (x: string) => Uint8Array.from([...x].map((c) => c.charCodeAt(0)));
    const order = (type: number, payload: string) =>
      s.core.step(conn, { type, reqId: 1, txId: 0, payload: enc(payload) }).out.map((d) => d.packet.type);
    assert.deepEqual(order(4 /* WATCH */, "/o\0t\0"), [4, 15]);
    assert.deepEqual(order(11 /* WRITE */, "/o\0v"), [15, 11]);
  });

  it("answers ENOSYS to unknown and server-only types and keeps going", () => {
    const s = new Scenario();
    for (const op of ["WATCH_EVENT", "ERROR", "INVALID"] as const)
      assert.equal(s.send("dom0", op, "x|").reply, "!ENOSYS");
    assert.equal(s.send("dom0", "READ", "/|").reply, "");
  });

  it("turns a reply over 4096 bytes into E2BIG", () => {
    const s = new Scenario();
    const names = Array.from({ length: 200 }, (_, i) => `child-with-a-long-name-${i}`);
    for (const n of names) s.send("dom0", "MKDIR", `/big/${n}|`);
    assert.equal(s.send("dom0", "DIRECTORY", "/big|").reply, "!E2BIG");
  });

  it("pages a long directory with DIRECTORY_PART, whole names only, ending with an empty string", () => {
    const s = new Scenario();
    const names = Array.from({ length: 200 }, (_, i) => `child-with-a-long-name-${i}`);
    for (const n of names) s.send("dom0", "MKDIR", `/big/${n}|`);
    const { names: got, gens } = s.directoryParts("dom0", "/big");
    assert.ok(gens.length > 1, "more than one part");
    const gen = gens[0]!;
    assert.deepEqual(new Set(gens), new Set([gen]), "generation unchanged while the list is");
    assert.deepEqual(got, names);
    s.send("dom0", "MKDIR", "/big/one-more|");
    assert.notEqual(s.send("dom0", "DIRECTORY_PART", "/big|0|").reply.split("|")[0], gen);
    assert.match(s.send("dom0", "DIRECTORY_PART", "/big|999999|").reply, /^\d+\|\|$/);
  });
});
