/**
 * Xen's XenStore security advisories as attack tests: a hostile guest does what the advisory
 * describes through its own ring (test/xenstore/fixtures/attack-module.ts) under a real Host,
 * while another guest and dom0 keep asking and must keep getting correct answers, and the
 * daemon's memory, as its per-domain accounts count it, stays bounded. Each test names its
 * advisory; docs/xenstore-security.md says what C xenstored 4.17 does and what xenlab does.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { pino } from "pino";
import type { Host } from "../../src/host/host.ts";
import { formatPerm } from "../../src/xenstore/client.ts";
import { XsType } from "../../src/xenstore/wire.ts";
import { startHost, type TestHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

const ATTACK = new URL("./fixtures/attack-module.ts", import.meta.url).href;

interface LogRecord {
  level: number;
  msg: string;
  [k: string]: unknown;
}

interface Summary {
  counts: Record<string, number>;
  firstError: number;
}

const nul = (...parts: string[]) => new TextEncoder().encode(parts.map((p) => `${p}\0`).join(""));

describe("XenStore advisories, attacked through a guest's ring", () => {
  const logs: LogRecord[] = [];
  let fx: TestHost;
  let host: Host;
  /** A guest minding its own business throughout, and its checks. */
  let bystander: number;

  const logged = (msg: string) => logs.some((r) => r.msg === msg);
  const attack = (domid: number, cmd: string, arg?: unknown) => host.hv.call(domid, "attack", cmd, arg);
  const setQuota = (domid: number, name: string, value: number) =>
    host.xs.request(XsType.SET_QUOTA, 0, nul(String(domid), name, String(value)));

  /** A guest with the attack module loaded. */
  async function hostile(name: string): Promise<number> {
    const { domid } = await host.createDomain({ name });
    await host.hv.insmod(domid, ATTACK);
    return domid;
  }

  /** Dom0 and the bystander get correct answers now. */
  async function othersStillServed(): Promise<void> {
    const stamp = String(Math.random());
    await host.xs.write("/tool/alive", stamp);
    assert.equal(await host.xs.read("/tool/alive"), stamp);
    assert.equal(await attack(bystander, "write", { path: "data/alive", value: stamp }), "ok");
    assert.equal(await attack(bystander, "read", "data/alive"), `ok ${JSON.stringify(stamp)}`);
  }

  before(async () => {
    fx = await startHost({
      log: pino({ level: "debug" }, { write: (s: string) => void logs.push(JSON.parse(s) as LogRecord) }),
    });
    ({ host } = fx);
    bystander = await hostile("bystander");
  });
  after(() => fx?.stop());
  afterEach(() => accountsAgree());

  it("XSA-326 (CVE-2022-42311/42315): a guest that never reads its watch events costs only its own memory quota", async () => {
    const deaf = await hostile("deaf");
    const busy = await hostile("busy");
    await host.xs.write("/shared", "");
    await host.xs.setPerms("/shared", ["n0", `b${deaf}`, `b${busy}`]);
    assert.equal(await attack(deaf, "watch", { path: "/shared", token: "t" }), "ok");
    const baseline = host.core.memoryOf(deaf);
    const hard = baseline + 6000;
    await setQuota(deaf, "memory", hard);
    host.hv.pause(deaf);
    // Another guest and dom0 make ~18 KiB of distinct events for it; neither is held up.
    const w = (await attack(busy, "write-many", { prefix: "/shared/b", n: 200, size: 1 })) as Summary;
    assert.deepEqual(w.counts, { ok: 200 });
    for (let i = 0; i < 400; i++) await host.xs.write(`/shared/d${i}`, "1");
    await othersStillServed();
    assert.ok(host.core.memoryOf(deaf) < hard, `memory ${host.core.memoryOf(deaf)} stays under ${hard}`);
    assert.ok(logged(`domain ${deaf} reached quota memory (${hard})`));
    // It wakes up, reads what was kept, and is served again; its queue is gone.
    host.hv.unpause(deaf);
    assert.equal(await attack(deaf, "read", "name"), 'ok "deaf"');
    await until("the queue to drain", () => host.core.memoryOf(deaf) <= baseline);
    await host.xs.rm("/shared");
    await host.destroyDomain(deaf);
    await host.destroyDomain(busy);
    assert.deepEqual(host.core.check(), []);
  });

  it("XSA-326 (CVE-2022-42311): unread watch events time out (-w watch-event)", async () => {
    const deaf = await hostile("sleeper");
    await host.xs.write("/tool/watched", "");
    await host.xs.setPerms("/tool/watched", ["n0", `r${deaf}`]);
    assert.equal(await attack(deaf, "watch", { path: "/tool/watched", token: "t" }), "ok");
    const baseline = host.core.memoryOf(deaf);
    host.core.accounts.setLimit(deaf, "watchEventTimeoutMs", 200);
    host.hv.pause(deaf);
    for (let i = 0; i < 200; i++) await host.xs.write(`/tool/watched/n${i}`, "1");
    assert.ok(host.core.memoryOf(deaf) > baseline + 1000, "events are queued, charged to it");
    await until("the events to time out", () =>
      logs.some((r) => r.domid === deaf && /unread watch events timed out$/.test(r.msg)),
    );
    // The queue is gone but for the event already half into the ring (C keeps a started
    // packet too).
    await until("the memory to come back", () => host.core.memoryOf(deaf) - baseline < 64);
    host.hv.unpause(deaf);
    assert.equal(await attack(deaf, "read", "name"), 'ok "sleeper"');
    await host.destroyDomain(deaf);
    await host.xs.rm("/tool/watched");
  });

  it("XSA-326 (CVE-2022-42312): a request flood stops at the outstanding quota; others are served", async () => {
    const flooder = await hostile("flooder");
    // Replies of 900 bytes: the rsp ring holds one, so 20 unsent come quickly.
    assert.equal(await attack(flooder, "write", { path: "data/big", value: "x".repeat(900) }), "ok");
    assert.equal(await attack(flooder, "flood", { path: "data/big", n: 5000 }), 5000);
    // It stops reading its replies: the daemon stops reading its requests at 20 unsent.
    host.hv.pause(flooder);
    await until("the outstanding quota", () => logged(`domain ${flooder} reached quota outstanding (20)`));
    assert.ok(host.core.accounts.outstanding(flooder) <= 20);
    const stuck = host.core.memoryOf(flooder);
    await othersStillServed();
    assert.equal(host.core.memoryOf(flooder), stuck, "nothing more is read from it meanwhile");
    host.hv.unpause(flooder);
    const r = (await attack(flooder, "flood-wait")) as Summary;
    assert.deepEqual(r.counts, { ok: 5000 }, "every request of the flood is answered in the end");
    await host.destroyDomain(flooder);
  });

  it("XSA-326 (CVE-2022-42314/42315): huge transactions hit transaction-nodes and memory; all is freed", async () => {
    const g = await hostile("hoarder");
    const baseline = host.core.memoryOf(g);
    const hard = baseline + 20_000;
    await setQuota(g, "memory", hard);
    const big = (await attack(g, "huge-transaction", { prefix: "data/t", n: 60, size: 1000 })) as {
      writes: Summary;
      commit: string;
    };
    assert.equal(big.writes.counts["error ENOMEM"], 60 - big.writes.firstError);
    assert.ok(
      big.writes.firstError > 0 && big.writes.firstError < 20,
      `first error ${big.writes.firstError}`,
    );
    assert.equal(big.commit, "error ENOMEM", "the failed transaction cannot commit");
    assert.ok(logged(`domain ${g} reached quota memory (${hard})`));
    assert.equal(host.core.memoryOf(g), baseline, "the transaction's copies are freed");
    assert.equal(await host.xs.exists(`/local/domain/${g}/data/t0`), false);

    await setQuota(g, "transaction-nodes", 30);
    const wide = (await attack(g, "huge-transaction", { prefix: "data/u", n: 50, size: 1 })) as {
      writes: Summary;
      commit: string;
    };
    assert.equal(wide.writes.counts["error ENOSPC"], 50 - wide.writes.firstError);
    assert.equal(wide.commit, "error ENOMEM");
    assert.ok(logged(`domain ${g} reached quota transaction-nodes (30)`));
    assert.equal(host.core.memoryOf(g), baseline);

    const ids = (await attack(g, "open-transactions", { n: 12 })) as string[];
    assert.deepEqual(ids.slice(-1), ["error ENOSPC"]);
    assert.ok(logged(`domain ${g} reached quota transactions (10)`));
    await othersStillServed();
    // Its open transactions go with it.
    await host.destroyDomain(g);
    assert.equal(host.core.memoryOf(g), 0);
  });

  it("XSA-418 (CVE-2022-42321): deep and wide subtrees removed at once, by RM and by the domain's death", async () => {
    const g = await hostile("arborist");
    await setQuota(g, "nodes", 3000);
    const baseline = host.core.memoryOf(g);
    const watch = host.xs.watch(`/local/domain/${g}/data`);
    await watch.next();
    assert.equal(await attack(g, "deep", { root: "data/deep", depth: 1000 }), "ok");
    const wide = (await attack(g, "write-many", { prefix: "data/wide/w", n: 300, size: 1 })) as Summary;
    assert.deepEqual(wide.counts, { ok: 300 });
    assert.equal(host.core.entries.get(g)! > 1300, true);
    assert.equal(await attack(g, "rm", "data/deep"), "ok");
    assert.equal(await attack(g, "rm", "data/wide"), "ok");
    assert.equal(host.core.memoryOf(g), baseline);
    assert.deepEqual(host.core.check(), []);
    await othersStillServed();
    // Again, and this time the domain dies with it: xenstored removes every node it owns.
    assert.equal(await attack(g, "deep", { root: "data/deep", depth: 1000 }), "ok");
    await host.destroyDomain(g);
    await watch.return();
    assert.equal(await host.xs.exists(`/local/domain/${g}`), false);
    assert.equal(host.core.entries.get(g) ?? 0, 0);
    assert.deepEqual(host.core.check(), []);
  });

  it("XSA-322/XSA-419 (CVE-2022-42322): nodes, watches and access rights of a destroyed domain go with it", async () => {
    const a = await hostile("leaver");
    const shared = `/local/domain/${bystander}/data/shared`;
    await host.xs.write(shared, "");
    await host.xs.setPerms(shared, [`n${bystander}`, `b${a}`]);
    await host.xs.write("/tool/acl", "secret");
    await host.xs.setPerms("/tool/acl", ["n0", `r${a}`]);
    // It creates nodes in another domain's tree (owned by itself) and leaves watches behind.
    assert.equal(await attack(a, "write", { path: `${shared}/from-a`, value: "1" }), "ok");
    assert.deepEqual(
      (await host.xs.getPerms(`${shared}/from-a`)).map(formatPerm),
      [`n${a}`, `b${a}`],
      "a node is owned by the domain that made it",
    );
    assert.equal(await attack(a, "watch", { path: "/", token: "all" }), "ok");
    assert.equal(await attack(a, "read", "/tool/acl"), 'ok "secret"');
    await host.destroyDomain(a);
    // XSA-419: its nodes are gone, even outside its home; XSA-322: its rights are gone.
    assert.equal(await host.xs.exists(`${shared}/from-a`), false);
    assert.deepEqual((await host.xs.getPerms(shared)).map(formatPerm), [`n${bystander}`]);
    assert.deepEqual((await host.xs.getPerms("/tool/acl")).map(formatPerm), ["n0"]);
    assert.equal(host.core.memoryOf(a), 0);
    assert.equal(
      [...host.core.connections].some((c) => c.domid === a),
      false,
      "no connection (and so no watch) of it is left",
    );
    // The bystander still owns and uses its directory.
    assert.equal(await attack(bystander, "write", { path: `${shared}/mine`, value: "1" }), "ok");
    const newcomer = await hostile("newcomer");
    assert.equal(await attack(newcomer, "read", "/tool/acl"), "error EACCES");
    await host.destroyDomain(newcomer);
    await host.xs.rm(shared);
    await host.xs.rm("/tool/acl");
  });

  it("XSA-115/XSA-324: watches and permissions of special paths; events only for readable nodes", async () => {
    const spy = await hostile("spy");
    assert.equal(await attack(spy, "collect", { path: "/" }), "ok");
    assert.equal(await attack(spy, "collect", { path: "@releaseDomain" }), "ok");
    assert.equal(await attack(spy, "collect", { path: "@introduceDomain" }), "ok");
    const long = "t".repeat(4040);
    assert.equal(await attack(spy, "collect", { path: "data", token: long }), "ok");
    // What others do that it may not read, and domains coming and going.
    await host.xs.write("/tool/private", "1");
    const other = await host.createDomain({ name: "other" });
    await host.destroyDomain(other.domid);
    // An event too long for the wire (path + token > 4096) is dropped, not sent broken.
    assert.equal(await attack(spy, "write", { path: `data/${"p".repeat(60)}`, value: "1" }), "ok");
    assert.equal(await attack(spy, "write", { path: "data/ping", value: "1" }), "ok");
    // Events arrive in order: once its own ping is in, everything before it would be too.
    let seen: string[] = [];
    await until(
      "the spy's own ping event",
      async () => {
        seen = (await attack(spy, "seen")) as string[];
        return seen.includes(`/local/domain/${spy}/data/ping`);
      },
      { ms: 2_000, detail: () => JSON.stringify(seen) },
    );
    assert.ok(seen.includes(`/local/domain/${spy}/data/ping`), JSON.stringify(seen));
    // Initial events only: nothing of dom0's node, nothing of the other domain's life.
    assert.equal(seen.filter((p) => p === "@releaseDomain").length, 1);
    assert.equal(seen.filter((p) => p === "@introduceDomain").length, 1);
    assert.equal(
      seen.some((p) => p.startsWith("/tool") || p.startsWith(`/local/domain/${other.domid}`)),
      false,
    );
    // The special paths are not nodes, and their permissions are dom0's to set.
    assert.equal(await attack(spy, "read", "@releaseDomain"), "error EINVAL");
    assert.equal(await attack(spy, "perms", "@releaseDomain"), "error EINVAL");
    assert.equal(
      await attack(spy, "raw", { type: "SET_PERMS", args: ["@releaseDomain", `n${spy}`] }),
      "error EACCES",
    );
    assert.equal(await attack(spy, "read", "name"), 'ok "spy"');
    await host.destroyDomain(spy);
    await host.xs.rm("/tool/private");
  });

  it("the write rate limit (C wrl): a guest writing while transactions are open is slowed and logged", async () => {
    const writer = await hostile("writer");
    const t = await host.xs.transactionStart();
    try {
      const r = (await attack(writer, "write-many", { prefix: "data/w", n: 40, size: 1 })) as Summary;
      assert.deepEqual(r.counts, { ok: 40 }, "slowed, not refused");
      assert.ok(logged(`write rate limit: domain ${writer} is affected`));
      await othersStillServed();
    } finally {
      await t.abort();
    }
    await host.destroyDomain(writer);
  });

  it("per-domain quotas are kept apart from the global ones (SET_QUOTA, GET_QUOTA, CONTROL quota)", async () => {
    const g = await hostile("capped");
    await setQuota(g, "nodes", 25);
    const get = async (...args: string[]) =>
      new TextDecoder().decode(await host.xs.request(XsType.GET_QUOTA, 0, nul(...args))).replace(/\0$/, "");
    assert.equal(await get(String(g), "nodes"), "25");
    assert.equal(await get("nodes"), "1000");
    assert.equal(await get(String(bystander), "nodes"), "1000");
    assert.match(await host.xs.control("quota", String(g)), /\nquota nodes +: +25\n/);
    const r = (await attack(g, "write-many", { prefix: "data/n", n: 30, size: 1 })) as Summary;
    assert.equal(r.counts["error ENOSPC"], 30 - r.firstError);
    assert.ok(logged(`domain ${g} reached quota nodes (25)`));
    assert.equal(await attack(bystander, "write", { path: "data/n0", value: "1" }), "ok");
    await host.destroyDomain(g);
  });

  it("the per-domain accounts agree with a full count of the store", () => {
    accountsAgree();
  });

  function accountsAgree(): void {
    const count = new Map<number, number>();
    for (const n of host.core.store.nodes.values()) {
      const size = 24 + 8 * n.perms.length + n.value.length;
      const kids = n.children.toArray().reduce((s, c) => s + c.length + 1, 0);
      count.set(n.perms[0]!.id, (count.get(n.perms[0]!.id) ?? 0) + size + kids + n.name.length);
    }
    for (const c of host.core.connections) {
      for (const w of c.watches)
        count.set(c.domid, (count.get(c.domid) ?? 0) + w.node.length + w.token.length);
    }
    for (const domid of host.core.domains.keys()) {
      if (domid === 0) continue;
      assert.equal(host.core.memoryOf(domid), count.get(domid) ?? 0, `domain ${domid}`);
    }
  }
});
