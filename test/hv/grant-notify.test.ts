/**
 * Unmap notifications in the hypervisor's grant tables (src/hv/grant-table.ts): Linux gntdev's
 * and gntalloc's UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT, which libxenvchan uses to
 * notice a peer that closed or died.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type GrantDomain, GrantTables } from "../../src/hv/grant-table.ts";
import { GNTMAP, GNTST, GrantTableFrames, grantForeignAccess } from "../../src/xen/grant-table-abi.ts";

function world() {
  const doms = new Map<number, GrantDomain & { table: GrantTableFrames }>();
  for (const domid of [1, 2]) {
    const grantFrames = [new SharedArrayBuffer(4096)];
    doms.set(domid, {
      domid,
      pages: Array.from({ length: 8 }, () => new SharedArrayBuffer(4096)),
      grantFrames,
      table: new GrantTableFrames(grantFrames),
    });
  }
  const sent: [number, number][] = [];
  const gt = new GrantTables((id) => doms.get(id), { sendEvent: (d, p) => sent.push([d, p]) });
  const d1 = doms.get(1)!;
  grantForeignAccess(d1.table, 8, 2, 5, false);
  new Uint8Array(d1.pages[5]!).fill(1, 0, 32);
  const byte = (off: number) => new Uint8Array(d1.pages[5]!)[off];
  return { gt, sent, byte, doms };
}

function mapHandle(gt: GrantTables, flags: number = GNTMAP.host_map): number {
  const r = gt.mapGrantRef(2, { dom: 1, ref: 8, flags });
  assert.equal(r.status, GNTST.okay);
  return (r as { handle: number }).handle;
}

describe("GrantTables.setUnmapNotify() (gntdev)", () => {
  it("clears the byte and signals the mapper's port when the mapping is unmapped", () => {
    const { gt, sent, byte } = world();
    const h = mapHandle(gt);
    assert.equal(gt.setUnmapNotify(2, h, { offset: 20, port: 9 }), GNTST.okay);
    assert.equal(byte(20), 1);
    assert.equal(gt.unmapGrantRef(2, h), GNTST.okay);
    assert.equal(byte(20), 0);
    assert.equal(byte(21), 1);
    assert.deepEqual(sent, [[2, 9]]);
  });

  it("fires when the mapper dies (releaseMappings)", () => {
    const { gt, sent, byte } = world();
    gt.setUnmapNotify(2, mapHandle(gt), { offset: 20, port: 9 });
    assert.equal(gt.releaseMappings(2), 1);
    assert.equal(byte(20), 0);
    assert.deepEqual(sent, [[2, 9]]);
  });

  it("refuses a read-only mapping, a bad handle and an offset outside the page", () => {
    const { gt, sent } = world();
    const ro = mapHandle(gt, GNTMAP.host_map | GNTMAP.readonly);
    assert.equal(gt.setUnmapNotify(2, ro, { offset: 20, port: 9 }), GNTST.general_error);
    assert.equal(gt.setUnmapNotify(2, 77, { offset: 20, port: 9 }), GNTST.bad_handle);
    assert.throws(() => gt.setUnmapNotify(2, ro, { offset: 4096, port: 9 }), RangeError);
    gt.unmapGrantRef(2, ro);
    assert.deepEqual(sent, []);
  });
});

describe("GrantTables.setShareNotify() (gntalloc)", () => {
  it("fires when the share ends with fire, and not again", () => {
    const { gt, sent, byte } = world();
    assert.equal(gt.setShareNotify(1, 8, { offset: 21, port: 7 }), GNTST.okay);
    assert.equal(gt.endShareNotify(1, 8, true), GNTST.okay);
    assert.equal(byte(21), 0);
    assert.deepEqual(sent, [[1, 7]]);
    assert.equal(gt.endShareNotify(1, 8, true), GNTST.bad_gntref);
    assert.equal(gt.releaseShares(1), 0);
    assert.deepEqual(sent, [[1, 7]]);
  });

  it("fires at the granter's death (releaseShares), also while the peer still maps the page", () => {
    const { gt, sent, byte } = world();
    const h = mapHandle(gt);
    gt.setShareNotify(1, 8, { offset: 21, port: 7 });
    assert.equal(gt.releaseShares(1), 1);
    assert.equal(byte(21), 0);
    assert.deepEqual(sent, [[1, 7]]);
    assert.equal(gt.unmapGrantRef(2, h), GNTST.okay);
  });

  it("ends without firing when asked", () => {
    const { gt, sent, byte } = world();
    gt.setShareNotify(1, 8, { offset: 21, port: 7 });
    gt.endShareNotify(1, 8, false);
    assert.equal(byte(21), 1);
    assert.deepEqual(sent, []);
  });
});
