/**
 * Grant tables v1: the granting guest's side (grant, end, query, ref allocation) and the
 * hypervisor's map, unmap and copy with Xen's rules and GNTST_* results, pin counts, maptrack
 * handles, domain release, the flag word under real concurrency with a worker, and a property
 * over random operation sequences.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import {
  type GrantCopy,
  type GrantDomain,
  GrantTables,
  type GrantTablesOptions,
  type MapResult,
} from "../../src/hv/grant-table.ts";
import { endForeignAccess, GrantRefAllocator, queryForeignAccess } from "../../src/kernel/grant-table.ts";
import {
  GNTCOPY,
  GNTMAP,
  GNTST,
  GrantTableFrames,
  GTF,
  grantForeignAccess,
} from "../../src/xen/grant-table-abi.ts";
import { DOMID_SELF } from "../../src/xen/xen.ts";

interface Dom extends GrantDomain {
  readonly table: GrantTableFrames;
  readonly bytes: (gfn: number) => Uint8Array;
}

function domain(domid: number, nPages = 8, nFrames = 1): Dom {
  const pages = Array.from({ length: nPages }, () => new SharedArrayBuffer(4096));
  const grantFrames = Array.from({ length: nFrames }, () => new SharedArrayBuffer(4096));
  return {
    domid,
    pages,
    grantFrames,
    table: new GrantTableFrames(grantFrames),
    bytes: (gfn) => new Uint8Array(pages[gfn]!),
  };
}

/** Domains 1 (the granter), 2 and 3, and the hypervisor over them. */
function world(options: GrantTablesOptions = {}) {
  const doms = new Map<number, Dom>([1, 2, 3].map((d) => [d, domain(d)]));
  const gt = new GrantTables((id) => doms.get(id), options);
  const d1 = doms.get(1)!;
  return { doms, gt, d1, t1: d1.table };
}

function mapped(r: MapResult): Extract<MapResult, { status: 0 }> {
  assert.equal(r.status, GNTST.okay, `map failed with ${r.status}`);
  return r as Extract<MapResult, { status: 0 }>;
}

const HOST = GNTMAP.host_map;
const HOST_RO = GNTMAP.host_map | GNTMAP.readonly;
const PA = GTF.permit_access;

describe("grantForeignAccess()", () => {
  it("writes flags, domid and frame at grant_entry_v1's offsets, little endian", () => {
    const d = domain(1);
    grantForeignAccess(d.table, 9, 0x1234, 0xdeadbeef, false);
    const v = new DataView(d.grantFrames[0]!, 9 * 8, 8);
    assert.equal(v.getUint16(0, true), GTF.permit_access);
    assert.equal(v.getUint16(2, true), 0x1234);
    assert.equal(v.getUint32(4, true), 0xdeadbeef);
    assert.equal(d.table.flags(9), PA);
    assert.equal(d.table.domid(9), 0x1234);
    assert.equal(d.table.frame(9), 0xdeadbeef);
  });

  it("sets GTF_readonly for a read-only grant", () => {
    const d = domain(1);
    grantForeignAccess(d.table, 8, 2, 3, true);
    assert.equal(d.table.flags(8), PA | GTF.readonly);
  });

  it("addresses refs in later frames (512 entries per frame)", () => {
    const d = domain(1, 8, 2);
    assert.equal(d.table.nrEntries, 1024);
    grantForeignAccess(d.table, 513, 2, 7, false);
    assert.equal(new DataView(d.grantFrames[1]!).getUint32(8 + 4, true), 7);
  });

  it("rejects a ref outside the table and a domid over 16 bits", () => {
    const d = domain(1);
    assert.throws(() => grantForeignAccess(d.table, 512, 2, 0, false), RangeError);
    assert.throws(() => grantForeignAccess(d.table, -1, 2, 0, false), RangeError);
    assert.throws(() => grantForeignAccess(d.table, 8, 0x10000, 0, false), RangeError);
  });
});

describe("endForeignAccess() and queryForeignAccess()", () => {
  it("revokes an unused grant: flags become 0 and it returns true", () => {
    const { t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    assert.equal(queryForeignAccess(t1, 8), 0);
    assert.equal(endForeignAccess(t1, 8), true);
    assert.equal(t1.flags(8), 0);
  });

  it("fails while the grantee has the page mapped, and succeeds once it is unmapped", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    const m = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }));
    assert.equal(queryForeignAccess(t1, 8), GTF.reading | GTF.writing);
    assert.equal(endForeignAccess(t1, 8), false);
    assert.equal(t1.flags(8), PA | GTF.reading | GTF.writing);
    assert.equal(gt.unmapGrantRef(2, m.handle), GNTST.okay);
    assert.equal(endForeignAccess(t1, 8), true);
  });

  it("fails while only GTF_reading is set (a read-only mapping)", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, true);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO }));
    assert.equal(queryForeignAccess(t1, 8), GTF.reading);
    assert.equal(endForeignAccess(t1, 8), false);
  });

  it("after revocation the grantee can no longer map (GNTST_general_error)", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    assert.equal(endForeignAccess(t1, 8), true);
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }).status, GNTST.general_error);
  });
});

describe("GrantRefAllocator", () => {
  it("never hands out the reserved refs 0-7 (0 console, 1 xenstore)", () => {
    const a = new GrantRefAllocator(16);
    const got: number[] = [];
    for (let r = a.alloc(); r !== undefined; r = a.alloc()) got.push(r);
    assert.deepEqual(
      got.sort((x, y) => x - y),
      [8, 9, 10, 11, 12, 13, 14, 15],
    );
  });

  it("returns undefined when exhausted and reuses a freed ref", () => {
    const a = new GrantRefAllocator(9);
    assert.equal(a.alloc(), 8);
    assert.equal(a.alloc(), undefined);
    a.free(8);
    assert.equal(a.available, 1);
    assert.equal(a.alloc(), 8);
  });

  it("rejects freeing a reserved ref, a ref out of range and a ref twice", () => {
    const a = new GrantRefAllocator(16);
    const r = a.alloc()!;
    assert.throws(() => a.free(1), RangeError);
    assert.throws(() => a.free(16), RangeError);
    a.free(r);
    assert.throws(() => a.free(r), /already free/);
  });
});

describe("GrantTables.mapGrantRef()", () => {
  it("maps a writable grant: the granter's page itself, GTF_reading|GTF_writing set", () => {
    const { gt, d1, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    const m = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }));
    assert.equal(m.page, d1.pages[5]);
    assert.equal(m.readonly, false);
    assert.equal(m.gfn, 5);
    assert.equal(t1.flags(8), PA | GTF.reading | GTF.writing);
    assert.equal(t1.domid(8), 2, "the domid half of the word is kept");
    new Uint8Array(m.page)[0] = 42;
    assert.equal(d1.bytes(5)[0], 42);
  });

  it("maps a writable grant read-only when asked: only GTF_reading, readonly: true", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    const m = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO }));
    assert.equal(m.readonly, true);
    assert.equal(t1.flags(8), PA | GTF.reading);
  });

  it("maps a read-only grant read-only only: a writable map gives GNTST_general_error and no flag", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, true);
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }).status, GNTST.general_error);
    assert.equal(t1.flags(8), PA | GTF.readonly);
    const m = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO }));
    assert.equal(m.readonly, true);
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }).status, GNTST.general_error);
    assert.equal(t1.flags(8), PA | GTF.readonly | GTF.reading);
  });

  it("refuses a mapper other than the grant's domid (GNTST_general_error)", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    assert.equal(gt.mapGrantRef(3, { dom: 1, ref: 8, flags: HOST }).status, GNTST.general_error);
    assert.equal(t1.flags(8), PA);
  });

  it("refuses entries that are not permit_access: invalid, accept_transfer, transitive, sub_page", () => {
    const { gt, t1 } = world();
    const word = t1.words(8);
    for (const flags of [GTF.invalid, GTF.accept_transfer, GTF.transitive, PA | GTF.sub_page]) {
      Atomics.store(word, 16, (2 << 16) | flags);
      Atomics.store(word, 17, 5);
      assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }).status, GNTST.general_error);
      assert.equal(t1.flags(8), flags, `flags ${flags} untouched`);
    }
  });

  it("gives GNTST_bad_gntref for a ref at or past the table's end, maps the last entry", () => {
    const { gt, t1 } = world();
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 512, flags: HOST }).status, GNTST.bad_gntref);
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 0xffffffff, flags: HOST }).status, GNTST.bad_gntref);
    grantForeignAccess(t1, 511, 2, 1, false);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 511, flags: HOST }));
  });

  it("gives GNTST_bad_gntref when neither host_map nor device_map is asked for", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: GNTMAP.readonly }).status, GNTST.bad_gntref);
    assert.equal(t1.flags(8), PA);
  });

  it("gives GNTST_bad_domain for an unknown granter", () => {
    const { gt } = world();
    assert.equal(gt.mapGrantRef(2, { dom: 9, ref: 8, flags: HOST }).status, GNTST.bad_domain);
    assert.equal(gt.mapGrantRef(2, { dom: DOMID_SELF, ref: 8, flags: HOST }).status, GNTST.bad_domain);
  });

  it("gives GNTST_bad_page for a gfn past the granter's memory, and clears the flags it set", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 8, false);
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }).status, GNTST.bad_page);
    assert.equal(t1.flags(8), PA);
    assert.equal(endForeignAccess(t1, 8), true);
  });

  it("lets a domain map its own grant", () => {
    const { gt, d1, t1 } = world();
    grantForeignAccess(t1, 8, 1, 2, false);
    assert.equal(mapped(gt.mapGrantRef(1, { dom: 1, ref: 8, flags: HOST })).page, d1.pages[2]);
  });

  it("refuses a second domain while the entry is pinned, even after the granter rewrites its domid", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO }));
    Atomics.store(t1.words(8), 16, (3 << 16) | PA | GTF.reading); // a misbehaving granter
    assert.equal(gt.mapGrantRef(3, { dom: 1, ref: 8, flags: HOST_RO }).status, GNTST.general_error);
  });

  it("keeps handing out the page resolved at first pin, even if the granter rewrites frame", () => {
    const { gt, d1, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }));
    Atomics.store(t1.words(8), 17, 6);
    assert.equal(mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).page, d1.pages[5]);
  });

  it("counts pins per kind (host/device, read/write) and refuses the 129th of one kind", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    for (let i = 0; i < 128; i++) mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO }));
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO }).status, GNTST.general_error);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }));
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: GNTMAP.device_map | GNTMAP.readonly }));
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: GNTMAP.device_map | GNTMAP.host_map }));
    assert.deepEqual(gt.pinsOf(1, 8), { hostWrite: 2, hostRead: 128, devWrite: 1, devRead: 1 });
  });

  it("hands out small integer handles and does not reuse a freed one at once", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    const hs = [0, 1, 2].map(() => mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).handle);
    assert.deepEqual(hs, [0, 1, 2]);
    assert.equal(gt.unmapGrantRef(2, 1), GNTST.okay);
    assert.equal(mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).handle, 3);
  });

  it("gives GNTST_no_space when the mapper's maptrack is full", () => {
    const { gt, t1 } = world({ maxMaptrackHandles: 2 });
    grantForeignAccess(t1, 8, 2, 5, false);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }));
    const h = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).handle;
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }).status, GNTST.no_space);
    assert.equal(gt.unmapGrantRef(2, h), GNTST.okay);
    assert.equal(mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).handle, h);
  });
});

describe("GrantTables.unmapGrantRef()", () => {
  it("follows the module's worked example: pins and flags step by step", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    assert.equal(t1.flags(8), PA);
    const h0 = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO })).handle;
    assert.deepEqual(gt.pinsOf(1, 8), { hostWrite: 0, hostRead: 1, devWrite: 0, devRead: 0 });
    assert.equal(t1.flags(8), PA | GTF.reading);
    const h1 = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).handle;
    assert.deepEqual(gt.pinsOf(1, 8), { hostWrite: 1, hostRead: 1, devWrite: 0, devRead: 0 });
    assert.equal(t1.flags(8), PA | GTF.reading | GTF.writing);
    assert.equal(endForeignAccess(t1, 8), false);
    assert.equal(t1.flags(8), PA | GTF.reading | GTF.writing);
    assert.equal(gt.unmapGrantRef(2, h1), GNTST.okay);
    assert.deepEqual(gt.pinsOf(1, 8), { hostWrite: 0, hostRead: 1, devWrite: 0, devRead: 0 });
    assert.equal(t1.flags(8), PA | GTF.reading);
    assert.equal(gt.unmapGrantRef(2, h1), GNTST.bad_handle);
    assert.equal(gt.unmapGrantRef(2, h0), GNTST.okay);
    assert.equal(gt.pinsOf(1, 8), undefined);
    assert.equal(t1.flags(8), PA);
    assert.equal(endForeignAccess(t1, 8), true);
    assert.equal(t1.flags(8), 0);
  });

  it("gives GNTST_bad_handle for a handle never handed out, negative, or of a domain that mapped nothing", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }));
    assert.equal(gt.unmapGrantRef(2, 7), GNTST.bad_handle);
    assert.equal(gt.unmapGrantRef(2, 100000), GNTST.bad_handle);
    assert.equal(gt.unmapGrantRef(2, -1), GNTST.bad_handle);
    assert.equal(gt.unmapGrantRef(3, 0), GNTST.bad_handle);
  });

  it("keeps GTF_writing while another writable mapping remains", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    const a = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).handle;
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: GNTMAP.device_map }));
    assert.equal(gt.unmapGrantRef(2, a), GNTST.okay);
    assert.equal(t1.flags(8), PA | GTF.reading | GTF.writing);
  });

  it("drops both pins of a host_map|device_map mapping", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    const h = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST | GNTMAP.device_map })).handle;
    assert.deepEqual(gt.pinsOf(1, 8), { hostWrite: 1, hostRead: 0, devWrite: 1, devRead: 0 });
    assert.equal(gt.unmapGrantRef(2, h), GNTST.okay);
    assert.equal(gt.pinsOf(1, 8), undefined);
    assert.equal(t1.flags(8), PA);
  });
});

describe("GrantTables.copy()", () => {
  function copyOp(
    source: { u: number; domid: number; offset?: number },
    dest: { u: number; domid: number; offset?: number },
    len: number,
    flags: number,
  ): GrantCopy {
    return {
      source: { u: source.u, domid: source.domid, offset: source.offset ?? 0 },
      dest: { u: dest.u, domid: dest.domid, offset: dest.offset ?? 0 },
      len,
      flags,
    };
  }

  it("copies from a grant into the caller's own gfn (DOMID_SELF), flags restored after", () => {
    const { doms, gt, d1, t1 } = world();
    d1.bytes(5).set([1, 2, 3, 4], 100);
    grantForeignAccess(t1, 8, 2, 5, true);
    const op = copyOp({ u: 8, domid: 1, offset: 100 }, { u: 3, domid: DOMID_SELF, offset: 10 }, 4, 1);
    assert.equal(gt.copy(2, op), GNTST.okay);
    assert.deepEqual([...doms.get(2)!.bytes(3).subarray(10, 14)], [1, 2, 3, 4]);
    assert.equal(t1.flags(8), PA | GTF.readonly);
    assert.equal(gt.pinsOf(1, 8), undefined);
  });

  it("copies from the caller's gfn into a writable grant", () => {
    const { doms, gt, d1, t1 } = world();
    doms.get(2)!.bytes(0).fill(7, 0, 4096);
    grantForeignAccess(t1, 8, 2, 5, false);
    const op = copyOp({ u: 0, domid: DOMID_SELF }, { u: 8, domid: 1 }, 4096, GNTCOPY.dest_gref);
    assert.equal(gt.copy(2, op), GNTST.okay);
    assert.equal(
      d1.bytes(5).every((b) => b === 7),
      true,
    );
    assert.equal(t1.flags(8), PA);
  });

  it("copies between two grants of other domains", () => {
    const { doms, gt, d1, t1 } = world();
    const d3 = doms.get(3)!;
    d1.bytes(1)[0] = 0xab;
    grantForeignAccess(t1, 8, 2, 1, true);
    grantForeignAccess(d3.table, 9, 2, 4, false);
    const op = copyOp({ u: 8, domid: 1 }, { u: 9, domid: 3 }, 1, GNTCOPY.source_gref | GNTCOPY.dest_gref);
    assert.equal(gt.copy(2, op), GNTST.okay);
    assert.equal(d3.bytes(4)[0], 0xab);
  });

  it("refuses to copy into a read-only grant (GNTST_general_error), page untouched", () => {
    const { doms, gt, d1, t1 } = world();
    doms.get(2)!.bytes(0).fill(9);
    grantForeignAccess(t1, 8, 2, 5, true);
    const op = copyOp({ u: 0, domid: DOMID_SELF }, { u: 8, domid: 1 }, 16, GNTCOPY.dest_gref);
    assert.equal(gt.copy(2, op), GNTST.general_error);
    assert.equal(d1.bytes(5)[0], 0);
    assert.equal(t1.flags(8), PA | GTF.readonly);
  });

  it("returns GNTST_okay for len 0 whatever the rest says", () => {
    const { gt } = world();
    assert.equal(gt.copy(2, copyOp({ u: 999, domid: 77 }, { u: 999, domid: 2 }, 0, 0)), GNTST.okay);
  });

  it("gives GNTST_permission_denied for a gfn side naming any domid but DOMID_SELF, even the caller's", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    assert.equal(
      gt.copy(2, copyOp({ u: 8, domid: 1 }, { u: 0, domid: 2 }, 8, GNTCOPY.source_gref)),
      GNTST.permission_denied,
    );
    assert.equal(
      gt.copy(2, copyOp({ u: 5, domid: 1 }, { u: 0, domid: DOMID_SELF }, 8, 0)),
      GNTST.permission_denied,
    );
  });

  it("gives GNTST_bad_domain for an unknown grant owner", () => {
    const { gt } = world();
    assert.equal(
      gt.copy(2, copyOp({ u: 8, domid: 9 }, { u: 0, domid: DOMID_SELF }, 8, GNTCOPY.source_gref)),
      GNTST.bad_domain,
    );
  });

  it("gives GNTST_bad_gntref for a ref past the table, GNTST_general_error for a grant to someone else", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 3, 5, false);
    const self = { u: 0, domid: DOMID_SELF };
    assert.equal(gt.copy(2, copyOp({ u: 4096, domid: 1 }, self, 8, GNTCOPY.source_gref)), GNTST.bad_gntref);
    assert.equal(gt.copy(2, copyOp({ u: 8, domid: 1 }, self, 8, GNTCOPY.source_gref)), GNTST.general_error);
  });

  it("gives GNTST_bad_page for a gfn past memory, on a gfn side or behind a grant", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    grantForeignAccess(t1, 9, 2, 50, false);
    const g8 = { u: 8, domid: 1 };
    assert.equal(gt.copy(2, copyOp(g8, { u: 8, domid: DOMID_SELF }, 8, GNTCOPY.source_gref)), GNTST.bad_page);
    assert.equal(
      gt.copy(2, copyOp({ u: 9, domid: 1 }, { u: 0, domid: DOMID_SELF }, 8, GNTCOPY.source_gref)),
      GNTST.bad_page,
    );
    assert.equal(t1.flags(8), PA);
    assert.equal(t1.flags(9), PA);
  });

  it("gives GNTST_bad_copy_arg when offset + len crosses the 4 KiB page, and copies nothing", () => {
    const { doms, gt, d1, t1 } = world();
    d1.bytes(5).fill(1);
    grantForeignAccess(t1, 8, 2, 5, false);
    const src = { u: 8, domid: 1 };
    const f = GNTCOPY.source_gref;
    assert.equal(
      gt.copy(2, copyOp({ ...src, offset: 4000 }, { u: 0, domid: DOMID_SELF }, 97, f)),
      GNTST.bad_copy_arg,
    );
    assert.equal(
      gt.copy(2, copyOp(src, { u: 0, domid: DOMID_SELF, offset: 1 }, 4096, f)),
      GNTST.bad_copy_arg,
    );
    assert.equal(doms.get(2)!.bytes(0)[1], 0);
    assert.equal(t1.flags(8), PA);
    assert.equal(
      gt.copy(2, copyOp({ ...src, offset: 4000 }, { u: 0, domid: DOMID_SELF }, 96, f)),
      GNTST.okay,
    );
  });

  it("checks the grants before the bounds, as Xen does", () => {
    const { gt } = world();
    const op = copyOp({ u: 600, domid: 1, offset: 4095 }, { u: 0, domid: DOMID_SELF }, 2, 1);
    assert.equal(gt.copy(2, op), GNTST.bad_gntref);
  });

  it("allows a sub_page grant to be copied (only maps refuse it)", () => {
    const { gt, t1 } = world();
    Atomics.store(t1.words(8), 17, 5);
    Atomics.store(t1.words(8), 16, (2 << 16) | PA | GTF.sub_page);
    const op = copyOp({ u: 8, domid: 1 }, { u: 0, domid: DOMID_SELF }, 8, GNTCOPY.source_gref);
    assert.equal(gt.copy(2, op), GNTST.okay);
  });

  it("copies into a grant the caller also has mapped, leaving the mapping's flags", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO }));
    const op = copyOp({ u: 0, domid: DOMID_SELF }, { u: 8, domid: 1 }, 8, GNTCOPY.dest_gref);
    assert.equal(gt.copy(2, op), GNTST.okay);
    assert.equal(t1.flags(8), PA | GTF.reading);
  });

  it("refuses a copy through a grant another domain has pinned (GNTST_general_error)", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }));
    const op = copyOp({ u: 8, domid: 1 }, { u: 0, domid: DOMID_SELF }, 8, GNTCOPY.source_gref);
    assert.equal(gt.copy(3, op), GNTST.general_error);
  });

  it("copies overlapping ranges of one page as memmove", () => {
    const { doms, gt } = world();
    const p = doms.get(2)!.bytes(1);
    p.set([1, 2, 3, 4, 5]);
    const op = copyOp({ u: 1, domid: DOMID_SELF }, { u: 1, domid: DOMID_SELF, offset: 1 }, 4, 0);
    assert.equal(gt.copy(2, op), GNTST.okay);
    assert.deepEqual([...p.subarray(0, 5)], [1, 1, 2, 3, 4]);
  });
});

describe("domain destruction: releaseMappings() and usesOf()", () => {
  it("releases everything a domain mapped, clearing the granters' flags", () => {
    const { doms, gt, t1 } = world();
    const t3 = doms.get(3)!.table;
    grantForeignAccess(t1, 8, 2, 5, false);
    grantForeignAccess(t3, 8, 2, 1, true);
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }));
    mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST_RO }));
    const h = mapped(gt.mapGrantRef(2, { dom: 3, ref: 8, flags: HOST_RO })).handle;
    assert.equal(gt.mappingsBy(2).length, 3);
    assert.equal(gt.releaseMappings(2), 3);
    assert.equal(t1.flags(8), PA);
    assert.equal(t3.flags(8), PA | GTF.readonly);
    assert.deepEqual(gt.mappingsBy(2), []);
    assert.equal(gt.unmapGrantRef(2, h), GNTST.bad_handle);
    assert.equal(endForeignAccess(t1, 8), true);
  });

  it("tells whether others still map a granter's pages", () => {
    const { gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    grantForeignAccess(t1, 9, 3, 6, true);
    assert.deepEqual(gt.usesOf(1), []);
    const h = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).handle;
    mapped(gt.mapGrantRef(3, { dom: 1, ref: 9, flags: HOST_RO }));
    assert.deepEqual(
      gt.usesOf(1).map((u) => [u.ref, u.mapper, u.gfn]),
      [
        [8, 2, 5],
        [9, 3, 6],
      ],
    );
    assert.equal(gt.unmapGrantRef(2, h), GNTST.okay);
    assert.equal(gt.releaseMappings(3), 1);
    assert.deepEqual(gt.usesOf(1), []);
  });

  it("still unmaps, and still reports, after the granter has left the domain lookup", () => {
    const { doms, gt, t1 } = world();
    grantForeignAccess(t1, 8, 2, 5, false);
    const h = mapped(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST })).handle;
    doms.delete(1);
    assert.equal(gt.usesOf(1).length, 1);
    assert.equal(gt.mapGrantRef(2, { dom: 1, ref: 8, flags: HOST }).status, GNTST.bad_domain);
    assert.equal(gt.unmapGrantRef(2, h), GNTST.okay);
    assert.equal(t1.flags(8), PA);
    assert.deepEqual(gt.usesOf(1), []);
  });
});

describe("the (flags, domid) word under concurrency", () => {
  it("loses no GTF bit while a worker grants and ends access as the hypervisor maps and unmaps", async () => {
    const { gt, t1, d1 } = world();
    // ctl words: [0] the worker is done, [1] go, [2] the hypervisor side has seen a map succeed,
    // [3] the worker's refusals so far. Both sides go on until each has met the other (a map that
    // succeeded, an end refused because of a map), at least `iterations` rounds, at most 20 s: how
    // much they overlap is up to the scheduler, so the test waits for overlap instead of assuming it.
    const ctl = new SharedArrayBuffer(16);
    const c = new Int32Array(ctl);
    const refs = [8, 9, 10, 11]; // odd refs are granted read-only
    const iterations = 4000;
    const abi = new URL("../../src/xen/grant-table-abi.ts", import.meta.url).href;
    const guest = new URL("../../src/kernel/grant-table.ts", import.meta.url).href;
    const tsx = import.meta.resolve("tsx/esm/api");
    // Workers do not inherit tsx's hooks on Node 20: register them in the worker first.
    const boot = `
      const { workerData: d, parentPort } = await import("node:worker_threads");
      const { register } = await import(${JSON.stringify(tsx)});
      register();
      const g = { ...(await import(${JSON.stringify(abi)})), ...(await import(${JSON.stringify(guest)})) };
      const table = new g.GrantTableFrames(d.frames);
      const c = new Int32Array(d.ctl);
      const errors = [];
      let refused = 0;
      parentPort.postMessage("ready");
      while (Atomics.load(c, 1) === 0) Atomics.wait(c, 1, 0, 100);
      const deadline = Date.now() + 20000;
      for (let n = 0; n < d.iterations || ((Atomics.load(c, 2) === 0 || refused === 0) && Date.now() < deadline); n++) {
        for (const ref of d.refs) {
          if (g.queryForeignAccess(table, ref) !== 0) errors.push("in use after end: ref " + ref);
          g.grantForeignAccess(table, ref, 2, ref % 4, ref % 2 === 1);
        }
        for (const ref of d.refs) {
          // While it waits, the guest flips a bit it owns (GTF_PAT) with atomic RMWs, as Linux
          // flips GTF_readonly on a live grant: the hypervisor must never undo or redo it.
          const w = table.words(ref);
          const i = g.wordIndex(ref);
          for (;;) {
            if ((Atomics.load(w, i) & g.GTF.PAT) !== 0) errors.push("PAT clear lost: ref " + ref);
            if (g.endForeignAccess(table, ref)) break;
            refused++;
            Atomics.store(c, 3, refused);
            Atomics.or(w, i, g.GTF.PAT);
            if ((Atomics.load(w, i) & g.GTF.PAT) === 0) errors.push("PAT set lost: ref " + ref);
            Atomics.and(w, i, ~g.GTF.PAT);
          }
        }
      }
      Atomics.store(c, 0, 1);
      parentPort.postMessage({ errors, refused });`;
    const worker = new Worker(boot, {
      eval: true,
      workerData: { frames: d1.grantFrames, ctl, refs, iterations },
    });
    try {
      const messages: unknown[] = [];
      let wake: (() => void) | undefined;
      worker.on("message", (m: unknown) => {
        messages.push(m);
        wake?.();
      });
      const next = async (): Promise<unknown> => {
        while (messages.length === 0) {
          await new Promise<void>((res, rej) => {
            wake = res;
            worker.once("error", rej);
          });
        }
        return messages.shift();
      };
      assert.equal(await next(), "ready");
      Atomics.store(c, 1, 1);
      Atomics.notify(c, 1);

      const errors: string[] = [];
      const statuses = new Map<number, number>();
      const deadline = Date.now() + 20_000;
      while (Atomics.load(c, 0) === 0 && Date.now() < deadline) {
        const held: [number, number, boolean][] = [];
        for (const ref of refs) {
          const ro = ref % 2 === 1;
          const r = gt.mapGrantRef(2, { dom: 1, ref, flags: ro ? HOST_RO : HOST });
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          if (r.status === GNTST.okay) {
            Atomics.store(c, 2, 1);
            if (r.page !== d1.pages[ref % 4]) errors.push(`wrong page for ref ${ref}`);
            held.push([ref, r.handle, ro]);
          } else if (r.status !== GNTST.general_error) {
            errors.push(`map of ref ${ref} gave ${r.status}`);
          }
          if (ro && gt.mapGrantRef(2, { dom: 1, ref, flags: HOST }).status !== GNTST.general_error) {
            errors.push(`read-only ref ${ref} mapped writable`);
          }
        }
        for (const [ref, handle, ro] of held) {
          const want = PA | GTF.reading | (ro ? GTF.readonly : GTF.writing);
          if ((t1.flags(ref) & ~GTF.PAT) !== want)
            errors.push(`ref ${ref} flags ${t1.flags(ref)} while mapped`);
          if (gt.unmapGrantRef(2, handle) !== GNTST.okay) errors.push(`unmap of ref ${ref} failed`);
          if (queryForeignAccess(t1, ref) !== 0) errors.push(`ref ${ref} still in use after unmap`);
        }
      }
      const result = (await next()) as { errors: string[]; refused: number };
      assert.deepEqual([...errors, ...result.errors].slice(0, 5), []);
      assert.ok((statuses.get(GNTST.okay) ?? 0) > 0, "some maps succeeded");
      assert.ok(result.refused > 0, "the worker met some mapped refs");
      for (const ref of refs) assert.equal(t1.flags(ref), 0);
    } finally {
      await worker.terminate();
    }
  });
});

describe("invariants over random operation sequences (fast-check)", () => {
  type Op =
    | { k: "grant"; ref: number; to: number; ro: boolean }
    | { k: "end"; ref: number }
    | { k: "map"; by: number; ref: number; ro: boolean; dev: boolean }
    | { k: "unmap"; pick: number }
    | { k: "copy"; by: number; ref: number; write: boolean };
  const REFS = [8, 9, 10];
  const ref = fc.constantFrom(...REFS);
  const dom = fc.constantFrom(2, 3);
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ k: fc.constant("grant" as const), ref, to: dom, ro: fc.boolean() }),
    fc.record({ k: fc.constant("end" as const), ref }),
    fc.record({ k: fc.constant("map" as const), by: dom, ref, ro: fc.boolean(), dev: fc.boolean() }),
    fc.record({ k: fc.constant("unmap" as const), pick: fc.nat(20) }),
    fc.record({ k: fc.constant("copy" as const), by: dom, ref, write: fc.boolean() }),
  );

  it("keeps GTF_reading set iff pinned, GTF_writing iff write-pinned, end-access ok iff unpinned", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const { gt, t1 } = world();
        // The model: what the granter granted, and the live mappings.
        const granted = new Map<number, { to: number; ro: boolean }>();
        const live: { by: number; handle: number; ref: number; ro: boolean }[] = [];
        const pinnedBy = (r: number) => live.find((m) => m.ref === r)?.by;
        for (const o of ops) {
          switch (o.k) {
            case "grant":
              // A correct guest grants only a free ref (re-granting a live one is a guest bug).
              if (!granted.has(o.ref)) {
                grantForeignAccess(t1, o.ref, o.to, o.ref - 8, o.ro);
                granted.set(o.ref, { to: o.to, ro: o.ro });
              }
              break;
            case "end": {
              const ok = endForeignAccess(t1, o.ref);
              assert.equal(ok, pinnedBy(o.ref) === undefined);
              if (ok) granted.delete(o.ref);
              break;
            }
            case "map": {
              const flags = (o.dev ? GNTMAP.device_map : GNTMAP.host_map) | (o.ro ? GNTMAP.readonly : 0);
              const r = gt.mapGrantRef(o.by, { dom: 1, ref: o.ref, flags });
              const g = granted.get(o.ref);
              const holder = pinnedBy(o.ref);
              const ok =
                g !== undefined &&
                g.to === o.by &&
                (o.ro || !g.ro) &&
                (holder === undefined || holder === o.by);
              assert.equal(r.status, ok ? GNTST.okay : GNTST.general_error);
              if (r.status === GNTST.okay) live.push({ by: o.by, handle: r.handle, ref: o.ref, ro: o.ro });
              break;
            }
            case "unmap": {
              if (live.length === 0) break;
              const [m] = live.splice(o.pick % live.length, 1);
              assert.equal(gt.unmapGrantRef(m!.by, m!.handle), GNTST.okay);
              assert.equal(gt.unmapGrantRef(m!.by, m!.handle), GNTST.bad_handle);
              break;
            }
            case "copy": {
              const before = t1.flags(o.ref);
              const self = { u: 0, domid: DOMID_SELF, offset: 0 };
              const grant = { u: o.ref, domid: 1, offset: 0 };
              const r = gt.copy(
                o.by,
                o.write
                  ? { source: self, dest: grant, len: 16, flags: GNTCOPY.dest_gref }
                  : { source: grant, dest: self, len: 16, flags: GNTCOPY.source_gref },
              );
              const g = granted.get(o.ref);
              const holder = pinnedBy(o.ref);
              const ok =
                g !== undefined &&
                g.to === o.by &&
                (!o.write || !g.ro) &&
                (holder === undefined || holder === o.by);
              assert.equal(r, ok ? GNTST.okay : GNTST.general_error);
              assert.equal(t1.flags(o.ref), before, "a copy leaves the flags as it found them");
              break;
            }
          }
          for (const r of REFS) {
            const pins = live.filter((m) => m.ref === r);
            const f = t1.flags(r);
            assert.equal((f & GTF.reading) !== 0, pins.length > 0, `reading on ref ${r}`);
            assert.equal(
              (f & GTF.writing) !== 0,
              pins.some((m) => !m.ro),
              `writing on ref ${r}`,
            );
            const p = gt.pinsOf(1, r);
            const count = p ? p.hostRead + p.hostWrite + p.devRead + p.devWrite : 0;
            assert.equal(count, pins.length, `pin count on ref ${r}`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
