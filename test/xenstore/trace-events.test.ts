import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LiveRecorder } from "../../src/host/live.ts";
import type { XsTraceEvent } from "../../src/xenstore/trace-events.ts";
import { Scenario } from "./scenario.ts";

describe("XenStoreCore.tracer", () => {
  it("is off until subscribed, and off again when the last subscriber leaves", () => {
    const s = new Scenario();
    assert.equal(s.core.tracer.on, false);
    const off = s.core.tracer.subscribe(() => {});
    assert.equal(s.core.tracer.on, true);
    off();
    assert.equal(s.core.tracer.on, false);
  });

  it("emits each request with its connection, absolute path and result, then the watch events it queued", () => {
    const s = new Scenario();
    s.send("dom0w", "WATCH", "/a|tok|");
    const seen: XsTraceEvent[] = [];
    s.core.tracer.subscribe((e) => seen.push(e));
    s.send("dom0", "WRITE", "/a/b|v");
    s.send("dom0", "READ", "/nope|");
    s.send("dom1", "WRITE", "rel|x");
    const reqs = seen.filter((e) => e.kind === "xs-request");
    assert.deepEqual(
      reqs.map((e) => [e.label, e.type, e.path, e.result]),
      [
        ["socket#1", "WRITE", "/a/b", "OK"],
        ["socket#1", "READ", "/nope", "ENOENT"],
        ["socket#1", "INTRODUCE", "1", "OK"],
        ["dom1", "WRITE", "/local/domain/1/rel", "EACCES"],
      ],
    );
    const ev = seen.find((e) => e.kind === "xs-watch-event");
    assert.deepEqual(ev && { label: ev.label, path: ev.path, token: ev.token }, {
      label: "socket#2",
      path: "/a/b",
      token: "tok",
    });
  });
});

describe("LiveRecorder", () => {
  it("records last writers, and a device's state writes as its timeline, a transaction's at its commit", () => {
    const s = new Scenario();
    const rec = new LiveRecorder(s.core.store);
    rec.full = true;
    s.core.tracer.subscribe((e) => rec.event(e));
    const be = "/local/domain/0/backend/alice_dev/1/0";
    s.send("dom0", "WRITE", `${be}/state|2`);
    const tx = s.send("dom0", "TRANSACTION_START", "|").reply.replace(/\|$/, "");
    s.txs.set("t", Number(tx));
    s.send("dom0", "WRITE", "/local/domain/1/device/alice_dev/0/ring-ref|8", "t");
    assert.equal(rec.timelines.get("alice_dev/1/0")?.length, 1, "held until the commit");
    s.send("dom0", "TRANSACTION_END", "T|", "t");
    const tl = rec.timelines.get("alice_dev/1/0")!;
    assert.deepEqual(
      tl.map((e) => [e.side, e.kind, e.state ?? null, e.text]),
      [
        ["backend", "state", 2, "InitWait (2) by socket#1"],
        ["frontend", "key", null, "ring-ref = 8 by socket#1"],
      ],
    );
    assert.equal(rec.writers.get(`${be}/state`), "socket#1");
    assert.equal(rec.counters.xsRequests, 4);
    assert.deepEqual(
      rec.logSince(0, 2).map((e) => e.type),
      ["WRITE", "TRANSACTION_END"],
    );
  });

  it("without a viewer keeps only the devices' timelines: no log, no counters, no last writers", () => {
    const s = new Scenario();
    const rec = new LiveRecorder(s.core.store);
    s.core.tracer.subscribe((e) => rec.event(e));
    s.send("dom0", "WRITE", "/a|1");
    s.send("dom0", "READ", "/a|");
    s.send("dom0", "WRITE", "/local/domain/0/backend/alice_dev/1/0/state|2");
    assert.deepEqual(
      rec.timelines.get("alice_dev/1/0")?.map((e) => e.text),
      ["InitWait (2) by socket#1"],
    );
    assert.equal(rec.writers.size, 0);
    assert.equal(rec.counters.xsRequests, 0);
    assert.deepEqual(rec.logSince(0, 10), []);
  });

  it("without a viewer the daemon does not trace its reads; a viewer gets them all again", () => {
    const s = new Scenario();
    const rec = new LiveRecorder(s.core.store, [s.core.tracer]);
    const seen: string[] = [];
    s.core.tracer.subscribe((e) => {
      if (e.kind === "xs-request") seen.push(e.type);
    });
    s.send("dom0", "WRITE", "/a|1");
    s.send("dom0", "READ", "/a|");
    s.send("dom0", "DIRECTORY", "/|");
    assert.deepEqual(seen, ["WRITE"]);
    rec.full = true;
    s.send("dom0", "READ", "/a|");
    assert.deepEqual(seen, ["WRITE", "READ"]);
    rec.full = false;
    s.send("dom0", "GET_PERMS", "/a|");
    assert.deepEqual(seen, ["WRITE", "READ"]);
  });
});
