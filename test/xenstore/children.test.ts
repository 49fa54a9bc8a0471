import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { crc32 } from "node:zlib";
import { ChildList } from "../../src/xenstore/children.ts";
import {
  JOURNAL_FILE,
  Journal,
  loadState,
  SNAPSHOT_FILE,
  StateDirError,
} from "../../src/xenstore/journal.ts";
import {
  decodeDelta,
  encodeDelta,
  encodeHeader,
  HEADER_SIZE,
  JOURNAL_MAGIC,
  readFrames,
  SNAPSHOT_MAGIC,
} from "../../src/xenstore/journal-format.ts";
import { nodeMemory } from "../../src/xenstore/quota.ts";
import { MemFiles } from "./journal-memfiles.ts";
import { Scenario } from "./scenario.ts";

const store = {};
const tx = {};

describe("ChildList", () => {
  it("1. the owner adds in place", () => {
    const l = ChildList.of(["a"], store);
    const m = l.edited({ add: true, name: "b" }, store);
    assert.equal(m, l);
    assert.deepEqual(m.toArray(), ["a", "b"]);
    assert.equal(m.bytes, 4);
  });

  it("2. a frozen list is copied once by the store, and the holder keeps what it saw", () => {
    const l = ChildList.of(["a"], store);
    l.freeze();
    const m = l.edited({ add: true, name: "b" }, store);
    assert.notEqual(m, l);
    assert.deepEqual(l.toArray(), ["a"]);
    assert.deepEqual(m.toArray(), ["a", "b"]);
    assert.equal(m.edited({ add: true, name: "c" }, store), m);
  });

  it("3. a transaction changes its own copy, not the store's", () => {
    const l = ChildList.of(["a"], store);
    const t = l.edited({ add: true, name: "c" }, tx);
    assert.deepEqual(l.toArray(), ["a"]);
    assert.deepEqual(t.toArray(), ["a", "c"]);
    t.adopt(tx, store);
    assert.equal(t.owner, store);
  });

  it("4. keeps C's order: a removed name created again goes to the end", () => {
    let l = ChildList.of(["a", "b", "c"], store);
    l = l.edited({ add: false, name: "a" }, store).edited({ add: true, name: "a" }, store);
    assert.deepEqual(l.toArray(), ["b", "c", "a"]);
    assert.equal(Buffer.from(l.wire()).toString("latin1"), "b\0c\0a\0");
    assert.equal(l.bytes, 6);
  });

  it("lists a name twice when it is added twice, as C does, and removes the first one", () => {
    let l = ChildList.of(["c", "a"], store);
    l = l.edited({ add: true, name: "e" }, store).edited({ add: true, name: "c" }, store);
    assert.deepEqual(l.toArray(), ["c", "a", "e", "c"]);
    assert.equal(l.bytes, 8);
    l = l.edited({ add: false, name: "c" }, store);
    assert.deepEqual(l.toArray(), ["a", "e", "c"]);
    assert.equal(Buffer.from(l.wire()).toString("latin1"), "a\0e\0c\0");
  });

  it("never changes the shared empty list", () => {
    const l = ChildList.EMPTY.edited({ add: true, name: "x" }, store);
    assert.equal(ChildList.EMPTY.size, 0);
    assert.deepEqual(l.toArray(), ["x"]);
  });
});

describe("child lists in the store", () => {
  it("lets a transaction list a directory as it first saw it while children are added outside", () => {
    const s = new Scenario();
    s.run([
      { who: "dom0", op: "WRITE", arg: "/d/a|1", expect: "OK|" },
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
    ]);
    s.run([
      { who: "dom0", tx: "T", op: "DIRECTORY", arg: "/d|", expect: "a|" },
      { who: "dom0", op: "WRITE", arg: "/d/b|2", expect: "OK|" },
      { who: "dom0", op: "WRITE", arg: "/d/c|3", expect: "OK|" },
      { who: "dom0", tx: "T", op: "DIRECTORY", arg: "/d|", expect: "a|" },
      { who: "dom0", op: "DIRECTORY", arg: "/d|", expect: "a|b|c|" },
      { who: "dom0", op: "RM", arg: "/d/a|", expect: "OK|" },
      { who: "dom0", op: "WRITE", arg: "/d/a|again", expect: "OK|" },
      { who: "dom0", op: "DIRECTORY", arg: "/d|", expect: "b|c|a|" },
      { who: "dom0", tx: "T", op: "DIRECTORY", arg: "/d|", expect: "a|" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "!EAGAIN" },
    ]);
    assert.deepEqual(s.core.check(), []);
  });

  it("counts the children's names in the node-size quota to the byte, as they come and go", () => {
    const s = new Scenario();
    s.send("dom0", "INTRODUCE", "5|1|105|");
    s.send("dom0", "MKDIR", "/local/domain/5/d|");
    s.send("dom0", "SET_PERMS", "/local/domain/5/d|n5|");
    // The record of d: 24 + 8 per permission + value + each child's name and NUL; refused at 2048.
    const name = (i: number) => `c${String(i).padStart(98, "0")}`; // 99 characters: 100 bytes listed
    let i = 0;
    while (s.send("dom5", "WRITE", `/local/domain/5/d/${name(i)}|`).reply === "OK|") i++;
    const d = s.core.store.nodes.get("/local/domain/5/d")!;
    assert.equal(d.children.size, i);
    assert.equal(24 + 8 + i * 100, 2032); // one more child would make 2132 ≥ 2048
    const x = (n: number) => "x".repeat(n);
    s.run([
      { who: "dom5", op: "WRITE", arg: `/local/domain/5/d/${x(15)}|`, expect: "!ENOSPC", note: "2048" },
      { who: "dom5", op: "WRITE", arg: `/local/domain/5/d/${x(14)}|`, expect: "OK|", note: "2047" },
      { who: "dom5", op: "WRITE", arg: "/local/domain/5/d/y|", expect: "!ENOSPC", note: "2049" },
      { who: "dom5", op: "RM", arg: `/local/domain/5/d/${name(0)}|`, expect: "OK|", note: "1947" },
      { who: "dom5", op: "WRITE", arg: `/local/domain/5/d/${x(99)}|`, expect: "OK|", note: "2047" },
      { who: "dom5", op: "WRITE", arg: "/local/domain/5/d/y|", expect: "!ENOSPC" },
    ]);
  });

  it("charges a domain exactly for its directories as they grow and shrink", () => {
    const s = new Scenario();
    s.send("dom0", "INTRODUCE", "5|1|105|");
    s.send("dom0", "MKDIR", "/local/domain/5/d|");
    s.send("dom0", "SET_PERMS", "/local/domain/5/d|n5|");
    for (let i = 0; i < 40; i++) s.send("dom5", "WRITE", `/local/domain/5/d/k${i}|v`);
    for (let i = 0; i < 40; i += 3) s.send("dom5", "RM", `/local/domain/5/d/k${i}|`);
    let want = 0;
    for (const n of s.core.store.nodes.values()) if (n.perms[0]!.id === 5) want += nodeMemory(n);
    assert.ok(want > 0);
    assert.equal(s.core.memoryOf(5), want);
  });
});

describe("journal records of a wide directory", () => {
  function journaled(files: MemFiles): Scenario {
    const j = Journal.open(files);
    const s = new Scenario({ journal: j });
    j.attach(s.core);
    return s;
  }

  it("records a new child as an edit whose size does not grow with the directory", () => {
    const files = new MemFiles();
    const s = journaled(files);
    const sizes: number[] = [];
    for (let i = 0; i < 2000; i++) {
      s.send("dom0", "WRITE", `/wide/child${String(i).padStart(5, "0")}|v`);
      if (i === 10 || i === 1999) {
        const p = readFrames(files.bytes(JOURNAL_FILE), HEADER_SIZE).payloads.at(-1)!;
        sizes.push(p.byteLength);
        const d = decodeDelta(p);
        assert.deepEqual(
          d.edited.map((e) => [e.name, e.edits]),
          [["/wide", [{ add: true, name: `child${String(i).padStart(5, "0")}` }]]],
        );
      }
    }
    assert.equal(sizes[0], sizes[1]);
    s.send("dom0", "RM", "/wide/child00003|");
    s.send("dom0", "WRITE", "/wide/child00003|back");
    s.send("dom0", "WRITE", "/wide|a value for the directory itself");
    const before = s.core.store.nodes.get("/wide")!;
    const r = journaled(files);
    const after = r.core.store.nodes.get("/wide")!;
    assert.deepEqual(after.children.toArray(), before.children.toArray());
    assert.equal(after.children.toArray().at(-1), "child00003");
    assert.equal(after.value, "a value for the directory itself");
    assert.equal(after.generation, before.generation);
    assert.deepEqual(r.core.check(), []);
    // The restored store owns its lists again: the next child is an edit in place.
    r.send("dom0", "WRITE", "/wide/next|1");
    assert.ok(r.core.store.nodes.get("/wide")!.children.sameAs(after.children));
  });

  it("records a transaction's new and removed children as edits of the store's list", () => {
    const files = new MemFiles();
    const s = journaled(files);
    for (let i = 0; i < 300; i++) s.send("dom0", "WRITE", `/local/domain/${i + 1}/name|g${i}`);
    const lastRecord = () => decodeDelta(readFrames(files.bytes(JOURNAL_FILE), HEADER_SIZE).payloads.at(-1)!);
    s.run([
      { who: "dom0", op: "TRANSACTION_START", arg: "|", expect: "=T" },
      { who: "dom0", tx: "T", op: "WRITE", arg: "/local/domain/900/name|new", expect: "OK|" },
      { who: "dom0", tx: "T", op: "RM", arg: "/local/domain/7|", expect: "OK|" },
      { who: "dom0", tx: "T", op: "TRANSACTION_END", arg: "T|", expect: "OK|" },
    ]);
    const d = lastRecord();
    assert.deepEqual(
      d.edited.map((e) => [e.name, e.edits]),
      [
        [
          "/local/domain",
          [
            { add: true, name: "900" },
            { add: false, name: "7" },
          ],
        ],
      ],
    );
    assert.ok(d.set.every((n) => n.children.size <= 1));
    const want = s.core.store.nodes.get("/local/domain")!.children.toArray();
    assert.equal(want.at(-1), "900");
    assert.ok(!want.includes("7"));
    const r = journaled(files);
    assert.deepEqual(r.core.store.nodes.get("/local/domain")!.children.toArray(), want);
    assert.deepEqual(r.core.check(), []);
  });

  it("reads a version 1 state directory, and refuses a newer version with one clear line", () => {
    const files = new MemFiles();
    const s = journaled(files);
    s.send("dom0", "WRITE", "/v1/a|1");
    s.send("dom0", "WRITE", "/v1/b|2");
    const withHeader = (magic: string, epoch: number, version: number, body: Uint8Array[]) => {
      const h = encodeHeader(magic, epoch);
      h[7] = version;
      h.writeUInt32LE(crc32(h.subarray(0, 12)), 12);
      return Buffer.concat([h, ...body]);
    };
    // A version 1 pair as version 1 wrote it: the snapshot, and records of whole nodes only.
    const v1 = files.copy();
    const snap = Buffer.from(files.bytes(SNAPSHOT_FILE));
    const epoch = snap.readUInt32LE(8);
    v1.setBytes(SNAPSHOT_FILE, withHeader(SNAPSHOT_MAGIC, epoch, 1, [snap.subarray(HEADER_SIZE)]));
    const nodes = s.core.store.nodes;
    const record = (names: string[]) =>
      encodeDelta({
        generation: s.core.store.generation,
        set: names.map((n) => nodes.get(n)!),
        edited: [],
        deleted: [],
        meta: null,
      });
    v1.setBytes(
      JOURNAL_FILE,
      withHeader(JOURNAL_MAGIC, epoch, 1, [record(["/", "/v1", "/v1/a"]), record(["/v1", "/v1/b"])]),
    );
    const l = loadState(v1);
    assert.equal(l.records, 2);
    assert.deepEqual(l.nodes.get("/v1")!.children.toArray(), ["a", "b"]);
    assert.deepEqual(l.nodes.get("/")!.children.toArray(), ["tool", "v1"]);

    const v9 = files.copy();
    const b = Buffer.from(v9.bytes(SNAPSHOT_FILE));
    v9.setBytes(SNAPSHOT_FILE, withHeader(SNAPSHOT_MAGIC, b.readUInt32LE(8), 9, [b.subarray(HEADER_SIZE)]));
    assert.throws(
      () => loadState(v9),
      (e) =>
        e instanceof StateDirError &&
        /format version 9, this xenlab reads 1 to 2/.test(e.message) &&
        !e.message.includes("\n"),
    );
  });
});
