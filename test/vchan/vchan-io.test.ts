/**
 * The vchan data path and page rules on their own (src/drivers/vchan/vchan-abi.ts,
 * vchan-io.ts): the server's order choice, the client's order checks, copies across page ends
 * and the ring's end, and a peer that corrupts the indices stalling the ring rather than
 * breaking it, as libxenvchan does.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { orderProblem, serverOrders, VCHAN } from "../../src/drivers/vchan/vchan-abi.ts";
import { VchanEnd, VchanRing } from "../../src/drivers/vchan/vchan-io.ts";

const page = () => new Uint8Array(new SharedArrayBuffer(4096));

describe("serverOrders() and orderProblem()", () => {
  it("picks init.c's orders", () => {
    assert.deepEqual(serverOrders(0, 0), { left: 10, right: 11 });
    assert.deepEqual(serverOrders(2048, 1024), { left: 11, right: 10 });
    assert.deepEqual(serverOrders(8192, 1024), { left: 13, right: 11 });
    assert.deepEqual(serverOrders(2000, 5000), { left: 11, right: 13 });
    assert.deepEqual(serverOrders(3000, 3000), { left: 12, right: 12 });
    assert.deepEqual(serverOrders(1 << 20, 1 << 20), { left: 20, right: 20 });
    assert.throws(() => serverOrders((1 << 20) + 1, 0), /the largest is 1048576/);
  });

  it("refuses what init_gnt_cli refuses", () => {
    assert.equal(orderProblem({ left: 10, right: 11 }), undefined);
    assert.equal(orderProblem({ left: 12, right: 12 }), undefined);
    assert.match(orderProblem({ left: 9, right: 11 })!, /left_order is 9, outside 10..20/);
    assert.match(orderProblem({ left: 13, right: 21 })!, /right_order is 21/);
    assert.match(orderProblem({ left: 11, right: 11 })!, /two rings in one slot/);
  });
});

function pair(rightPages: number) {
  const ctrl = page();
  const left = VchanRing.inPage(ctrl, 10);
  const right =
    rightPages === 0
      ? VchanRing.inPage(ctrl, 11)
      : VchanRing.overPages(12 + Math.log2(rightPages), Array.from({ length: rightPages }, page));
  ctrl[VCHAN.cliLive] = 1;
  ctrl[VCHAN.srvLive] = 1;
  const kicks = { srv: 0, cli: 0 };
  const srv = new VchanEnd({ ctrl, server: true, read: left, write: right, notify: () => kicks.srv++ });
  const cli = new VchanEnd({ ctrl, server: false, read: right, write: left, notify: () => kicks.cli++ });
  return { ctrl, srv, cli, kicks };
}

describe("VchanEnd", () => {
  it("carries bytes across page ends and the ring's end of a 4-page ring", () => {
    const { srv, cli } = pair(4);
    const data = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 13) & 0xff);
    const got: number[] = [];
    const buf = new Uint8Array(7000);
    for (let round = 0; round < 5; round++) {
      assert.equal(srv.send(data.subarray(0, 9000)), 9000);
      for (let left = 9000; left > 0; ) {
        const n = cli.read(buf.subarray(0, Math.min(buf.length, left)));
        assert.ok(n > 0);
        got.push(...buf.subarray(0, n));
        left -= n;
      }
    }
    assert.deepEqual(got, Array.from({ length: 5 }, () => [...data.subarray(0, 9000)]).flat());
  });

  it("stalls, rather than reads garbage or throws, when the peer corrupts the indices", () => {
    const { ctrl, srv, cli } = pair(0);
    const idx = new Uint32Array(ctrl.buffer, 0, 4);
    idx[VCHAN.rightProd / 4] = 100_000; // more ready than the ring holds
    assert.equal(cli.read(new Uint8Array(10)), 0);
    assert.equal(cli.dataReady(), 0);
    idx[VCHAN.leftCons / 4] = 50; // the reader "consumed" what was never written
    assert.equal(cli.write(new Uint8Array(10)), 0);
    assert.equal(cli.bufferSpace(), 0);
    assert.equal(srv.isOpen(), 1);
  });

  it("signals only when the peer asked", () => {
    const { srv, cli, kicks } = pair(0);
    assert.equal(cli.write(new Uint8Array(5)), 5);
    assert.equal(kicks.cli, 0, "the server never asked for WRITE");
    assert.equal(srv.read(new Uint8Array(10)), 5);
    assert.equal(srv.read(new Uint8Array(10)), 0); // asks for WRITE on the way
    assert.equal(cli.write(new Uint8Array(5)), 5);
    assert.equal(kicks.cli, 1);
    assert.equal(cli.write(new Uint8Array(5)), 5);
    assert.equal(kicks.cli, 1, "the bit was cleared by the first signal");
  });

  it("lets the reader take what was written, then reports the writer gone", () => {
    const { ctrl, srv, cli } = pair(0);
    assert.equal(cli.write(new Uint8Array([1, 2, 3])), 3);
    cli.markClosed();
    assert.equal(ctrl[VCHAN.cliLive], 0);
    assert.equal(srv.recv(new Uint8Array(5)), -1, "recv: too little left and the writer gone");
    assert.equal(srv.read(new Uint8Array(5)), 3);
    assert.equal(srv.read(new Uint8Array(5)), -1);
    assert.equal(srv.write(new Uint8Array(1)), -1);
  });
});
