import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { XenStoreCore } from "../../src/xenstore/core.ts";
import type { Daemon } from "../../src/xenstore/daemon.ts";
import { StateStreamError } from "../../src/xenstore/errors.ts";
import { dumpState, loadState } from "../../src/xenstore/migration.ts";
import {
  decodeStateStream,
  encodeStateStream,
  type StateStream,
} from "../../src/xenstore/migration-format.ts";
import { childPath } from "../../src/xenstore/paths.ts";
import { formatPerm } from "../../src/xenstore/perms.ts";
import { XsType } from "../../src/xenstore/wire.ts";
import { Scenario } from "./scenario.ts";

/** Every node as a line: path, value (hex), permissions, children in order. */
function tree(d: Daemon): string[] {
  const out: string[] = [];
  const walk = (name: string) => {
    const n = d.store.nodes.get(name);
    if (n === undefined) return;
    out.push(
      `${name} ${Buffer.from(n.value).toString("hex")} ${n.perms.map(formatPerm).join(",")} [${n.children.join(",")}]`,
    );
    for (const c of n.children) walk(childPath(name, c));
  };
  walk("/");
  return out;
}

function special(d: Daemon): string[] {
  return [...d.specialPerms].map(([name, p]) => `${name} ${p.map(formatPerm).join(",")}`);
}

/** Through the bytes, as a file would carry it. */
function carry(d: Daemon, version?: number): StateStream {
  return decodeStateStream(encodeStateStream(dumpState(d, version === undefined ? {} : { version }).stream));
}

/** A store with guests, their permissions, a binary value, watches, a target and quotas. */
function busyScenario(): Scenario {
  const s = new Scenario();
  const ok = (who: string, op: keyof typeof XsType, arg: string) =>
    assert.equal(s.send(who, op, arg).reply, "OK|", `${who} ${op} ${arg}`);
  ok("dom0", "WRITE", "/local/domain/5/name|guest5");
  ok("dom0", "SET_PERMS", "/local/domain/5|n5|r0");
  ok("dom5", "WRITE", "device/vif/0/state|4");
  ok("dom5", "WRITE", "data/bin|a|b");
  ok("dom0", "SET_PERMS", "/local/domain/5/device/vif/0|b5|r0|w6");
  ok("dom0", "WRITE", "/local/domain/6/name|stub");
  ok("dom0", "WRITE", "/vm/z|1");
  ok("dom0", "WRITE", "/vm/a|2");
  ok("dom0", "SET_PERMS", "@releaseDomain|n0|r5");
  ok("dom5", "WATCH", "device|dev|");
  ok("dom5", "WATCH", "@releaseDomain|rel|");
  ok("dom0", "WATCH", "/vm|tools|");
  ok("dom6", "WATCH", "/local/domain/5/name|n|");
  ok("dom0", "SET_TARGET", "6|5|");
  ok("dom0", "SET_QUOTA", "nodes|500|");
  ok("dom0", "SET_QUOTA", "5|watches|7|");
  // The root's value and permissions are state too.
  ok("dom0", "WRITE", "/|root");
  ok("dom0", "SET_PERMS", "/|n0|r5");
  return s;
}

describe("dumpState() / loadState()", () => {
  it("loads into a fresh core the same nodes, permissions, domains, watches and quotas", () => {
    const s = busyScenario();
    const stream = carry(s.core);
    const core = new XenStoreCore();
    const r = loadState(core, stream);
    assert.deepEqual(tree(core), tree(s.core));
    assert.deepEqual(special(core), special(s.core));
    assert.deepEqual([...core.domains.keys()].sort(), [...s.core.domains.keys()].sort());
    assert.equal(core.quotas.nodes, 500);
    assert.equal(core.accounts.limit(5, "watches"), 7);
    assert.equal(core.accounts.limit(6, "watches"), s.core.quotas.watches);
    assert.equal(core.domains.get(6)!.conn!.target, 5);
    assert.deepEqual([...core.entries].sort(), [...s.core.entries].sort());
    assert.deepEqual(core.check(), []);
    assert.equal(r.domains, 2);
    assert.equal(r.watches, 3);
    // dom0's tool socket does not survive; its watch is reported.
    assert.ok(
      r.dropped.some((l) => l.includes("watch /vm (token tools)")),
      r.dropped.join("\n"),
    );
  });

  it("restores a guest's relative watch: events carry the relative path, with no initial event", () => {
    const core = new XenStoreCore();
    loadState(core, carry(busyScenario().core));
    const dom5 = core.domains.get(5)!.conn!;
    assert.deepEqual(
      dom5.watches.map((w) => `${w.node} ${w.token} ${w.relativeTo}`),
      ["/local/domain/5/device dev /local/domain/5", "@releaseDomain rel null"],
    );
    const tool = core.connectSocket();
    const r = core.step(tool, {
      type: XsType.WRITE,
      reqId: 1,
      txId: 0,
      payload: new Uint8Array(Buffer.from("/local/domain/5/device/vif/0/state\x003")),
    });
    const events = r.events
      .filter((e) => e.conn === dom5)
      .map((e) => Buffer.from(e.packet.payload).toString("latin1"));
    assert.deepEqual(events, ["device/vif/0/state\0dev\0"]);
  });

  it("dumps again what it loaded, record for record", () => {
    const first = dumpState(busyScenario().core).stream;
    const core = new XenStoreCore();
    loadState(core, decodeStateStream(encodeStateStream(first)));
    const again = dumpState(core).stream;
    const nodes = (s: StateStream) => s.records.filter((r) => r.type !== "connection" && r.type !== "watch");
    assert.deepEqual(nodes(again), nodes(first));
  });

  it("writes only Xen 4.17's record types (0–5) at version 1", () => {
    const s = dumpState(busyScenario().core, { version: 1 }).stream;
    assert.equal(s.version, 1);
    assert.deepEqual(
      new Set(s.records.map((r) => r.type)),
      new Set(["global", "connection", "watch", "node"]),
    );
  });

  it("removes the nodes the stream does not hold", () => {
    const core = new XenStoreCore();
    const tool = core.connectSocket();
    core.step(tool, {
      type: XsType.WRITE,
      reqId: 1,
      txId: 0,
      payload: new Uint8Array(Buffer.from("/old/x\0v")),
    });
    loadState(core, carry(busyScenario().core));
    assert.equal(core.store.nodes.get("/old"), undefined);
    assert.deepEqual(core.check(), []);
  });

  it("reads C xenstored 4.17's dump: its nodes and permissions; its sockets are reported", () => {
    const bytes = readFileSync(join(import.meta.dirname, "fixtures/cxenstored-4.17.state_dump"));
    const core = new XenStoreCore();
    const r = loadState(core, decodeStateStream(new Uint8Array(bytes)));
    assert.equal(r.nodes, 17);
    const vif = core.store.nodes.get("/local/domain/1/device/vif/0")!;
    assert.deepEqual(vif.perms.map(formatPerm), ["b1", "r0"]);
    assert.equal(Buffer.from(core.store.nodes.get("/local/pool/0/name")!.value).toString(), "Pool-0");
    assert.deepEqual(r.dropped, [
      "connection 2 (socket fd 7): a socket does not outlive its process",
      "watch /local/domain/1 (token /local/domain/1) of socket connection 2",
      "connection 3 (socket fd 8): a socket does not outlive its process",
    ]);
  });

  it("refuses a watch whose connection is not defined before it", () => {
    const core = new XenStoreCore();
    const stream: StateStream = {
      version: 1,
      bigEndian: false,
      records: [{ type: "watch", connId: 9, path: "/a", token: "t", depth: null }],
    };
    assert.throws(() => loadState(core, stream), StateStreamError);
    assert.throws(() => loadState(core, stream), /connection 9 comes later or not at all/);
  });

  it("leaves out open transactions and counts them", () => {
    const s = busyScenario();
    s.send("dom5", "TRANSACTION_START", "");
    const r = dumpState(s.core);
    assert.equal(r.transactions, 1);
    assert.ok(!r.stream.records.some((x) => x.type === "transaction"));
  });
});

describe("CONTROL dump-state", () => {
  const written = new Map<string, Uint8Array>();
  const control = (core: XenStoreCore, args: string) => {
    const r = core.step(core.connectSocket(), {
      type: XsType.CONTROL,
      reqId: 1,
      txId: 0,
      payload: new Uint8Array(Buffer.from(`${args.replaceAll("|", "\0")}\0`)),
    });
    return `${r.reply.type === XsType.ERROR ? "!" : ""}${Buffer.from(r.reply.payload).toString("latin1").replace(/\0$/, "")}`;
  };

  it("writes the stream to the file named, version 2 unless -v 1", () => {
    const core = new XenStoreCore({ dumpFiles: { write: (p, b) => written.set(p, b) } });
    assert.equal(control(core, "dump-state|/d2"), "OK");
    assert.equal(control(core, "dump-state|-v|1|/d1"), "OK");
    assert.equal(decodeStateStream(written.get("/d2")!).version, 2);
    assert.equal(decodeStateStream(written.get("/d1")!).version, 1);
  });

  it("answers a failed write with a message, and bad arguments with EINVAL", () => {
    const core = new XenStoreCore({
      dumpFiles: {
        write: () => {
          throw new Error("EACCES: permission denied");
        },
      },
    });
    assert.equal(control(core, "dump-state|/x"), "Cannot write the state to /x: EACCES: permission denied");
    assert.equal(control(core, "dump-state"), "!EINVAL");
    assert.equal(control(core, "dump-state|-v|3|/x"), "!EINVAL");
    assert.equal(control(new XenStoreCore(), "dump-state|/x"), "dump-state is not available in this daemon");
  });
});
