import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ChildList } from "../../src/xenstore/children.ts";
import type { Perms } from "../../src/xenstore/perms.ts";
import { type Node, NodeMap } from "../../src/xenstore/store.ts";
import { Scenario } from "./scenario.ts";

const P0: Perms = [{ id: 0, perms: 0 }];
const OWNER = {};

function fresh(): NodeMap {
  const m = new NodeMap(OWNER);
  m.set("/", { name: "/", value: "", perms: P0, children: ChildList.EMPTY, generation: 0 });
  return m;
}

/** Writes `path` as the store does: the record, then its parent's list gains its name (parents made first). */
function put(m: NodeMap, path: string, value: string, perms: Perms = P0, gen = 1): void {
  const old = m.get(path);
  m.set(path, { name: path, value, perms, children: old?.children ?? ChildList.EMPTY, generation: gen });
  const slash = path.lastIndexOf("/");
  const parentName = slash === 0 ? "/" : path.slice(0, slash);
  if (!m.has(parentName)) put(m, parentName, "", perms, gen);
  const parent = m.get(parentName)!;
  const base = path.slice(slash + 1);
  if (!parent.children.has(base)) {
    const children = parent.children.edited({ add: true, name: base }, OWNER);
    m.set(parentName, { ...parent, children });
  }
}

function remove(m: NodeMap, path: string): void {
  const n = m.get(path)!;
  for (const c of n.children.toArray()) remove(m, `${path}/${c}`);
  m.delete(path);
  const slash = path.lastIndexOf("/");
  const parentName = slash === 0 ? "/" : path.slice(0, slash);
  const parent = m.get(parentName)!;
  m.set(parentName, {
    ...parent,
    children: parent.children.edited({ add: false, name: path.slice(slash + 1) }, OWNER),
  });
}

describe("NodeTable (the packed store)", () => {
  it("reuses the arena's blocks when a value is rewritten many times", () => {
    const m = fresh();
    put(m, "/a", "x");
    const before = m.table.arenaBytes;
    for (let i = 0; i < 20_000; i++) put(m, "/a", "v".repeat(i % 300), P0, i);
    const grown = m.table.arenaBytes - before;
    // Each size class holds at most one free block: 300 sizes round to 76 classes of ≤ 304 bytes.
    assert.ok(grown < 76 * 304, `arena grew by ${grown} bytes`);
    assert.equal(m.get("/a")!.value, "v".repeat(19_999 % 300));
    // Many nodes rewritten with churning sizes: the arena stops growing after the first round.
    for (let k = 0; k < 100; k++) put(m, `/b${k}`, "");
    for (let round = 0; round < 3; round++)
      for (let k = 0; k < 100; k++) put(m, `/b${k}`, "y".repeat((k + round * 7) % 40));
    const settled = m.table.arenaBytes;
    for (let round = 3; round < 50; round++)
      for (let k = 0; k < 100; k++) put(m, `/b${k}`, "y".repeat((k + round * 7) % 40));
    assert.ok(m.table.arenaBytes - settled <= 100 * 44, `arena grew by ${m.table.arenaBytes - settled}`);
  });

  it("deletes a large subtree and gives its slots and blocks back", () => {
    const m = fresh();
    put(m, "/keep", "k");
    const build = () => {
      for (let i = 0; i < 20; i++)
        for (let j = 0; j < 100; j++) put(m, `/big/d${i}/k${j}`, "0123456789abcdef");
    };
    build();
    assert.equal(m.size, 1 + 1 + 1 + 20 + 2000);
    const arena = m.table.arenaBytes;
    remove(m, "/big");
    assert.equal(m.size, 2);
    assert.equal(m.get("/big"), undefined);
    assert.equal(m.get("/big/d3/k7"), undefined);
    assert.deepEqual(m.get("/")!.children.toArray(), ["keep"]);
    assert.deepEqual([...m.keys()].sort(), ["/", "/keep"]);
    build();
    assert.equal(m.table.arenaBytes, arena, "the second tree fits in the first one's blocks");
    assert.equal(m.get("/big/d19/k99")!.value, "0123456789abcdef");
  });

  it("grows its hash and keeps every node findable through deletes (backward shift)", () => {
    const m = fresh();
    const N = 60_000;
    for (let i = 0; i < N; i++) put(m, `/h/n${i}`, String(i));
    for (let i = 0; i < N; i += 2) remove(m, `/h/n${i}`);
    for (let i = 0; i < N; i++) {
      const n = m.get(`/h/n${i}`);
      if (i % 2 === 0) assert.equal(n, undefined, `n${i} deleted`);
      else assert.equal(n?.value, String(i), `n${i} kept`);
    }
    const list = m.get("/h")!.children.toArray();
    assert.equal(list.length, N / 2);
    assert.equal(list[0], "n1");
    assert.equal(list.at(-1), `n${N - 1}`);
  });

  it("stores names with every byte 1..255 but '/', and values with every byte 0..255", () => {
    const m = fresh();
    const value = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    const names: string[] = [];
    for (let b = 1; b < 256; b++) {
      if (b === 0x2f) continue;
      const name = `${String.fromCharCode(b)}x${String.fromCharCode(b)}`;
      names.push(name);
      put(m, `/bytes/${name}`, value);
    }
    for (const name of names)
      assert.equal(m.get(`/bytes/${name}`)!.value, value, `name ${name.charCodeAt(0)}`);
    const dir = m.get("/bytes")!;
    assert.deepEqual(dir.children.toArray(), names);
    const wire = dir.children.wire();
    assert.equal(wire.length, names.length * 4);
    assert.deepEqual(Array.from(wire.subarray(0, 4)), [1, 0x78, 1, 0]);
    assert.deepEqual(
      [...m.keys()].filter((k) => k.startsWith("/bytes/")).sort(),
      names.map((n) => `/bytes/${n}`).sort(),
    );
  });

  it("forgets a looked-up path once its slot is freed and reused by another node", () => {
    const m = fresh();
    put(m, "/a/b", "1");
    assert.equal(m.get("/a/b")!.value, "1");
    remove(m, "/a/b");
    put(m, "/x/y", "2");
    assert.equal(m.get("/a/b"), undefined);
    assert.equal(m.has("/a/b"), false);
    assert.equal(m.get("/x/y")!.value, "2");
    assert.deepEqual([...m.keys()].sort(), ["/", "/a", "/x", "/x/y"]);
  });

  it("keeps 4096-byte values, and moves a node between block sizes", () => {
    const m = fresh();
    const big = Array.from({ length: 4096 }, (_, i) => String.fromCharCode((i * 7) % 256)).join("");
    put(m, "/v", big);
    assert.equal(m.get("/v")!.value, big);
    put(m, "/v", "short");
    assert.equal(m.get("/v")!.value, "short");
    put(m, "/v", big);
    assert.equal(m.get("/v")!.value, big);
    assert.equal(m.get("/v")!.value.length, 4096);
  });

  it("shares one permissions record among the nodes that have equal permissions", () => {
    const m = fresh();
    put(m, "/p1", "", [{ id: 3, perms: 1 }]);
    put(m, "/p2", "", [{ id: 3, perms: 1 }]);
    assert.equal(m.get("/p1")!.perms, m.get("/p2")!.perms);
    put(m, "/p2", "", [{ id: 4, perms: 1 }]);
    assert.deepEqual(m.get("/p2")!.perms, [{ id: 4, perms: 1 }]);
    assert.deepEqual(m.get("/p1")!.perms, [{ id: 3, perms: 1 }]);
  });

  it("a frozen view keeps the list it saw while the store changes it (copied once)", () => {
    const m = fresh();
    put(m, "/d/a", "");
    put(m, "/d/b", "");
    const seen: Node = m.get("/d")!;
    seen.children.freeze();
    put(m, "/d/c", "");
    remove(m, "/d/a");
    assert.deepEqual(seen.children.toArray(), ["a", "b"]);
    assert.equal(seen.children.owner, null);
    assert.deepEqual(m.get("/d")!.children.toArray(), ["b", "c"]);
    assert.ok(!seen.children.sameAs(m.get("/d")!.children));
    assert.ok(m.get("/d")!.children.sameAs(m.get("/d")!.children));
  });

  it("lists a 50,000-child directory with DIRECTORY_PART in C's order, one generation across the parts", () => {
    const s = new Scenario();
    const N = 50_000;
    for (let i = 0; i < N; i++) s.send("dom0", "WRITE", `/wide/c${i}|`);
    s.send("dom0", "RM", "/wide/c7|");
    s.send("dom0", "WRITE", "/wide/c7|again");
    const read = () => {
      const { names, gens } = s.directoryParts("dom0", "/wide");
      return { got: names, gens: new Set(gens) };
    };
    const first = read();
    const want = Array.from({ length: N }, (_, i) => `c${i}`).filter((n) => n !== "c7");
    want.push("c7");
    assert.deepEqual(first.got, want);
    assert.equal(first.gens.size, 1);
    s.send("dom0", "WRITE", "/wide/last|");
    const second = read();
    assert.equal(second.got.at(-1), "last");
    assert.notDeepEqual([...second.gens], [...first.gens], "a new child moves the generation");
    assert.deepEqual(s.core.check(), []);
  });
});
