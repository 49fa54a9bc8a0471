/**
 * The accounting behind the advisory defences, without a ring: the worked example of
 * src/xenstore/quota.ts (hard and soft memory quota), memory charged and freed by guest
 * writes, transactions and watches in the core, and C's write rate limit on a fake clock.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Accounts, DEFAULT_QUOTAS, WriteRateLimit } from "../../src/xenstore/quota.ts";
import { Scenario } from "./scenario.ts";

function recorder(): { lines: string[]; log: { info: Fn; warn: Fn; error: Fn; debug: Fn } } {
  const lines: string[] = [];
  const put = (_o: object, m: string) => void lines.push(m);
  return { lines, log: { info: put, warn: put, error: put, debug() {} } };
}
type Fn = (o: object, m: string) => void;

describe("Accounts: the hard and soft memory quota (quota.ts worked example)", () => {
  it("refuses at the hard quota, warns at the soft one, and wakes the ring below it", async () => {
    const { lines, log } = recorder();
    let now = 0;
    const acc = new Accounts({
      quotas: { ...DEFAULT_QUOTAS, memory: 1000, memorySoft: 800 },
      log,
      now: () => now,
    });
    let woken = 0;
    acc.onRelief(5, () => woken++);
    assert.equal(acc.memoryAdd(5, 700, false), true);
    assert.equal(acc.memoryAdd(5, 150, true), true);
    assert.deepEqual(lines, ["domain 5 reached soft quota memory (800)"]);
    assert.equal(acc.memoryAdd(5, 200, true), false, "1050 would reach the hard quota");
    assert.equal(acc.memory(5), 850, "nothing was added");
    assert.equal(lines.at(-1), "domain 5 reached quota memory (1000)");
    assert.equal(acc.memoryAdd(5, 100, true), true);
    assert.equal(acc.mayRead(5), true, "950 < 1000: the ring keeps being read");
    // Dom0 gives it a node: never refused, but the ring stalls.
    acc.memoryAdd(5, 100, false);
    assert.equal(acc.memory(5), 1050);
    assert.equal(acc.mayRead(5), false);
    now += 10_000;
    acc.memoryAdd(5, -100, false);
    await new Promise((r) => queueMicrotask(() => r(undefined)));
    assert.equal(woken, 1);
    assert.equal(acc.mayRead(5), true);
    assert.equal(lines.at(-1), "domain 5 below quota memory (1000) again");
    assert.equal(lines.filter((l) => l.includes("reached quota memory")).length, 1, "one line per crossing");
  });

  it("never limits dom0, and a domain's own quota overrides the global one", () => {
    const { log } = recorder();
    const quotas = { ...DEFAULT_QUOTAS, memory: 100 };
    const acc = new Accounts({ quotas, log });
    assert.equal(acc.memoryAdd(0, 10_000, true), true);
    acc.setLimit(7, "memory", 50_000);
    assert.equal(acc.memoryAdd(7, 10_000, true), true);
    assert.equal(acc.memoryAdd(8, 10_000, true), false);
    quotas.memory = 20_000; // CONTROL quota set: domains without their own value follow it
    assert.equal(acc.memoryAdd(8, 10_000, true), true);
    acc.forget(7);
    assert.equal(acc.limit(7, "memory"), 20_000);
  });
});

describe("the core charges memory to the right domain", () => {
  it("a guest's writes, transactions and watches; freed when they go", () => {
    const s = new Scenario();
    s.conn("dom5");
    const base = s.core.memoryOf(5);
    s.send("dom0", "WRITE", "/local/domain/5|");
    s.send("dom0", "SET_PERMS", "/local/domain/5|n5|");
    const home = s.core.memoryOf(5);
    assert.ok(home > base, "the node dom0 gave it is charged to it");
    s.send("dom5", "WRITE", "data|12345");
    // record 24 + 8 (one perm) + 5 value, path "/local/domain/5/data" (20); the parent grows by "data\0"
    assert.equal(s.core.memoryOf(5), home + 24 + 8 + 5 + 20 + 5);
    s.send("dom5", "WATCH", "data|tok|");
    assert.equal(s.core.memoryOf(5), home + 62 + "/local/domain/5/data".length + 3);
    s.send("dom5", "UNWATCH", "data|tok|");
    const tx = s.send("dom5", "TRANSACTION_START", "|").reply.replace("|", "");
    s.send("dom5", "WRITE", "data/t|x", tx);
    assert.ok(s.core.memoryOf(5) > home + 62, "the transaction's copies are charged");
    s.send("dom5", "TRANSACTION_END", "F|", tx);
    assert.equal(s.core.memoryOf(5), home + 62);
    s.send("dom5", "RM", "data|");
    assert.equal(s.core.memoryOf(5), home);
  });

  it("a guest write that would reach the hard quota is ENOMEM and changes nothing", () => {
    const { lines, log } = recorder();
    const s = new Scenario({ log });
    s.conn("dom5");
    s.send("dom0", "WRITE", "/local/domain/5|");
    s.send("dom0", "SET_PERMS", "/local/domain/5|n5|");
    s.core.accounts.setLimit(5, "memory", s.core.memoryOf(5) + 500);
    s.run([
      { who: "dom5", op: "WRITE", arg: `a|${"x".repeat(300)}`, expect: "OK|" },
      { who: "dom5", op: "WRITE", arg: `b|${"x".repeat(300)}`, expect: "!ENOMEM" },
      { who: "dom5", op: "READ", arg: "b|", expect: "!ENOENT" },
      { who: "dom5", op: "WRITE", arg: "a|", expect: "OK|", note: "shrinking is always allowed" },
      { who: "dom5", op: "WATCH", arg: `${"w".repeat(200)}|${"t".repeat(300)}|`, expect: "!ENOMEM" },
      {
        who: "dom0",
        op: "WRITE",
        arg: `/local/domain/5/big|${"x".repeat(900)}`,
        expect: "!ENOMEM",
        note: "a node dom0 writes in its tree is its own, and charged to it (C do_tdb_write)",
      },
      { who: "dom5", op: "RM", arg: "a|", expect: "OK|", note: "removal over the quota" },
    ]);
    assert.ok(lines.includes(`domain 5 reached quota memory (${s.core.accounts.limit(5, "memory")})`));
  });
});

describe("WriteRateLimit (C wrl_*)", () => {
  it("lets a burst through, then slows a domain to its share of the rate, and logs it once", () => {
    const { lines, log } = recorder();
    let now = 0;
    const wrl = new WriteRateLimit(log, () => now);
    wrl.addDomain(0);
    wrl.addDomain(5);
    for (let i = 0; i < 10; i++) wrl.debit(5);
    assert.equal(wrl.wakeIn(5), 0, "a burst of 10 writes is free");
    wrl.debit(5);
    const wait = wrl.wakeIn(5);
    // 200 writes/s shared by 2 domains: one write of debt takes 10 ms to earn back.
    assert.equal(wait, 10);
    assert.deepEqual(lines, ["write rate limit: domain 5 is affected"]);
    now += wait;
    assert.equal(wrl.wakeIn(5), 0);
    wrl.debit(0);
    assert.equal(wrl.wakeIn(0), 0, "dom0 is exempt");
  });
});
