/**
 * The rings of the live view (docs/live-view.md), read where they live: in the pages the
 * hypervisor holds. A device ring's page is found from its frontend's `ring-ref` key (the grant
 * → its frame in the granter's memory); the XenStore and console byte rings are each domain's
 * store and console pages. Reading costs the domains nothing: no message to a worker, no field
 * in a driver, only Atomics loads of the indexes, as a peer would read them.
 *
 * The shared indexes are what the page holds. The private ones (req_prod_pvt, rsp_cons,
 * req_cons, rsp_prod_pvt) live in each driver's thread and are not shown; for a ring at rest
 * they equal the shared producer indexes.
 */
import { BLKIF_ENTRY_SIZE, BLKIF_OP, decodeRequest, decodeResponse } from "../drivers/blk/blkif.ts";
import type { Hypervisor } from "../hv/hypervisor.ts";
import { type ByteRingLayout, CONSOLE_INTERFACE, XENSTORE_INTERFACE } from "../ring/byte-ring.ts";
import { ringSize, SRING } from "../ring/ring.ts";
import type { LiveRing } from "../web/protocol.ts";
import { pageBytes, XEN_PAGE_SIZE } from "../xen/xen.ts";

/** How many of the newest slots a ring shows. */
const LAST = 4;

/** A slot decoder: request (true) or response, from the slot's bytes. */
type Decode = (slot: Uint8Array, request: boolean) => string;

const OP_NAMES = new Map<number, string>(Object.entries(BLKIF_OP).map(([k, v]) => [v, k]));

/** blkif (src/drivers/blk/blkif.ts). */
const blkif: Decode = (slot, request) => {
  if (request) {
    const r = decodeRequest(slot);
    const op = OP_NAMES.get(r.operation) ?? String(r.operation);
    const sector = "sectorNumber" in r ? ` sector ${r.sectorNumber}` : "";
    const segs = "nrSegments" in r ? ` ${r.nrSegments} seg` : "";
    return `req id ${r.id} ${op}${sector}${segs}`;
  }
  const r = decodeResponse(slot);
  return `rsp id ${r.id} ${OP_NAMES.get(r.operation) ?? r.operation} status ${r.status}`;
};

/**
 * The alice_dev ping ring of examples/alice-connected (its protocol.ts: 16-byte entries,
 * u32 id, u32 op | i32 status, u64 value).
 */
const alice: Decode = (slot, request) => {
  const v = new DataView(slot.buffer, slot.byteOffset, slot.byteLength);
  const id = v.getUint32(0, true);
  const value = v.getBigUint64(8, true);
  return request
    ? `req id ${id} ${v.getUint32(4, true) === 1 ? "ping" : `op ${v.getUint32(4, true)}`} value ${value}`
    : `rsp id ${id} status ${v.getInt32(4, true)} value ${value}`;
};

const hex: Decode = (slot, request) =>
  `${request ? "req" : "rsp"} ${Array.from(slot.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("")}`;

/** Entry size and decoder by device type; others: 64-byte entries shown as hex. */
const PROTOCOLS = new Map<string, { entrySize: number; decode: Decode }>([
  ["vbd", { entrySize: BLKIF_ENTRY_SIZE, decode: blkif }],
  ["alice_dev", { entrySize: 16, decode: alice }],
]);

/** An io/ring.h ring of a device, on the page `page` (its first page for a multi-page ring). */
export function ioRing(
  page: SharedArrayBuffer,
  type: string,
  id: string,
  domid: number,
  where: string,
  key: string,
): LiveRing {
  const p = PROTOCOLS.get(type) ?? { entrySize: 64, decode: hex };
  const idx = new Uint32Array(page, 0, 4);
  const reqProd = Atomics.load(idx, SRING.reqProd / 4);
  const reqEvent = Atomics.load(idx, SRING.reqEvent / 4);
  const rspProd = Atomics.load(idx, SRING.rspProd / 4);
  const rspEvent = Atomics.load(idx, SRING.rspEvent / 4);
  const size = ringSize(XEN_PAGE_SIZE, p.entrySize);
  const bytes = pageBytes(page);
  const last: string[] = [];
  // A slot holds request i until the response to i overwrites it (the entry is a union).
  const outstanding = (reqProd - rspProd) >>> 0;
  for (let k = Math.min(LAST, size) - 1; k >= 0; k--) {
    const i = (reqProd - 1 - k) >>> 0;
    if (k >= reqProd) continue; // before the first request
    const off = SRING.entries + (i & (size - 1)) * p.entrySize;
    const slot = bytes.slice(off, off + p.entrySize);
    const isRequest = (reqProd - i) >>> 0 <= outstanding;
    try {
      last.push(`[${i}] ${p.decode(slot, isRequest)}`);
    } catch {
      last.push(`[${i}] ${hex(slot, isRequest)}`);
    }
  }
  return {
    id,
    kind: "io",
    domid,
    where,
    key,
    indexes: { req_prod: reqProd, req_event: reqEvent, rsp_prod: rspProd, rsp_event: rspEvent },
    size,
    free: size - outstanding,
    last,
  };
}

function byteRing(page: SharedArrayBuffer, l: ByteRingLayout): { cons: number; prod: number; text: string } {
  const w = new Uint32Array(page, 0, page.byteLength >>> 2);
  const cons = Atomics.load(w, l.cons / 4);
  const prod = Atomics.load(w, l.prod / 4);
  const bytes = new Uint8Array(page, l.data, l.size);
  let text = "";
  const n = Math.min((prod - cons) >>> 0 || Math.min(prod, 48), 48, l.size);
  for (let i = (prod - n) >>> 0; i !== prod; i = (i + 1) >>> 0) {
    const b = bytes[i & (l.size - 1)]!;
    text += b >= 32 && b < 127 ? String.fromCharCode(b) : b === 0 ? "·" : ".";
  }
  return { cons, prod, text };
}

/** A domain's XenStore ring (its store page) and its console ring. */
export function domainRings(hv: Hypervisor, domid: number): LiveRing[] {
  const info = hv.info(domid);
  if (info === undefined) return [];
  const out: LiveRing[] = [];
  const store = hv.page(domid, info.store.gfn);
  if (store !== undefined && domid !== 0) {
    const req = byteRing(store, XENSTORE_INTERFACE.req);
    const rsp = byteRing(store, XENSTORE_INTERFACE.rsp);
    out.push({
      id: `xenstore/${domid}`,
      kind: "xenstore",
      domid,
      where: `store page (gfn ${info.store.gfn}) of dom${domid}`,
      indexes: { req_cons: req.cons, req_prod: req.prod, rsp_cons: rsp.cons, rsp_prod: rsp.prod },
      size: XENSTORE_INTERFACE.req.size,
      free: XENSTORE_INTERFACE.req.size - ((req.prod - req.cons) >>> 0),
      last: [`req …${req.text}`, `rsp …${rsp.text}`],
    });
  }
  const con = hv.page(domid, info.console.gfn);
  if (con !== undefined && domid !== 0) {
    const o = byteRing(con, CONSOLE_INTERFACE.out);
    const i = byteRing(con, CONSOLE_INTERFACE.in);
    out.push({
      id: `console/${domid}`,
      kind: "console",
      domid,
      where: `console page (gfn ${info.console.gfn}) of dom${domid}`,
      indexes: { out_cons: o.cons, out_prod: o.prod, in_cons: i.cons, in_prod: i.prod },
      size: CONSOLE_INTERFACE.out.size,
      free: CONSOLE_INTERFACE.out.size - ((o.prod - o.cons) >>> 0),
      last: [`out …${o.text}`],
    });
  }
  return out;
}
