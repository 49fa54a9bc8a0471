/**
 * The XenStore capture's record (src/xenstore/capture.ts) and the core's tap: every request and
 * every packet sent, on the toolstack's in-process connection and on a domain's ring, with the
 * connection's domid and direction; nothing while no tap is set.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { XEN_PAGE_SIZE as PAGE_SIZE } from "../../src/xen/xen.ts";
import { CAPTURE_HEADER_SIZE, captureRecord } from "../../src/xenstore/capture.ts";
import { XsClient } from "../../src/xenstore/client.ts";
import { XenStoreCore } from "../../src/xenstore/core.ts";
import { Connection, type PacketTap } from "../../src/xenstore/daemon.ts";
import { LocalChannel } from "../../src/xenstore/transport-local.ts";
import { RingClientChannel, RingServer } from "../../src/xenstore/transport-ring.ts";
import { decodeHeader, typeName, type XsPacket, XsType } from "../../src/xenstore/wire.ts";

const ascii = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("captureRecord()", () => {
  it("is the worked example: dom1's READ name, req 7, connection 3, over its ring", () => {
    const conn = new Connection(3, 1, false, "dom1", true);
    const rec = captureRecord("IN", conn, { type: XsType.READ, reqId: 7, txId: 0, payload: ascii("name\0") });
    assert.deepEqual(
      [...rec],
      [
        ...[1, 0, 1, 0, 1, 0, 0, 0, 3, 0, 0, 0],
        ...[2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0],
        ...ascii("name\0"),
      ],
    );
  });

  it("marks what xenstored sends as direction 1, and a socket client as transport 0 of dom0", () => {
    const conn = new Connection(0x1234, 0, true, "socket#4660");
    const rec = captureRecord("OUT", conn, {
      type: XsType.ERROR,
      reqId: 9,
      txId: 4,
      payload: ascii("ENOENT\0"),
    });
    assert.deepEqual([...rec.subarray(0, CAPTURE_HEADER_SIZE)], [1, 1, 0, 0, 0, 0, 0, 0, 0x34, 0x12, 0, 0]);
    const h = decodeHeader(rec, CAPTURE_HEADER_SIZE);
    assert.deepEqual(h, { type: XsType.ERROR, reqId: 9, txId: 4, len: 7 });
  });
});

/** What a tap saw: direction, connection label, domid, type name, payload. */
function recorder(): PacketTap & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    packet(dir: "IN" | "OUT", conn: Connection, p: XsPacket) {
      seen.push(
        `${dir} ${conn.label} d${conn.domid}${conn.ring ? " ring" : ""} ${typeName(p.type)} ${text(p.payload)}`,
      );
    },
  };
}

const turn = () => new Promise<void>((r) => setImmediate(r));

describe("XenStoreCore.tap", () => {
  it("sees the in-process toolstack's requests and replies, errors included", async () => {
    const core = new XenStoreCore();
    const xs = new XsClient(new LocalChannel(core));
    const tap = recorder();
    await xs.write("/before", "x");
    core.tap = tap;
    await xs.write("/a", "1");
    await assert.rejects(xs.read("/missing"), /ENOENT/);
    core.tap = null;
    await xs.write("/after", "y");
    assert.deepEqual(tap.seen, [
      "IN socket#1 d0 WRITE /a\u00001",
      "OUT socket#1 d0 WRITE OK\u0000",
      "IN socket#1 d0 READ /missing\u0000",
      "OUT socket#1 d0 ERROR ENOENT\u0000",
    ]);
  });

  it("sees a domain's requests over its ring, and the watch events sent to it", async () => {
    let server: RingServer | null = null;
    const page = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
    const core = new XenStoreCore({
      hooks: {
        introduce: (domid) => {
          server = new RingServer({
            core,
            conn: core.connectDomain(domid),
            page,
            notify: () => queueMicrotask(() => channel.onKick()),
          });
          return server.conn;
        },
      },
    });
    const dom0 = new XsClient(new LocalChannel(core));
    await dom0.mkdir("/local/domain/5");
    await dom0.setPerms("/local/domain/5", ["n5", "r0"]);
    await dom0.introduce(5, 1, 7);
    const channel = new RingClientChannel({ page, notify: () => queueMicrotask(() => server?.onKick()) });
    const guest = new XsClient(channel);
    const tap = recorder();
    core.tap = tap;
    await guest.write("data/x", "42");
    const w = guest.watch("data", "tok");
    await w.ready;
    await turn();
    const ringSeen = tap.seen.filter((s) => s.includes(" dom5 "));
    assert.deepEqual(ringSeen, [
      "IN dom5 d5 ring WRITE data/x\u000042",
      "OUT dom5 d5 ring WRITE OK\u0000",
      "IN dom5 d5 ring WATCH data\u0000tok\u0000",
      "OUT dom5 d5 ring WATCH OK\u0000",
      "OUT dom5 d5 ring WATCH_EVENT data\u0000tok\u0000",
    ]);
  });
});
