/**
 * The journal of `xenstored --state` (src/xenstore/journal.ts) in process: its byte format
 * (round trip, a torn tail cut at every byte, a bad checksum, damaged headers), what it keeps
 * (nodes with permissions and generations, domains, special permissions, released domains),
 * one record per request and per transaction, and a kill at every file operation of a
 * seeded workload, compactions included. The real-process kill test is journal-kill.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { crc32 } from "node:zlib";
import { ChildList } from "../../src/xenstore/children.ts";
import { XenStoreCore } from "../../src/xenstore/core.ts";
import {
  JOURNAL_FILE,
  Journal,
  loadState,
  SNAPSHOT_FILE,
  StateDirError,
  type StateFiles,
} from "../../src/xenstore/journal.ts";
import {
  crc32Range,
  type Delta,
  decodeDelta,
  encodeDelta,
  HEADER_SIZE,
  readFrames,
} from "../../src/xenstore/journal-format.ts";
import { formatPerm } from "../../src/xenstore/perms.ts";
import { DirStateFiles } from "../../src/xenstore/state-files.ts";
import { mulberry32 } from "../helpers/prng.ts";
import { Killed, MemFiles } from "./journal-memfiles.ts";
import { Scenario } from "./scenario.ts";

/** Everything a restart must bring back, as comparable text. */
function stateOf(core: XenStoreCore): string[] {
  const out: string[] = [];
  for (const n of core.store.nodes.values()) {
    const value = n.value;
    out.push(
      `${n.name} = ${JSON.stringify(value)} (${n.perms.map(formatPerm).join(",")}) [${n.children.toArray().join(",")}] g${n.generation}`,
    );
  }
  out.sort();
  for (const d of core.domains.values()) out.push(`domain ${d.domid} gfn ${d.gfn} port ${d.port}`);
  for (const [name, p] of core.specialPerms) out.push(`${name} (${p.map(formatPerm).join(",")})`);
  for (const [domid, n] of [...core.entries].sort((a, b) => a[0] - b[0]))
    if (n !== 0) out.push(`entries ${domid} ${n}`);
  return out;
}

/** A scenario whose core journals into `files`. */
function journaled(files: StateFiles, maxJournalBytes?: number): { s: Scenario; j: Journal } {
  const j = Journal.open(files, maxJournalBytes === undefined ? {} : { maxJournalBytes });
  const s = new Scenario({ journal: j });
  j.attach(s.core);
  return { s, j };
}

/** What a restart from `files` serves. */
function reload(files: StateFiles): { s: Scenario; j: Journal } {
  return journaled(files);
}

type Req = [op: Parameters<Scenario["send"]>[1], arg: string, tx?: string];

/** A seeded list of requests: writes, mkdirs, rms, set_perms, transactions, domains. */
function workload(seed: number, n: number): Req[] {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const paths = [
    "/w/a",
    "/w/a/b",
    "/w/a/b/c",
    "/w/d",
    "/w/d/e",
    "/w/f",
    "/local/domain/2/x",
    "/local/domain/3/y/z",
  ];
  const perms = ["n0", "r0", "b0|r2", "n2|r3", "w3|b0", "n3"];
  const out: Req[] = [];
  let v = 0;
  while (out.length < n) {
    const k = r();
    if (k < 0.35) out.push(["WRITE", `${pick(paths)}|v${v++}${"x".repeat(Math.floor(r() * 40))}`]);
    else if (k < 0.45) out.push(["MKDIR", `${pick(paths)}|`]);
    else if (k < 0.58) out.push(["RM", `${pick(paths)}|`]);
    else if (k < 0.72) out.push(["SET_PERMS", `${pick(paths)}|${pick(perms)}|`]);
    else if (k < 0.87) {
      out.push(["TRANSACTION_START", "|"]);
      const m = 1 + Math.floor(r() * 3);
      for (let i = 0; i < m; i++) {
        if (r() < 0.7) out.push(["WRITE", `${pick(paths)}|t${v++}`, "T"]);
        else out.push(["RM", `${pick(paths)}|`, "T"]);
      }
      out.push(["TRANSACTION_END", r() < 0.85 ? "T|" : "F|", "T"]);
    } else if (k < 0.93)
      out.push(["INTRODUCE", `${pick([2, 3])}|${Math.floor(r() * 100)}|${1 + Math.floor(r() * 9)}|`]);
    else if (k < 0.97) out.push(["RELEASE", `${pick([2, 3])}|`]);
    else out.push(["SET_PERMS", `@releaseDomain|${pick(["n0", "r0|r2", "n0|b3"])}|`]);
  }
  return out;
}

/** Sends one request of a workload; TRANSACTION_START's id is remembered as "T". */
function send(s: Scenario, [op, arg, tx]: Req): string {
  const { reply } = s.send("dom0", op, arg, tx);
  if (op === "TRANSACTION_START" && !reply.startsWith("!")) s.txs.set("T", Number(reply.split("|")[0]));
  return reply;
}

describe("journal format", () => {
  it("decodes what it encodes, nodes, child-list edits, deletions and meta", () => {
    const d: Delta = {
      generation: 2 ** 40 + 3,
      set: [
        {
          name: "/a",
          value: "\x00\xff\x01",
          perms: [
            { id: 5, perms: 1 },
            { id: 0xfffffffb, perms: 3 },
          ],
          children: ChildList.of(["b", "c"], null),
          generation: 7,
        },
        {
          name: "/é",
          value: "",
          perms: [{ id: 0, perms: 0 }],
          children: ChildList.EMPTY,
          generation: 0,
        },
      ],
      edited: [
        {
          name: "/dir",
          value: "\x07",
          perms: [{ id: 0, perms: 2 }],
          generation: 9,
          edits: [
            { add: true, name: "new" },
            { add: false, name: "old" },
          ],
        },
      ],
      deleted: ["/gone", "/x/y"],
      meta: {
        domains: [{ domid: 3, gfn: "0xfeffc", port: 9 }],
        special: [{ name: "@releaseDomain", perms: [{ id: 0, perms: 1 }] }],
      },
    };
    const frame = encodeDelta(d);
    const f = readFrames(frame, 0);
    assert.equal(f.stop, null);
    assert.equal(f.payloads.length, 1);
    // Child lists compare by their names (their fields are private).
    const plain = (x: Delta) => ({ ...x, set: x.set.map((n) => ({ ...n, children: n.children.toArray() })) });
    assert.deepEqual(plain(decodeDelta(f.payloads[0]!)), plain(d));
  });

  it("checksums with zlib's CRC-32, short and long", () => {
    const b = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) & 0xff));
    for (const [s, e] of [
      [0, 0],
      [0, 1],
      [5, 86],
      [0, 1024],
      [1, 1026],
      [0, 3000],
    ] as const)
      assert.equal(crc32Range(b, s, e), crc32(b.subarray(s, e)), `[${s}, ${e})`);
  });

  it("drops a torn tail cut at every byte and keeps the records before it", () => {
    const files = new MemFiles();
    const { s } = journaled(files);
    const states = [stateOf(s.core)];
    for (const req of [
      ["WRITE", "/a/b|1"],
      ["SET_PERMS", "/a/b|r7|w8|"],
      ["RM", "/a|"],
      ["WRITE", `/big|${"z".repeat(3000)}`],
    ] as Req[]) {
      send(s, req);
      states.push(stateOf(s.core));
    }
    const full = files.bytes(JOURNAL_FILE);
    const ends = [HEADER_SIZE];
    let pos = HEADER_SIZE;
    for (const p of readFrames(full, HEADER_SIZE).payloads) {
      pos += 8 + p.byteLength;
      ends.push(pos);
    }
    assert.equal(ends.length, states.length);
    for (let cut = HEADER_SIZE; cut <= full.length; cut++) {
      const copy = files.copy();
      copy.setBytes(JOURNAL_FILE, full.subarray(0, cut));
      const whole = ends.filter((e) => e <= cut).length - 1;
      const l = loadState(copy);
      assert.equal(l.records, whole, `cut at ${cut}`);
      assert.equal(l.droppedBytes, cut - ends[whole]!);
      assert.equal(l.tornTail === null, cut === ends[whole]);
      assert.deepEqual(stateOf(reload(copy).s.core), states[whole], `cut at ${cut}`);
    }
  });

  it("stops at a record whose checksum does not match", () => {
    const files = new MemFiles();
    const { s } = journaled(files);
    send(s, ["WRITE", "/one|1"]);
    const afterOne = stateOf(s.core);
    send(s, ["WRITE", "/two|2"]);
    send(s, ["WRITE", "/three|3"]);
    const j = Buffer.from(files.bytes(JOURNAL_FILE));
    const second = HEADER_SIZE + 8 + readFrames(j, HEADER_SIZE).payloads[0]!.byteLength;
    j[second + 8 + 5]! ^= 0x40;
    files.setBytes(JOURNAL_FILE, j);
    const l = loadState(files);
    assert.equal(l.records, 1);
    assert.match(l.tornTail ?? "", /checksum/);
    assert.deepEqual(stateOf(reload(files).s.core), afterOne);
  });

  it("refuses a damaged snapshot, a foreign file and a journal ahead of its snapshot", () => {
    const files = new MemFiles();
    const { s } = journaled(files);
    send(s, ["WRITE", "/a|1"]);
    const good = files.copy();

    const badSnap = good.copy();
    const b = Buffer.from(badSnap.bytes(SNAPSHOT_FILE));
    b[b.length - 1]! ^= 1;
    badSnap.setBytes(SNAPSHOT_FILE, b);
    assert.throws(
      () => loadState(badSnap),
      (e) => e instanceof StateDirError && /snapshot/.test(e.message),
    );

    const foreign = good.copy();
    foreign.setBytes(JOURNAL_FILE, Buffer.from("not a journal at all"));
    assert.throws(
      () => loadState(foreign),
      (e) => e instanceof StateDirError && /not a xenlab journal/.test(e.message),
    );

    const ahead = good.copy();
    const { j } = journaled(ahead); // compacts: snapshot and journal at epoch 2
    j.close();
    ahead.setBytes(SNAPSHOT_FILE, good.bytes(SNAPSHOT_FILE)); // snapshot back at epoch 1
    assert.throws(
      () => loadState(ahead),
      (e) => e instanceof StateDirError && /ahead/.test(e.message),
    );
  });
});

describe("Journal", () => {
  it("brings back nodes with values, permissions, child order and generations", () => {
    const files = new MemFiles();
    const { s } = journaled(files);
    s.run([
      { who: "dom0", op: "WRITE", arg: "/p/deep/x|v", expect: "OK|" },
      { who: "dom0", op: "WRITE", arg: "/p/a|bin\x01\xff", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/p|n3|r4|", expect: "OK|" },
      { who: "dom0", op: "WRITE", arg: "/p/child|v", expect: "OK|" },
      { who: "dom0", op: "MKDIR", arg: "/p/empty|", expect: "OK|" },
      { who: "dom0", op: "RM", arg: "/p/a|", expect: "OK|" },
    ]);
    const before = stateOf(s.core);
    const r = reload(files).s;
    assert.deepEqual(stateOf(r.core), before);
    assert.deepEqual(r.core.check(), []);
    r.run([
      { who: "dom0", op: "DIRECTORY", arg: "/p|", expect: "deep|child|empty|" },
      { who: "dom0", op: "GET_PERMS", arg: "/p/child|", expect: "n3|r4|" },
      { who: "dom0", op: "READ", arg: "/p/deep/x|", expect: "v" },
    ]);
    // New generations go on from the old counter: a directory that changes gets a new one.
    const g = r.core.store.nodes.get("/p")!.generation;
    r.send("dom0", "WRITE", "/p/new|1");
    assert.ok(r.core.store.nodes.get("/p")!.generation > g);
  });

  it("writes one record per changing request and none for reads or failures", () => {
    const files = new MemFiles();
    const { s, j } = journaled(files);
    const count = () => j.stats.records;
    send(s, ["WRITE", "/a/b/c|1"]); // creates /a, /a/b, /a/b/c, rewrites /
    assert.equal(count(), 1);
    for (const req of [
      ["READ", "/a/b/c|"],
      ["DIRECTORY", "/a|"],
      ["GET_PERMS", "/a|"],
      ["WATCH", "/a|tok|"],
      ["RM", "/nope/deeper|"],
      ["SET_PERMS", "/missing|n0|"],
    ] as Req[])
      send(s, req);
    assert.equal(count(), 1);
    send(s, ["RM", "/a|"]);
    assert.equal(count(), 2);
  });

  it("records a transaction as one record at commit, and nothing when it aborts or fails", () => {
    const files = new MemFiles();
    const { s, j } = journaled(files);
    send(s, ["TRANSACTION_START", "|"]);
    send(s, ["WRITE", "/t/1|a", "T"]);
    send(s, ["WRITE", "/t/2|b", "T"]);
    send(s, ["RM", "/tool|", "T"]);
    assert.equal(j.stats.records, 0);
    assert.equal(send(s, ["TRANSACTION_END", "T|", "T"]), "OK|");
    assert.equal(j.stats.records, 1);
    const payload = readFrames(files.bytes(JOURNAL_FILE), HEADER_SIZE).payloads[0]!;
    const d = decodeDelta(payload);
    assert.deepEqual(d.set.map((n) => n.name).sort(), ["/t", "/t/1", "/t/2"]);
    // "/" gained t and lost tool: an edit of its list, not the list.
    assert.deepEqual(
      d.edited.map((e) => [e.name, e.edits]),
      [
        [
          "/",
          [
            { add: true, name: "t" },
            { add: false, name: "tool" },
          ],
        ],
      ],
    );
    assert.deepEqual([...d.deleted].sort(), ["/tool", "/tool/xenstored"]);

    send(s, ["TRANSACTION_START", "|"]);
    send(s, ["WRITE", "/t/3|c", "T"]);
    send(s, ["TRANSACTION_END", "F|", "T"]);
    send(s, ["TRANSACTION_START", "|"]);
    send(s, ["READ", "/t/1|", "T"]);
    send(s, ["WRITE", "/t/1|changed outside"]);
    send(s, ["WRITE", "/t/4|d", "T"]);
    assert.equal(send(s, ["TRANSACTION_END", "T|", "T"]), "!EAGAIN");
    assert.equal(j.stats.records, 2, "only the outside write");
    assert.deepEqual(stateOf(reload(files).s.core), stateOf(s.core));
  });

  it("keeps introduced domains and special permissions, and forgets a released domain's nodes", () => {
    const files = new MemFiles();
    const { s } = journaled(files);
    s.run([
      { who: "dom0", op: "INTRODUCE", arg: "5|0xfeffc|7|", expect: "OK|" },
      { who: "dom0", op: "INTRODUCE", arg: "6|0xfeffd|8|", expect: "OK|" },
      { who: "dom0", op: "WRITE", arg: "/local/domain/5/data/x|1", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5/data|n5|r6|", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5/data/x|n5|", expect: "OK|" },
      { who: "dom0", op: "WRITE", arg: "/shared|s", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/shared|n0|r6|w5|", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "@releaseDomain|n0|r6|", expect: "OK|" },
    ]);
    let r = reload(files).s;
    assert.deepEqual(stateOf(r.core), stateOf(s.core));
    r.run([
      { who: "dom0", op: "IS_DOMAIN_INTRODUCED", arg: "5|", expect: "T|" },
      { who: "dom0", op: "IS_DOMAIN_INTRODUCED", arg: "4|", expect: "F|" },
      { who: "dom0", op: "RELEASE", arg: "6|", expect: "OK|" },
    ]);
    assert.equal(r.core.domains.has(6), false);
    r = reload(files).s;
    r.run([
      { who: "dom0", op: "IS_DOMAIN_INTRODUCED", arg: "6|", expect: "F|" },
      { who: "dom0", op: "GET_PERMS", arg: "/shared|", expect: "n0|w5|", note: "dom6 left the ACL" },
      { who: "dom0", op: "RELEASE", arg: "5|", expect: "OK|" },
      { who: "dom0", op: "READ", arg: "/local/domain/5/data|", expect: "!ENOENT", note: "owned by dom5" },
    ]);
    assert.deepEqual(r.core.specialPerms.get("@releaseDomain"), [{ id: 0, perms: 0 }], "dom6 left it too");
    const afterRelease = stateOf(r.core);
    r = reload(files).s;
    assert.deepEqual(stateOf(r.core), afterRelease);
    assert.deepEqual(r.core.check(), []);
  });

  it("answers nothing more once a write has failed", () => {
    const files = new MemFiles();
    const { s } = journaled(files);
    send(s, ["WRITE", "/ok|1"]);
    files.killAt = files.ops + 1; // the next append fails, as with ENOSPC
    assert.throws(() => send(s, ["WRITE", "/lost|2"]), Killed);
    files.killAt = Number.POSITIVE_INFINITY;
    assert.throws(() => send(s, ["WRITE", "/later|3"]), Killed, "the same error again");
    // In memory /later exists now, so no request may be answered any more (the daemon dies).
    assert.throws(() => send(s, ["READ", "/later|"]), Killed, "not even a read");
    const r = reload(files).s;
    assert.equal(r.send("dom0", "READ", "/ok|").reply, "1");
    assert.equal(r.send("dom0", "READ", "/lost|").reply, "!ENOENT");
  });

  it("compacts past its bound and reloads the same state from snapshot + journal", () => {
    const files = new MemFiles();
    const { s, j } = journaled(files, 4096);
    for (const req of workload(7, 400)) send(s, req);
    assert.ok(j.stats.compactions >= 3, `compactions: ${j.stats.compactions}`);
    assert.ok(files.bytes(JOURNAL_FILE).length <= Math.max(4096, 2 * j.stats.snapshotBytes) + 4096);
    assert.deepEqual(stateOf(reload(files).s.core), stateOf(s.core));
  });

  it("after a kill at any file operation, restores every acknowledged request and at most the one in flight", () => {
    const reqs = workload(11, 160);
    // The same run without a kill counts the file operations to kill at.
    const dry = new MemFiles();
    const { s: ds } = journaled(dry, 2048);
    for (const req of reqs) send(ds, req);
    assert.ok(dry.ops > 100, `only ${dry.ops} file operations`);
    let killedInCompaction = 0;
    for (let k = 1; k <= dry.ops; k++) {
      const files = new MemFiles();
      files.killAt = k;
      let acked: string[] | null = null;
      let inFlight: string[] | null = null;
      let appendedInFlight = false;
      try {
        const { s } = journaled(files, 2048);
        acked = stateOf(s.core);
        for (const req of reqs) {
          const appends = files.appends;
          try {
            send(s, req);
          } catch (e) {
            if (!(e instanceof Killed)) throw e;
            inFlight = stateOf(s.core);
            appendedInFlight = files.appends > appends;
            throw e;
          }
          acked = stateOf(s.core);
        }
        assert.fail(`kill at ${k} never came`);
      } catch (e) {
        if (!(e instanceof Killed)) throw e;
      }
      files.killAt = Number.POSITIVE_INFINITY;
      const got = stateOf(reload(files).s.core);
      if (acked === null) {
        // Killed while attaching an empty directory: the initial tree.
        assert.deepEqual(got, stateOf(new XenStoreCore()), `kill at ${k}`);
        continue;
      }
      if (appendedInFlight) {
        // The record was written whole; the kill hit the compaction after it.
        killedInCompaction++;
        assert.deepEqual(got, inFlight, `kill at ${k}: the record was written`);
      } else if (inFlight !== null && JSON.stringify(got) !== JSON.stringify(acked)) {
        assert.deepEqual(got, inFlight, `kill at ${k}: neither before nor after the request in flight`);
      } else {
        assert.deepEqual(got, acked, `kill at ${k}`);
      }
    }
    assert.ok(killedInCompaction > 10, `kills inside compactions: ${killedInCompaction}`);
  });
});

describe("DirStateFiles", () => {
  it("restores from a real directory and ignores a leftover snapshot.tmp, which it deletes", () => {
    const dir = mkdtempSync(join(tmpdir(), "xenlab-journal-"));
    try {
      const { s, j } = journaled(new DirStateFiles(dir));
      send(s, ["WRITE", "/disk/a|1"]);
      send(s, ["SET_PERMS", "/disk/a|r1|w2|"]);
      j.close();
      const want = stateOf(s.core);
      const snap = readFileSync(join(dir, SNAPSHOT_FILE));
      // A kill during step 1 of a compaction: half a new snapshot in snapshot.tmp.
      writeFileSync(join(dir, `${SNAPSHOT_FILE}.tmp`), snap.subarray(0, snap.length >> 1));
      const again = reload(new DirStateFiles(dir));
      assert.deepEqual(stateOf(again.s.core), want);
      again.j.close();
      assert.throws(() => readFileSync(join(dir, `${SNAPSHOT_FILE}.tmp`)), { code: "ENOENT" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
