/**
 * Scenario tables for the xenstored core: rows of (who, tx, request, expected reply,
 * expected events), run against a fresh `XenStoreCore` with no socket.
 *
 * Payloads are written with `|` for NUL: `["WRITE", "/a|v"]`. A reply is expected as its
 * payload in the same notation (`"OK|"`), or `"!ENOENT"` for an XS_ERROR. Events are
 * `"who path token"`; a row without `events` expects none.
 */
import assert from "node:assert/strict";
import { type CoreOptions, XenStoreCore } from "../../src/xenstore/core.ts";
import type { Connection } from "../../src/xenstore/daemon.ts";
import { XsType } from "../../src/xenstore/wire.ts";

export type Row = {
  who: string;
  tx?: string;
  op: keyof typeof XsType;
  arg: string;
  expect: string | RegExp;
  events?: string[];
  note?: string;
};

const bytes = (s: string) => Uint8Array.from([...s.replaceAll("|", "\0")].map((c) => c.charCodeAt(0)));
const text = (b: Uint8Array) => String.fromCharCode(...b).replaceAll("\0", "|");

export class Scenario {
  readonly core: XenStoreCore;
  readonly conns = new Map<string, Connection>();
  readonly txs = new Map<string, number>();

  constructor(opts: CoreOptions = {}) {
    let core: XenStoreCore | null = null;
    this.core = new XenStoreCore({
      ...opts,
      hooks: { introduce: (domid) => core!.connectDomain(domid) },
    });
    core = this.core;
    this.conns.set("dom0", this.core.connectSocket());
    this.conns.set("dom0w", this.core.connectSocket());
  }

  conn(who: string): Connection {
    let c = this.conns.get(who);
    if (c === undefined) {
      const m = /^dom(\d+)$/.exec(who);
      if (!m) throw new RangeError(`Unknown connection "${who}"`);
      const domid = Number(m[1]);
      // A guest: introduce it through dom0, as the toolstack does.
      this.send("dom0", "INTRODUCE", `${domid}|1|${domid + 100}|`);
      c = this.core.domains.get(domid)?.conn ?? undefined;
      if (c === undefined) throw new Error(`Introducing dom${domid} made no connection`);
      this.conns.set(who, c);
    }
    return c;
  }

  /** Sends one request; returns the reply in `|` notation and the events. */
  send(who: string, op: keyof typeof XsType, arg: string, tx?: string): { reply: string; events: string[] } {
    const conn = this.conn(who);
    const txId = tx === undefined ? 0 : (this.txs.get(tx) ?? Number(tx));
    const r = this.core.step(conn, { type: XsType[op], reqId: 42, txId, payload: bytes(arg) });
    assert.ok(r.reply, "expected a reply");
    assert.equal(r.reply.reqId, 42, "req_id is echoed");
    assert.equal(r.reply.txId, txId, "tx_id is echoed");
    const labelOf = (c: Connection) => [...this.conns].find(([, v]) => v === c)?.[0] ?? c.label;
    const events = r.events.map((e) => {
      const [path, token] = text(e.packet.payload).split("|");
      return `${labelOf(e.conn)} ${path} ${token}`;
    });
    if (r.reply.type === XsType.ERROR)
      return { reply: `!${text(r.reply.payload).replace(/\|$/, "")}`, events };
    assert.equal(r.reply.type, XsType[op], "reply type is the request type");
    return { reply: text(r.reply.payload), events };
  }

  /**
   * Reads `path`'s children as a client pages them with DIRECTORY_PART (offset in bytes of the
   * names so far, each with its NUL; the last part ends with an empty name): the names, and the
   * generation each part carried.
   */
  directoryParts(who: string, path: string): { names: string[]; gens: string[] } {
    const names: string[] = [];
    const gens: string[] = [];
    for (let off = 0; ; ) {
      const parts = this.send(who, "DIRECTORY_PART", `${path}|${off}|`).reply.split("|");
      gens.push(parts[0]!);
      const body = parts.slice(1, -1);
      const done = body.at(-1) === "";
      const chunk = done ? body.slice(0, -1) : body;
      names.push(...chunk);
      off += chunk.reduce((n, c) => n + c.length + 1, 0);
      if (done) return { names, gens };
    }
  }

  run(rows: readonly Row[]): void {
    for (const [i, row] of rows.entries()) {
      const where = `row ${i} (${row.who} ${row.op} ${row.arg}${row.note ? ` — ${row.note}` : ""})`;
      const { reply, events } = this.send(row.who, row.op, row.arg, row.tx);
      if (
        row.op === "TRANSACTION_START" &&
        row.tx === undefined &&
        typeof row.expect === "string" &&
        row.expect.startsWith("=")
      ) {
        this.txs.set(row.expect.slice(1), Number(reply.replace(/\|$/, "")));
        continue;
      }
      if (row.expect instanceof RegExp) assert.match(reply, row.expect, where);
      else assert.equal(reply, row.expect, where);
      assert.deepEqual(events, row.events ?? [], `${where}: events`);
    }
  }
}
