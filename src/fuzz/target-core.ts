/**
 * Fuzz target (a), in process: bytes → `PacketReader` (fed in random chunks, and checked
 * against the fuzzer's own framing model) → `XenStoreCore.step()`, on two dom0 connections and
 * two guests (dom1, dom5, unprivileged). Checks after every request: no exception escapes the
 * step (the core has no "close the connection" exception: only a header the framer refuses,
 * `PacketReader.error`, ends a connection), the reply is well formed and answers that request,
 * a request answered with an error changed no node, every event is well formed and goes to an
 * open connection. Every 512 batches, CONTROL `check`
 * must find the tree and the node counters consistent; every 256, a fresh client runs the
 * well-behaved script. A new core every 5 000 packets keeps the store small.
 */
import { XenStoreCore } from "../xenstore/core.ts";
import type { Connection } from "../xenstore/daemon.ts";
import { DEFAULT_QUOTAS } from "../xenstore/quota.ts";
import type { NodeChange } from "../xenstore/store.ts";
import { encodePacket, fromLatin1, latin1, PacketReader, type XsPacket, XsType } from "../xenstore/wire.ts";
import { eventProblem, FuzzFailure, replyProblem } from "./check.ts";
import { StreamModel } from "./frame.ts";
import { chunks } from "./gen.ts";
import { type Exchange, goodClient } from "./good.ts";
import { hex } from "./mutate.ts";
import { FuzzRun, ProblemLog, type TargetOptions } from "./target.ts";

interface Client {
  conn: Connection;
  reader: PacketReader;
  model: StreamModel;
  /** 0 for a dom0 socket connection, else the guest's domid. */
  readonly domid: number;
}

const GUESTS = [1, 5] as const;

export async function fuzzCore(o: TargetOptions): Promise<void> {
  const run = new FuzzRun("core", o, 0x636f7265);
  const { rng, stats, fail } = run;

  let log = new ProblemLog();
  let core = new XenStoreCore({ log });
  let clients: Client[] = [];

  /** A request from the fuzzer's own set-up; must succeed. */
  const setupCall = (conn: Connection, type: number, payload: string): void => {
    const r = core.step(conn, { type, reqId: 0, txId: 0, payload: latin1(payload) }).reply;
    if (r.type === XsType.ERROR)
      fail(`set-up ${type} ${JSON.stringify(payload)} failed: ${Buffer.from(r.payload)}`);
  };

  const guest = (domid: number): Client => {
    Object.assign(core.quotas, DEFAULT_QUOTAS);
    const admin = core.connectSocket();
    setupCall(admin, XsType.MKDIR, `/local/domain/${domid}\0`);
    setupCall(admin, XsType.SET_PERMS, `/local/domain/${domid}\0n${domid}\0r0\0`);
    setupCall(admin, XsType.INTRODUCE, `${domid}\0${1000 + domid}\0${domid + 1}\0`);
    core.disconnect(admin);
    const conn = core.domains.get(domid)?.conn;
    if (conn == null || conn.closed) return fail(`set-up: dom${domid} has no connection after INTRODUCE`);
    return { conn, reader: new PacketReader(), model: new StreamModel(), domid };
  };
  const socket = (): Client => ({
    conn: core.connectSocket(),
    reader: new PacketReader(),
    model: new StreamModel(),
    domid: 0,
  });
  const newSession = () => {
    log = new ProblemLog();
    core = new XenStoreCore({ log });
    clients = [socket(), socket(), ...GUESTS.map(guest)];
  };

  const treeCheck = () => {
    stats.treeChecks++;
    const problems = core.check();
    if (problems.length > 0) fail(`check: ${problems.slice(0, 5).join("; ")}`);
    for (const [domid, n] of core.entries) if (n < 0) fail(`domain ${domid} counts ${n} nodes`);
    if (log.errors.length > 0) fail(`the core logged an error: ${log.errors[0]}`);
  };

  const wellBehaved = async () => {
    Object.assign(core.quotas, DEFAULT_QUOTAS);
    const c = core.connectSocket();
    const inbox: XsPacket[] = [];
    c.sink = { send: (_c, p) => inbox.push(p) };
    const exchange: Exchange = async (p) => {
      const r = core.step(c, p);
      for (const d of r.out) if (d.conn === c) inbox.push(d.packet);
      const at = inbox.indexOf(r.reply);
      return inbox.splice(0, at + 1);
    };
    try {
      await goodClient(exchange, `/fuzz-good-${run.batchNo}`, "n0\0");
      // CONTROL check over the wire too: it answers OK and logs nothing.
      const r = core.step(c, { type: XsType.CONTROL, reqId: 1, txId: 0, payload: latin1("check\0") }).reply;
      if (fromLatin1(r.payload) !== "OK\0") fail("CONTROL check did not answer OK");
    } catch (e) {
      if (e instanceof FuzzFailure) throw e;
      fail((e as Error).message);
    } finally {
      core.disconnect(c);
    }
    stats.goodChecks++;
    treeCheck();
  };

  /** Frames `bytes` as the transports do and steps every packet. */
  const feed = (cl: Client, bytes: Uint8Array): void => {
    const expected = cl.model.push(bytes);
    const got: XsPacket[] = [];
    let tooLarge: number | null = null;
    for (const ch of chunks(bytes, rng)) {
      try {
        got.push(...cl.reader.push(ch));
      } catch (e) {
        fail(`PacketReader threw ${(e as Error).stack}`);
      }
      const error = cl.reader.error;
      if (error !== null) {
        tooLarge = error.length;
        break;
      }
    }
    if (got.length !== expected.packets.length || tooLarge !== expected.tooLarge) {
      fail(
        `PacketReader framed ${got.length} packets (too large: ${tooLarge}), ` +
          `the model ${expected.packets.length} (too large: ${expected.tooLarge})`,
      );
    }
    for (let i = 0; i < got.length; i++) {
      const a = encodePacket(got[i]!);
      const b = encodePacket(expected.packets[i]!);
      if (Buffer.compare(a, b) !== 0) fail(`PacketReader and the model disagree on packet ${i}`);
    }
    for (const p of got) {
      if (cl.conn.closed) break;
      let r: ReturnType<XenStoreCore["step"]>;
      const changes = new Map<string, NodeChange>();
      core.store.nodes.changes = changes;
      try {
        r = core.step(cl.conn, p);
      } catch (e) {
        fail(`step threw on ${hex(encodePacket(p))}: ${(e as Error).stack}`);
        return;
      }
      core.store.nodes.changes = null;
      const problem = replyProblem(p, r.reply);
      if (problem !== null) fail(`${problem} (request ${hex(encodePacket(p))})`);
      // A request that fails changes nothing (the core checks every record before writing).
      if (r.reply.type === XsType.ERROR && changes.size > 0) {
        fail(
          `${Buffer.from(r.reply.payload)} reply, yet ${[...changes.keys()].slice(0, 3).join(", ")} changed (request ${hex(encodePacket(p))})`,
        );
      }
      stats.reply(p, r.reply);
      for (const d of r.out) {
        if (d.packet === r.reply) continue;
        stats.events++;
        const ep = eventProblem(d.packet);
        if (ep !== null) fail(`${ep} after request ${hex(encodePacket(p))}`);
        if (d.conn.closed && d.conn !== cl.conn) fail(`event for closed connection ${d.conn.label}`);
      }
    }
    if (tooLarge !== null) {
      stats.drops++;
      if (cl.domid === 0) {
        core.disconnect(cl.conn);
        Object.assign(cl, socket());
      } else {
        // What the core sees of a ring the daemon ignores (C ignore_connection): the
        // connection's watches and transactions go. The ring target checks the rest.
        core.resetConnection(cl.conn);
        cl.reader = new PacketReader();
        cl.model = new StreamModel();
      }
    }
  };

  newSession();
  if (o.replay !== undefined) {
    run.current = o.replay;
    feed(clients[0]!, o.replay);
    treeCheck();
    await wellBehaved();
    return;
  }
  while (stats.packets < o.count) {
    const batchNo = ++run.batchNo;
    if (run.sessionDue()) {
      await wellBehaved();
      newSession();
    }
    const cl = rng.pick(clients);
    if (cl.domid !== 0 && (cl.conn.closed || !core.domains.has(cl.domid))) Object.assign(cl, guest(cl.domid));
    const otherTx: number[] = [];
    for (const c of clients) if (c !== cl) for (const id of c.conn.transactions.keys()) otherTx.push(id);
    feed(cl, run.batch([...cl.conn.transactions.keys()], otherTx, core.quotas.pathMax, 8));
    if (batchNo % 512 === 0) treeCheck();
    if (batchNo % 256 === 0) await wellBehaved();
  }
  await wellBehaved();
  run.finish();
}
