/**
 * Bugs the fuzzer found, each replayed from the fixed bytes it printed, against the part of
 * xenlab that had the bug. See docs/fuzzing.md for the list.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { XenStoreCore } from "../../src/xenstore/core.ts";
import { PayloadTooLargeError } from "../../src/xenstore/errors.ts";
import { SocketTransport } from "../../src/xenstore/transport-socket.ts";
import { PacketReader, XsType } from "../../src/xenstore/wire.ts";
import { tempDir } from "../helpers/peers.ts";
import { CLOSED, RawXsConnection, TIMEOUT } from "../helpers/xs-raw.ts";

const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const hexBytes = (h: string) => new Uint8Array(Buffer.from(h, "hex"));

/**
 * Bug 1 (core target, seed 1, batch 1; reduced by hand): WRITE /fza x, WRITE /fzb y, then a header announcing
 * 5000 bytes, in one chunk. PacketReader threw on the bad header and lost the two WRITEs framed
 * before it, so the socket transport dropped the connection without handling them. C xenstored
 * reads one request at a time: it handles both WRITEs, then drops the connection.
 */
const TWO_WRITES_THEN_TOO_LONG = hexBytes(
  "0b0000000700000000000000060000002f667a610078" + // WRITE req 7 "/fza\0x"
    "0b0000000800000000000000060000002f667a620079" + // WRITE req 8 "/fzb\0y"
    "0b000000090000000000000088130000", // WRITE req 9, len 5000
);

describe("regression: requests before an over-long header in the same chunk", () => {
  it("PacketReader hands them over, then reports the PayloadTooLargeError, fed whole or byte by byte", () => {
    for (const step of [TWO_WRITES_THEN_TOO_LONG.byteLength, 1]) {
      const r = new PacketReader();
      const got: number[] = [];
      for (let i = 0; i < TWO_WRITES_THEN_TOO_LONG.byteLength && r.error === null; i += step) {
        for (const p of r.push(TWO_WRITES_THEN_TOO_LONG.subarray(i, i + step))) got.push(p.reqId);
      }
      const err = r.error;
      assert.ok(err instanceof PayloadTooLargeError, "the bad header is reported");
      assert.equal(err.length, 5000);
      assert.deepEqual(got, [7, 8]);
    }
  });

  describe("the socket transport", () => {
    const dir = tempDir("xenlab-fuzz-reg-");
    const path = join(dir, "socket");
    const core = new XenStoreCore();
    const transport = new SocketTransport(core);
    before(() => transport.listen(path));
    after(async () => {
      await transport.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("handles and answers them, then drops the connection, as C xenstored", async () => {
      const c = await RawXsConnection.connect(path);
      c.sendBytes(TWO_WRITES_THEN_TOO_LONG);
      const replies: string[] = [];
      for (;;) {
        const r = await c.next(10_000);
        assert.notEqual(r, TIMEOUT, "the daemon answers or hangs up");
        if (r === CLOSED || r === TIMEOUT) break;
        replies.push(`${r.reqId} ${text(r.payload)}`);
      }
      assert.deepEqual(replies, ["7 OK\0", "8 OK\0"]);
      const d = await RawXsConnection.connect(path);
      for (const [id, node, value] of [
        [1, "/fza", "x"],
        [2, "/fzb", "y"],
      ] as const) {
        d.send({ type: XsType.READ, reqId: id, txId: 0, payload: Buffer.from(`${node}\0`) });
        const r = await d.next(10_000);
        assert.ok(r !== CLOSED && r !== TIMEOUT);
        assert.equal(text(r.payload), value);
      }
      await d.close();
    });
  });
});
