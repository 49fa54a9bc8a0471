/**
 * Bad input over the socket never crashes xenlab xenstored or disturbs other clients.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { encodePacket, type XsPacket, XsType } from "../../src/xenstore/wire.ts";
import { type RunningDaemon, startXenlab } from "../helpers/peers.ts";
import { CLOSED, RawXsConnection, TIMEOUT } from "../helpers/xs-raw.ts";

const enc = (s: string) => Uint8Array.from([...s].map((c) => c.charCodeAt(0)));
const text = (b: Uint8Array) => String.fromCharCode(...b);

async function ask(c: RawXsConnection, p: XsPacket): Promise<XsPacket> {
  assert.ok(c.send(p), "connection open");
  const r = await c.next(5000);
  assert.ok(r !== CLOSED && r !== TIMEOUT, `expected a reply, got ${String(r)}`);
  return r;
}

describe("xenlab xenstored under bad input", () => {
  let d: RunningDaemon;
  let victim: RawXsConnection;

  /** A well-behaved client still gets its answers. */
  async function victimWorks(): Promise<void> {
    const r = await ask(victim, { type: XsType.READ, reqId: 7, txId: 0, payload: enc("/victim\0") });
    assert.equal(r.type, XsType.READ);
    assert.equal(text(r.payload), "ok");
  }

  before(async () => {
    d = await startXenlab();
    victim = await RawXsConnection.connect(d.socket);
    await ask(victim, { type: XsType.WRITE, reqId: 1, txId: 0, payload: enc("/victim\0ok") });
  });
  after(async () => {
    await victim.close();
    await d.stop();
  });

  it("drops a connection announcing a payload over 4096 bytes, and only that one", async () => {
    const c = await RawXsConnection.connect(d.socket);
    const h = encodePacket({ type: XsType.WRITE, reqId: 0, txId: 0, payload: new Uint8Array(0) });
    new DataView(h.buffer).setUint32(12, 4097, true);
    c.sendBytes(h);
    assert.equal(await c.next(5000), CLOSED);
    await victimWorks();
  });

  it("survives garbage, truncated headers and half packets from clients that then hang up", async () => {
    for (const bytes of [enc("GET / HTTP/1.1\r\n\r\n"), new Uint8Array(7), new Uint8Array(16 + 3).fill(0)]) {
      const c = await RawXsConnection.connect(d.socket);
      c.sendBytes(bytes);
      await c.next(200);
      await c.close();
    }
    await victimWorks();
  });

  it("answers ENOSYS to unknown types and keeps the connection", async () => {
    const c = await RawXsConnection.connect(d.socket);
    for (const type of [20, 27, 99, 0xffff, XsType.WATCH_EVENT, XsType.ERROR]) {
      const r = await ask(c, { type, reqId: type, txId: 0, payload: enc("x\0") });
      assert.equal(r.type, XsType.ERROR);
      assert.equal(text(r.payload), "ENOSYS\0");
      assert.equal(r.reqId, type);
    }
    const r = await ask(c, { type: XsType.READ, reqId: 1, txId: 0, payload: enc("/victim\0") });
    assert.equal(text(r.payload), "ok");
    await c.close();
  });

  it("answers every request type with missing NULs with an error, never silence", async () => {
    const c = await RawXsConnection.connect(d.socket);
    for (let type = 0; type <= 26; type++) {
      // These take no argument, so trailing bytes without a NUL are ignored, as in C.
      if (
        type === XsType.TRANSACTION_START ||
        type === XsType.RESET_WATCHES ||
        type === XsType.GET_FEATURE ||
        type === XsType.GET_QUOTA
      )
        continue;
      const r = await ask(c, { type, reqId: 100 + type, txId: 0, payload: enc("/victim") });
      assert.equal(r.reqId, 100 + type);
      assert.equal(r.type, XsType.ERROR, `type ${type} answered ${text(r.payload)}`);
    }
    await c.close();
    await victimWorks();
  });

  it("keeps answering others while one client floods requests without reading replies", async () => {
    const flood = await RawXsConnection.connect(d.socket);
    const one = encodePacket({
      type: XsType.WRITE,
      reqId: 0,
      txId: 0,
      payload: enc("/flood\0xxxxxxxxxxxxxxxx"),
    });
    const burst = new Uint8Array(one.byteLength * 2000);
    for (let i = 0; i < 2000; i++) burst.set(one, i * one.byteLength);
    for (let i = 0; i < 20; i++) flood.sendBytes(burst);
    for (let i = 0; i < 20; i++) await victimWorks();
    await flood.close();
    await victimWorks();
  });

  it("survives random packets of every type (property) and still serves a good client", async () => {
    const c = await RawXsConnection.connect(d.socket);
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: 0, max: 3 }),
        fc.array(
          fc.oneof(
            fc.constantFrom("/", "/a", "@", "a", "\0", "T", "0", "n0", "/local/domain/1"),
            fc.string(),
          ),
          {
            maxLength: 5,
          },
        ),
        async (type, txId, parts) => {
          assert.ok(c.send({ type, reqId: ++sent, txId, payload: enc(parts.join("")) }));
          // The reply matches the request, whatever it says; watch events may come around it.
          for (;;) {
            const r = await c.next(5000);
            assert.ok(r !== CLOSED && r !== TIMEOUT, `expected a reply, got ${String(r)}`);
            if (r.type === XsType.WATCH_EVENT) continue;
            assert.equal(r.reqId, sent);
            break;
          }
        },
      ),
      { numRuns: 500 },
    );
    await c.close();
    await victimWorks();
  });
});
