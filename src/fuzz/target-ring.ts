/**
 * Fuzz target (c): guests' XenStore rings, in process. A core with domain hooks attaches a
 * `RingServer` to each introduced domain's page (a SharedArrayBuffer), as the host does;
 * the fuzzer plays the guest side raw, writing bytes into `req` and kicking the server by
 * calling `onKick()` itself (synchronous, so a run replays from its seed). Fuzz rings: dom0's
 * own ring (privileged) and dom1 (unprivileged); dom2 runs the well-behaved script through
 * its ring every 100 batches.
 *
 * Checks, besides the reply oracle shared with the other targets:
 * - a header announcing more than 4096 bytes makes the server set `error` = 3 and ignore the
 *   ring (C `ignore_connection`), after answering requests before it (as far as rsp held them),
 *   and the connection's watches and transactions are gone;
 * - a corrupted index (one of the four counters set to a random value or moved by more than
 *   the ring size) that makes `prod − cons` exceed 1024 on `req` sets `error` = 2 at the next
 *   kick; any other corruption may give garbage but never an exception or a hang;
 * - after a corruption the guest asks for a reconnection (`connection` = 1), and the server
 *   must zero the four indexes and set `connection` = 0, unless it ignores the ring; an ignored
 *   domain is released and introduced again with a fresh page;
 * - a guest the core stops reading at its hard memory quota (as C does) is not a hang: it is
 *   counted, released and introduced again. The write rate limit runs on the fuzzer's clock,
 *   far ahead of any batch (see CLOCK_STEP_MS), so it never holds a ring back.
 */
import { newPage } from "../hv/page.ts";
import { XenstoreInterface, XS_CONNECTION, XS_RING_ERROR } from "../ring/byte-ring.ts";
import { pageBytes } from "../xen/xen.ts";
import { XenStoreCore } from "../xenstore/core.ts";
import type { Connection } from "../xenstore/daemon.ts";
import { DEFAULT_QUOTAS, WriteRateLimit } from "../xenstore/quota.ts";
import { RingServer } from "../xenstore/transport-ring.ts";
import { encodePacket, fromLatin1, latin1, PacketReader, type XsPacket, XsType } from "../xenstore/wire.ts";
import { checkInbox, FuzzFailure, FuzzStats } from "./check.ts";
import { StreamModel } from "./frame.ts";
import { completeStream, sentinel } from "./gen.ts";
import { type Exchange, goodClient } from "./good.ts";
import { FuzzRun, ProblemLog, type TargetOptions } from "./target.ts";

const GOOD_EVERY = 100;
/** Rounds without progress before the fuzzer calls it a hang. */
const IDLE_ROUNDS = 8;
/** How far the fuzzer's clock moves per batch (ms): enough credit for any batch's writes. */
const CLOCK_STEP_MS = 1e8;

/** The guest's end of one ring, raw: bytes in, packets out. */
class GuestRing {
  readonly domid: number;
  page: Uint8Array;
  intf: XenstoreInterface;
  server: RingServer;
  reader = new PacketReader(Number.MAX_SAFE_INTEGER);
  model = new StreamModel();
  readonly inbox: XsPacket[] = [];
  readonly #buf = new Uint8Array(1024);
  /** Resets seen (INTRODUCE of a known domain resets its ring). */
  resets = 0;
  seenResets = 0;

  constructor(domid: number, page: Uint8Array, server: RingServer) {
    this.domid = domid;
    this.page = page;
    this.intf = new XenstoreInterface(page);
    this.server = server;
  }

  /** The guest's view starts again: nothing half-sent, nothing half-read. */
  forget(): void {
    this.reader = new PacketReader(Number.MAX_SAFE_INTEGER);
    this.model = new StreamModel();
    this.inbox.length = 0;
  }

  /** Takes what rsp holds; false if its indexes are corrupt. Returns bytes moved. */
  drain(): number {
    let moved = 0;
    for (;;) {
      const r = this.intf.rsp.read(this.#buf);
      if (!r.ok || r.bytes === 0) return moved;
      moved += r.bytes;
      this.inbox.push(...this.reader.push(this.#buf.subarray(0, r.bytes)));
    }
  }

  /** The ring as the server left it, for a hang report. */
  state(core: XenStoreCore): string {
    const { req, rsp } = this.intf;
    const s = this.server;
    return (
      `req ${req.cons}..${req.prod}, rsp ${rsp.cons}..${rsp.prod}, connection ${this.intf.connection}, ` +
      `error ${this.intf.error}, outstanding ${s.outstanding}, queued ${s.queued}, ignored ${s.ignored}, ` +
      `closed ${s.conn.closed}, may read ${core.accounts.mayRead(this.domid)}, ` +
      `rate wait ${core.writeRate.wakeIn(this.domid)} ms`
    );
  }

  repliesIn(): number {
    let n = 0;
    for (const p of this.inbox) if (p.type !== XsType.WATCH_EVENT) n++;
    return n;
  }

  /**
   * Writes `bytes` through req as space allows, kicking and draining, until `want` replies are
   * in or the server ignores the ring. A guest the core stops reading at its hard memory quota
   * gives "quota"; one stopped by the write rate limit is waited for (the server's own timer
   * reads it again). "hang" if nothing moves for IDLE_ROUNDS rounds otherwise.
   */
  async pump(
    bytes: Uint8Array,
    want: number,
    core: XenStoreCore,
    advance: (ms: number) => void,
  ): Promise<"ok" | "ignored" | "hang" | "quota"> {
    let at = 0;
    let idle = 0;
    const deadline = performance.now() + 20_000;
    while (at < bytes.byteLength || this.repliesIn() < want) {
      let moved = 0;
      if (at < bytes.byteLength) {
        const w = this.intf.req.write(bytes.subarray(at));
        if (w.ok) {
          at += w.bytes;
          moved += w.bytes;
        }
      }
      const before = this.intf.req.cons;
      this.server.onKick();
      if (this.server.ignored) {
        this.drain();
        return "ignored";
      }
      moved += this.drain() + (this.intf.req.cons !== before ? 1 : 0);
      if (moved > 0) {
        idle = 0;
        continue;
      }
      if (this.domid !== 0 && !core.accounts.mayRead(this.domid)) return "quota";
      const wait = this.domid === 0 ? 0 : core.writeRate.wakeIn(this.domid);
      if (wait > 0 && performance.now() < deadline) {
        // The credit comes back on the fuzzer's clock; the server's timer runs on the real one.
        advance(wait);
        await new Promise((r) => setTimeout(r, Math.min(wait + 1, 100)));
        continue;
      }
      if (++idle > IDLE_ROUNDS) return "hang";
    }
    return "ok";
  }
}

export async function fuzzRing(o: TargetOptions): Promise<void> {
  const run = new FuzzRun("ring", o, 0x72696e67);
  const { rng, stats, fail } = run;
  // Ring errors are expected (the fuzzer causes them); CONTROL check findings are not.
  const checkFindings = (msg: string) => msg.startsWith("check:");

  let log = new ProblemLog(checkFindings);
  let core!: XenStoreCore;
  /** Every introduced domain's ring, by domid (the fuzz may introduce more). */
  let rings = new Map<number, GuestRing>();
  let dom0!: GuestRing;
  let clock = 0;
  const advance = (ms: number) => {
    clock += ms;
  };

  const attach = (domid: number): Connection => {
    const page = pageBytes(newPage()); // a guest's kind of page, as the hypervisor populates it
    const conn = core.connectDomain(domid);
    const server = new RingServer({ core, conn, page, notify: () => {} });
    const old = rings.get(domid);
    if (old === undefined) rings.set(domid, new GuestRing(domid, page, server));
    else {
      old.page = page;
      old.intf = new XenstoreInterface(page);
      old.server = server;
      old.forget();
    }
    return conn;
  };

  const admin = (type: number, payload: string): string => {
    const c = core.connectSocket();
    const r = core.step(c, { type, reqId: 0, txId: 0, payload: latin1(payload) }).reply;
    core.disconnect(c);
    const body = fromLatin1(r.payload);
    return r.type === XsType.ERROR ? `ERROR ${body}` : body;
  };

  /** (Re)introduces a guest with a fresh page, as the toolstack builds one. */
  const guest = (domid: number): GuestRing => {
    Object.assign(core.quotas, DEFAULT_QUOTAS);
    if (core.domains.has(domid)) admin(XsType.RELEASE, `${domid}\0`);
    for (const [type, payload] of [
      [XsType.MKDIR, `/local/domain/${domid}\0`],
      [XsType.SET_PERMS, `/local/domain/${domid}\0n${domid}\0r0\0`],
      [XsType.INTRODUCE, `${domid}\0${1000 + domid}\0${domid + 1}\0`],
    ] as const) {
      const r = admin(type, payload);
      if (r.startsWith("ERROR")) fail(`set-up of dom${domid}: ${r}`);
    }
    return rings.get(domid)!;
  };

  const newSession = () => {
    log = new ProblemLog(checkFindings);
    rings = new Map();
    core = new XenStoreCore({
      log,
      hooks: {
        introduce: (domid) => attach(domid),
        reintroduce: (domid) => {
          const g = rings.get(domid);
          if (g === undefined) return;
          g.server.introduced();
          g.resets++;
        },
        release: (domid) => rings.get(domid)?.server.detach(),
      },
    });
    // The write rate limit on the fuzzer's clock, which leaps CLOCK_STEP_MS per batch: the
    // credit stays far ahead, so the limit (a matter of time, tested elsewhere) never holds a
    // ring back, and the run neither crawls at 200 writes/s nor depends on the real clock.
    Object.defineProperty(core, "writeRate", { value: new WriteRateLimit(log, () => clock) });
    core.writeRate.addDomain(0);
    // Dom0's kernel ring: privileged, known from the start (C dom0_init).
    const page = pageBytes(newPage()); // a guest's kind of page, as the hypervisor populates it
    const conn = core.connectDomain(0);
    core.attachDom0(conn, "0", 1);
    dom0 = new GuestRing(0, page, new RingServer({ core, conn, page, notify: () => {} }));
    guest(1);
    guest(2);
  };

  /** A usable ring for `domid`: introduced, attached, not ignored, not reset behind our back. */
  const ready = (domid: number): GuestRing => {
    if (domid === 0) {
      if (dom0.server.ignored || dom0.server.conn.closed) {
        // Dom0's ring cannot be released; the fuzzer starts a new session instead.
        newSession();
      }
      return dom0;
    }
    let g = rings.get(domid);
    if (g === undefined || g.server.ignored || g.server.conn.closed || !core.domains.has(domid))
      g = guest(domid);
    if (g.resets !== g.seenResets) {
      g.seenResets = g.resets;
      g.forget();
    }
    return g;
  };

  const checkReplies = (g: GuestRing, requests: readonly XsPacket[], exact: boolean) => {
    const answered = checkInbox(g.inbox, requests, stats, (msg) => fail(`dom${g.domid}: ${msg}`));
    if (exact && answered !== requests.length)
      fail(`dom${g.domid}: ${answered} replies to ${requests.length} requests`);
    g.inbox.length = 0;
  };

  const sendBatch = async (g: GuestRing, bytes: Uint8Array) => {
    const { bytes: all, requests, closes: tooLarge } = completeStream(g.model, bytes);
    const r = await g.pump(all, tooLarge ? Number.MAX_SAFE_INTEGER : requests.length, core, advance);
    if (r === "hang")
      fail(`dom${g.domid}: hang with ${g.repliesIn()} of ${requests.length} replies; ${g.state(core)}`);
    if (r === "quota") {
      // C stops reading a guest at its hard memory quota; the toolstack would destroy it.
      checkReplies(g, requests, false);
      FuzzStats.bump(stats.ringErrors, "guest at its memory quota, not read");
      guest(g.domid);
      return;
    }
    if (tooLarge) {
      if (r !== "ignored") fail(`dom${g.domid}: a header announcing over 4096 bytes did not stop the ring`);
      if (g.intf.error !== XS_RING_ERROR.payloadTooLong)
        fail(`dom${g.domid}: error ${g.intf.error} after an over-long header, expected 3`);
      const c = g.server.conn;
      if (c.watches.length > 0 || c.transactions.size > 0)
        fail(
          `dom${g.domid}: an ignored connection keeps ${c.watches.length} watches, ${c.transactions.size} transactions`,
        );
      checkReplies(g, requests, false);
      stats.drops++;
      FuzzStats.bump(stats.ringErrors, "error 3 (payload too long)");
      return;
    }
    if (r === "ignored")
      fail(`dom${g.domid}: the server ignored the ring (error ${g.intf.error}) for no reason`);
    checkReplies(g, requests, true);
  };

  /** Scribbles on one of the four indexes, kicks, and checks what the server did. */
  const corrupt = (g: GuestRing) => {
    const { req, rsp } = g.intf;
    const which = rng.pick(["req.prod", "req.cons", "rsp.prod", "rsp.cons"] as const);
    const ring = which.startsWith("req") ? req : rsp;
    const field = which.endsWith("prod") ? "prod" : "cons";
    const old = ring[field];
    const r = rng.int(4);
    const v =
      r === 0
        ? rng.u32()
        : r === 1
          ? old + rng.range(1025, 1 << 20)
          : r === 2
            ? old - rng.range(1025, 1 << 20)
            : old + rng.range(-8, 8);
    ring[field] = v >>> 0;
    const reqBad = (req.prod - req.cons) >>> 0 > 1024;
    g.server.onKick();
    g.drain();
    g.inbox.length = 0;
    if (g.server.ignored) {
      if (g.intf.error !== XS_RING_ERROR.badIndex && g.intf.error !== XS_RING_ERROR.payloadTooLong)
        fail(`dom${g.domid}: ignored with error ${g.intf.error} after ${which} = ${v >>> 0}`);
      FuzzStats.bump(stats.ringErrors, `error ${g.intf.error} after ${which} corrupted`);
      stats.drops++;
      return;
    }
    if (reqBad && (g.domid === 0 || g.server.outstanding < core.quotas.outstanding))
      fail(`dom${g.domid}: ${which} = ${v >>> 0} makes req prod - cons > 1024, but the server kept reading`);
    if ((rsp.prod - rsp.cons) >>> 0 > 1024 && req.write(sentinel(0xfffffff1)).ok) {
      // The server finds a bad rsp when it next writes: make it answer something.
      g.server.onKick();
      if (!g.server.ignored || g.intf.error !== XS_RING_ERROR.badIndex)
        fail(
          `dom${g.domid}: ${which} = ${v >>> 0} makes rsp prod - cons > 1024, but the server wrote a reply`,
        );
      FuzzStats.bump(stats.ringErrors, `error 2 after ${which} corrupted, at the next reply`);
      stats.drops++;
      return;
    }
    FuzzStats.bump(stats.ringErrors, `${which} corrupted, ring still served`);
    // The guest recovers as Linux would after a resume: it asks for a reconnection.
    g.intf.connection = XS_CONNECTION.reconnecting;
    g.server.onKick();
    if (g.server.ignored) {
      FuzzStats.bump(stats.ringErrors, `error ${g.intf.error} after ${which} corrupted`);
      stats.drops++;
      return;
    }
    if (g.intf.connection !== XS_CONNECTION.connected) fail(`dom${g.domid}: reconnection not answered`);
    if (req.prod !== 0 || req.cons !== 0 || rsp.prod !== 0 || rsp.cons !== 0)
      fail(`dom${g.domid}: indexes not zeroed by the reconnection`);
    FuzzStats.bump(stats.ringErrors, "reconnected");
    g.forget();
  };

  const wellBehaved = async () => {
    Object.assign(core.quotas, DEFAULT_QUOTAS);
    const g = ready(2);
    const exchange: Exchange = async (p) => {
      const r = await g.pump(encodePacket(p), g.repliesIn() + 1, core, advance);
      if (r !== "ok") fail(`well-behaved guest: ${r} (error ${g.intf.error})`);
      const at = g.inbox.findIndex((q) => q.type !== XsType.WATCH_EVENT);
      return g.inbox.splice(0, at + 1);
    };
    try {
      await goodClient(exchange, `/local/domain/2/good-${run.batchNo}`, "n2\0r0\0");
    } catch (e) {
      if (e instanceof FuzzFailure) throw e;
      fail((e as Error).message);
    }
    stats.goodChecks++;
    stats.treeChecks++;
    const problems = core.check();
    if (problems.length > 0) fail(`check: ${problems.slice(0, 5).join("; ")}`);
    if (log.errors.length > 0) fail(`the core logged: ${log.errors[0]}`);
  };

  newSession();
  if (o.replay !== undefined) {
    run.current = o.replay;
    await sendBatch(ready(1), o.replay);
    await wellBehaved();
    run.finish();
    return;
  }
  while (stats.packets < o.count) {
    const batchNo = ++run.batchNo;
    if (run.sessionDue()) {
      await wellBehaved();
      newSession();
    }
    const g = ready(rng.chance(0.5) ? 0 : 1);
    if (rng.chance(0.04)) {
      run.current = new Uint8Array(0);
      corrupt(g);
      continue;
    }
    const other = g.domid === 0 ? rings.get(1) : dom0;
    const ownTx = [...g.server.conn.transactions.keys()];
    const otherTx = other === undefined ? [] : [...other.server.conn.transactions.keys()];
    await sendBatch(g, run.batch(ownTx, otherTx, core.quotas.pathMax, 8));
    clock += CLOCK_STEP_MS;
    if (batchNo % GOOD_EVERY === 0) await wellBehaved();
    // Let flushes queued by events for other rings run.
    if (batchNo % 16 === 0) await new Promise<void>((r) => setImmediate(r));
  }
  await wellBehaved();
  run.finish();
}
