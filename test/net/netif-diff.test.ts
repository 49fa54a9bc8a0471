/**
 * Differential test: src/drivers/net/netif.ts against Xen's own structs.
 *
 * test/net/c/netif_diff.c is built with gcc against /usr/include/xen/io/netif.h (Debian
 * libxen-dev). It prints the structs' layout (sizeof, offsetof, the constants, the ring sizes),
 * then the bytes of each entry it is asked to build. The TypeScript accessors the drivers call must
 * write the same bytes for fast-check's random fields, and read C's bytes back to them.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  decodeExtra,
  NETIF_EXTRA_INFO as EX,
  NETIF_RSP,
  NETIF_RX_ENTRY_SIZE,
  NETIF_RX_REQUEST,
  NETIF_RX_RESPONSE,
  NETIF_TX_ENTRY_SIZE,
  NETIF_TX_REQUEST,
  NETIF_TX_RESPONSE,
  NETRXF,
  NETTXF,
  rxRequestGref,
  rxRequestId,
  rxResponseFlags,
  rxResponseId,
  rxResponseOffset,
  rxResponseStatus,
  txRequestFlags,
  txRequestGref,
  txRequestId,
  txRequestOffset,
  txRequestSize,
  txResponseId,
  txResponseStatus,
  writeExtraGso,
  writeExtraHash,
  writeExtraMcast,
  writeRxRequest,
  writeRxResponse,
  writeTxRequest,
  writeTxResponse,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE,
  XEN_NETIF_GSO_TYPE,
  XEN_NETIF_MAX_TX_SIZE,
  XEN_NETIF_NR_SLOTS_MIN,
} from "../../src/drivers/net/netif.ts";
import { ringSize } from "../../src/ring/ring.ts";
import { cReference } from "../helpers/c-reference.ts";

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), "c/netif_diff.c");
const REFERENCE = { source: SOURCE, headers: ["/usr/include/xen/io/netif.h"] };

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
const fromHex = (s: string) => new DataView(new Uint8Array(Buffer.from(s, "hex")).buffer);

const u8 = fc.integer({ min: 0, max: 255 });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const i16 = fc.integer({ min: -32768, max: 32767 });

describe("netif codec against io/netif.h (gcc)", () => {
  it("has the C layout: sizes, offsets, constants and ring sizes", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const c = Object.fromEntries(
      bin
        .run([])[0]!
        .trim()
        .split(" ")
        .map((kv) => kv.split("=") as [string, string]),
    );
    const ts: Record<string, number> = {
      tx_entry: NETIF_TX_ENTRY_SIZE,
      rx_entry: NETIF_RX_ENTRY_SIZE,
      tx_request: NETIF_TX_REQUEST.size,
      tx_response: NETIF_TX_RESPONSE.size,
      rx_request: NETIF_RX_REQUEST.size,
      rx_response: NETIF_RX_RESPONSE.size,
      extra: EX.size,
      "netif_tx_request.gref": NETIF_TX_REQUEST.gref,
      "netif_tx_request.offset": NETIF_TX_REQUEST.offset,
      "netif_tx_request.flags": NETIF_TX_REQUEST.flags,
      "netif_tx_request.id": NETIF_TX_REQUEST.id,
      "netif_tx_request.size": NETIF_TX_REQUEST.sizeField,
      "netif_tx_response.id": NETIF_TX_RESPONSE.id,
      "netif_tx_response.status": NETIF_TX_RESPONSE.status,
      "netif_rx_request.id": NETIF_RX_REQUEST.id,
      "netif_rx_request.pad": NETIF_RX_REQUEST.pad,
      "netif_rx_request.gref": NETIF_RX_REQUEST.gref,
      "netif_rx_response.id": NETIF_RX_RESPONSE.id,
      "netif_rx_response.offset": NETIF_RX_RESPONSE.offset,
      "netif_rx_response.flags": NETIF_RX_RESPONSE.flags,
      "netif_rx_response.status": NETIF_RX_RESPONSE.status,
      "netif_extra_info.type": EX.type,
      "netif_extra_info.flags": EX.flags,
      "netif_extra_info.u": EX.u,
      "netif_extra_info.u.gso.size": EX.gsoSize,
      "netif_extra_info.u.gso.type": EX.gsoType,
      "netif_extra_info.u.gso.pad": EX.gsoPad,
      "netif_extra_info.u.gso.features": EX.gsoFeatures,
      "netif_extra_info.u.mcast.addr": EX.mcastAddr,
      "netif_extra_info.u.hash.type": EX.hashType,
      "netif_extra_info.u.hash.algorithm": EX.hashAlgorithm,
      "netif_extra_info.u.hash.value": EX.hashValue,
      tx_csum_blank: NETTXF.csumBlank,
      tx_data_validated: NETTXF.dataValidated,
      tx_more_data: NETTXF.moreData,
      tx_extra_info: NETTXF.extraInfo,
      rx_data_validated: NETRXF.dataValidated,
      rx_csum_blank: NETRXF.csumBlank,
      rx_more_data: NETRXF.moreData,
      rx_extra_info: NETRXF.extraInfo,
      rx_gso_prefix: NETRXF.gsoPrefix,
      extra_gso: XEN_NETIF_EXTRA_TYPE.gso,
      extra_mcast_add: XEN_NETIF_EXTRA_TYPE.mcastAdd,
      extra_mcast_del: XEN_NETIF_EXTRA_TYPE.mcastDel,
      extra_hash: XEN_NETIF_EXTRA_TYPE.hash,
      extra_max: XEN_NETIF_EXTRA_TYPE.max,
      extra_more: XEN_NETIF_EXTRA_FLAG_MORE,
      gso_tcpv4: XEN_NETIF_GSO_TYPE.tcpv4,
      gso_tcpv6: XEN_NETIF_GSO_TYPE.tcpv6,
      rsp_dropped: NETIF_RSP.dropped,
      rsp_error: NETIF_RSP.error,
      rsp_okay: NETIF_RSP.okay,
      rsp_null: NETIF_RSP.null,
      max_tx_size: XEN_NETIF_MAX_TX_SIZE,
      slots_min: XEN_NETIF_NR_SLOTS_MIN,
      tx_ring: ringSize(4096, NETIF_TX_ENTRY_SIZE),
      rx_ring: ringSize(4096, NETIF_RX_ENTRY_SIZE),
    };
    assert.deepEqual(Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Number(v)])), ts);
  });

  it("writes and reads TX requests and responses as C", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const reqs = fc.sample(fc.tuple(u32, u16, u16, u16, u16), { numRuns: 300, seed: 1 });
    const rsps = fc.sample(fc.tuple(u16, i16), { numRuns: 200, seed: 2 });
    const out = bin.run([
      ...reqs.map((r) => `txreq ${r.join(" ")}`),
      ...rsps.map((r) => `txrsp ${r.join(" ")}`),
    ]);
    const buf = new Uint8Array(NETIF_TX_ENTRY_SIZE);
    const v = new DataView(buf.buffer);
    reqs.forEach(([gref, offset, flags, id, size], i) => {
      buf.fill(0);
      writeTxRequest(v, gref, offset, flags, id, size);
      const line = out[1 + i]!;
      assert.equal(hex(buf), line);
      const c = fromHex(line);
      assert.deepEqual(
        [txRequestGref(c), txRequestOffset(c), txRequestFlags(c), txRequestId(c), txRequestSize(c)],
        [gref, offset, flags, id, size],
      );
    });
    rsps.forEach(([id, status], i) => {
      buf.fill(0);
      writeTxResponse(v, id, status);
      const line = out[1 + reqs.length + i]!;
      assert.equal(hex(buf), line);
      const c = fromHex(line);
      assert.deepEqual([txResponseId(c), txResponseStatus(c)], [id, status]);
    });
  });

  it("writes and reads RX requests and responses as C", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const reqs = fc.sample(fc.tuple(u16, u32), { numRuns: 200, seed: 3 });
    const rsps = fc.sample(fc.tuple(u16, u16, u16, i16), { numRuns: 200, seed: 4 });
    const out = bin.run([
      ...reqs.map((r) => `rxreq ${r.join(" ")}`),
      ...rsps.map((r) => `rxrsp ${r.join(" ")}`),
    ]);
    const buf = new Uint8Array(NETIF_RX_ENTRY_SIZE);
    const v = new DataView(buf.buffer);
    reqs.forEach(([id, gref], i) => {
      buf.fill(0xa5); // the writer clears the padding
      writeRxRequest(v, id, gref);
      const line = out[1 + i]!;
      assert.equal(hex(buf), line);
      const c = fromHex(line);
      assert.deepEqual([rxRequestId(c), rxRequestGref(c)], [id, gref]);
    });
    rsps.forEach(([id, offset, flags, status], i) => {
      writeRxResponse(v, id, offset, flags, status);
      const line = out[1 + reqs.length + i]!;
      assert.equal(hex(buf), line);
      const c = fromHex(line);
      assert.deepEqual(
        [rxResponseId(c), rxResponseOffset(c), rxResponseFlags(c), rxResponseStatus(c)],
        [id, offset, flags, status],
      );
    });
  });

  it("writes and decodes extra-info slots (GSO, multicast, hash) as C", (t) => {
    const bin = cReference(t, REFERENCE);
    if (bin === undefined) return;
    const gso = fc.sample(fc.tuple(u8, u16, u8, u16), { numRuns: 100, seed: 5 });
    const mcast = fc.sample(
      fc.tuple(fc.constantFrom(2 as const, 3 as const), u8, fc.array(u8, { minLength: 6, maxLength: 6 })),
      {
        numRuns: 100,
        seed: 6,
      },
    );
    const hash = fc.sample(fc.tuple(u8, u8, u8, fc.array(u8, { minLength: 4, maxLength: 4 })), {
      numRuns: 100,
      seed: 7,
    });
    const out = bin
      .run([
        ...gso.map((g) => `gso ${g.join(" ")}`),
        ...mcast.map(([ty, fl, a]) => `mcast ${ty} ${fl} ${a.join(" ")}`),
        ...hash.map(([fl, ty, al, val]) => `hash ${fl} ${ty} ${al} ${val.join(" ")}`),
      ])
      .slice(1);
    // An extra slot sits in a 12-byte TX request slot: the writer touches its first 8 bytes only.
    const buf = new Uint8Array(NETIF_TX_ENTRY_SIZE);
    const v = new DataView(buf.buffer);
    const eight = () => hex(buf.subarray(0, EX.size));
    let n = 0;
    for (const [flags, size, type, features] of gso) {
      buf.fill(0xa5);
      writeExtraGso(v, flags, size, type, features);
      assert.equal(eight(), out[n]);
      assert.deepEqual(decodeExtra(fromHex(out[n++]!)), {
        type: 1,
        flags,
        gso: { size, type, pad: 0, features },
      });
    }
    for (const [type, flags, addr] of mcast) {
      buf.fill(0xa5);
      writeExtraMcast(v, type, flags, Uint8Array.from(addr));
      assert.equal(eight(), out[n]);
      assert.deepEqual(decodeExtra(fromHex(out[n++]!)), { type, flags, mcast: Uint8Array.from(addr) });
    }
    for (const [flags, type, algorithm, value] of hash) {
      buf.fill(0xa5);
      writeExtraHash(v, flags, type, algorithm, Uint8Array.from(value));
      assert.equal(eight(), out[n]);
      assert.deepEqual(decodeExtra(fromHex(out[n++]!)), {
        type: 4,
        flags,
        hash: { type, algorithm, value: Uint8Array.from(value) },
      });
    }
  });
});
