/**
 * The netif wire format (Xen's `io/netif.h`, x86_64): the TX and RX ring entries, the extra-info
 * slot, and the protocol's constants. Pure: fields in and out of a DataView over one ring entry.
 * Checked byte for byte against the C structs by test/net/netif-diff.test.ts (gcc against
 * /usr/include/xen/io/netif.h).
 *
 * Layouts (offsets in bytes):
 *
 *   netif_tx_request    gref u32 @0, offset u16 @4, flags u16 @6, id u16 @8, size u16 @10   12 bytes
 *   netif_tx_response   id u16 @0, status i16 @2                                             4 bytes
 *   netif_rx_request    id u16 @0, pad u16 @2, gref u32 @4                                   8 bytes
 *   netif_rx_response   id u16 @0, offset u16 @2, flags u16 @4, status i16 @6                8 bytes
 *   netif_extra_info    type u8 @0, flags u8 @1, then the union @2:                          8 bytes
 *                         gso   size u16 @2, type u8 @4, pad u8 @5, features u16 @6
 *                         mcast addr[6] @2
 *                         hash  type u8 @2, algorithm u8 @3, value[4] @4 (LSB first)
 *
 * A TX ring entry is the 12-byte union (256 entries on a page); an RX entry the 8-byte union (256).
 * An extra-info slot sits in a TX request slot (the frontend's extras) or an RX response slot (the
 * backend's), so its accessors take the same DataView.
 *
 * TX and RX swap the bits of csum_blank and data_validated: NETTXF_csum_blank is bit 0, but
 * NETRXF_csum_blank is bit 1.
 */

/** Bytes of one TX ring entry (`union netif_tx_sring_entry`). */
export const NETIF_TX_ENTRY_SIZE = 12;
/** Bytes of one RX ring entry (`union netif_rx_sring_entry`). */
export const NETIF_RX_ENTRY_SIZE = 8;

export const NETIF_TX_REQUEST = { size: 12, gref: 0, offset: 4, flags: 6, id: 8, sizeField: 10 } as const;
export const NETIF_TX_RESPONSE = { size: 4, id: 0, status: 2 } as const;
export const NETIF_RX_REQUEST = { size: 8, id: 0, pad: 2, gref: 4 } as const;
export const NETIF_RX_RESPONSE = { size: 8, id: 0, offset: 2, flags: 4, status: 6 } as const;
export const NETIF_EXTRA_INFO = {
  size: 8,
  type: 0,
  flags: 1,
  u: 2,
  gsoSize: 2,
  gsoType: 4,
  gsoPad: 5,
  gsoFeatures: 6,
  mcastAddr: 2,
  hashType: 2,
  hashAlgorithm: 3,
  hashValue: 4,
} as const;

/** `NETTXF_*`: flags of a TX request. */
export const NETTXF = {
  csumBlank: 1 << 0,
  dataValidated: 1 << 1,
  moreData: 1 << 2,
  extraInfo: 1 << 3,
} as const;
/** `NETRXF_*`: flags of an RX response (csum bits swapped against TX). */
export const NETRXF = {
  dataValidated: 1 << 0,
  csumBlank: 1 << 1,
  moreData: 1 << 2,
  extraInfo: 1 << 3,
  gsoPrefix: 1 << 4,
} as const;

/** `XEN_NETIF_EXTRA_TYPE_*` (Xen's header stops at HASH; Linux's adds XDP = 5). */
export const XEN_NETIF_EXTRA_TYPE = { none: 0, gso: 1, mcastAdd: 2, mcastDel: 3, hash: 4, max: 5 } as const;
/** `XEN_NETIF_EXTRA_FLAG_MORE`: another extra slot follows. */
export const XEN_NETIF_EXTRA_FLAG_MORE = 1 << 0;
/** `XEN_NETIF_GSO_TYPE_*`. */
export const XEN_NETIF_GSO_TYPE = { none: 0, tcpv4: 1, tcpv6: 2 } as const;

/** `NETIF_RSP_*`. In an RX response a positive status is the byte count of the slot. */
export const NETIF_RSP = { dropped: -2, error: -1, okay: 0, null: 1 } as const;

/** `XEN_NETIF_MAX_TX_SIZE`: the largest frame a TX request chain may announce. */
export const XEN_NETIF_MAX_TX_SIZE = 0xffff;
/** `XEN_NETIF_NR_SLOTS_MIN`: the slots per frame every backend must accept. */
export const XEN_NETIF_NR_SLOTS_MIN = 18;

// ------------------------------------------------------------------ TX request

export function writeTxRequest(
  v: DataView,
  gref: number,
  offset: number,
  flags: number,
  id: number,
  size: number,
): void {
  v.setUint32(NETIF_TX_REQUEST.gref, gref, true);
  v.setUint16(NETIF_TX_REQUEST.offset, offset, true);
  v.setUint16(NETIF_TX_REQUEST.flags, flags, true);
  v.setUint16(NETIF_TX_REQUEST.id, id, true);
  v.setUint16(NETIF_TX_REQUEST.sizeField, size, true);
}
export const txRequestGref = (v: DataView): number => v.getUint32(NETIF_TX_REQUEST.gref, true);
export const txRequestOffset = (v: DataView): number => v.getUint16(NETIF_TX_REQUEST.offset, true);
export const txRequestFlags = (v: DataView): number => v.getUint16(NETIF_TX_REQUEST.flags, true);
export const txRequestId = (v: DataView): number => v.getUint16(NETIF_TX_REQUEST.id, true);
export const txRequestSize = (v: DataView): number => v.getUint16(NETIF_TX_REQUEST.sizeField, true);

// ------------------------------------------------------------------ TX response

/** Writes a TX response; the rest of the 12-byte slot is left as it was, as C's assignment does. */
export function writeTxResponse(v: DataView, id: number, status: number): void {
  v.setUint16(NETIF_TX_RESPONSE.id, id, true);
  v.setInt16(NETIF_TX_RESPONSE.status, status, true);
}
export const txResponseId = (v: DataView): number => v.getUint16(NETIF_TX_RESPONSE.id, true);
export const txResponseStatus = (v: DataView): number => v.getInt16(NETIF_TX_RESPONSE.status, true);

// ------------------------------------------------------------------ RX request

export function writeRxRequest(v: DataView, id: number, gref: number): void {
  v.setUint16(NETIF_RX_REQUEST.id, id, true);
  v.setUint16(NETIF_RX_REQUEST.pad, 0, true);
  v.setUint32(NETIF_RX_REQUEST.gref, gref, true);
}
export const rxRequestId = (v: DataView): number => v.getUint16(NETIF_RX_REQUEST.id, true);
export const rxRequestGref = (v: DataView): number => v.getUint32(NETIF_RX_REQUEST.gref, true);

// ------------------------------------------------------------------ RX response

export function writeRxResponse(
  v: DataView,
  id: number,
  offset: number,
  flags: number,
  status: number,
): void {
  v.setUint16(NETIF_RX_RESPONSE.id, id, true);
  v.setUint16(NETIF_RX_RESPONSE.offset, offset, true);
  v.setUint16(NETIF_RX_RESPONSE.flags, flags, true);
  v.setInt16(NETIF_RX_RESPONSE.status, status, true);
}
export const rxResponseId = (v: DataView): number => v.getUint16(NETIF_RX_RESPONSE.id, true);
export const rxResponseOffset = (v: DataView): number => v.getUint16(NETIF_RX_RESPONSE.offset, true);
export const rxResponseFlags = (v: DataView): number => v.getUint16(NETIF_RX_RESPONSE.flags, true);
export const rxResponseStatus = (v: DataView): number => v.getInt16(NETIF_RX_RESPONSE.status, true);

// ------------------------------------------------------------------ extra info

/** An extra-info slot, decoded by its type; `unknown` keeps the union's six bytes. */
export type NetifExtra =
  | { type: 1; flags: number; gso: { size: number; type: number; pad: number; features: number } }
  | { type: 2 | 3; flags: number; mcast: Uint8Array }
  | { type: 4; flags: number; hash: { type: number; algorithm: number; value: Uint8Array } }
  | { type: number; flags: number; unknown: Uint8Array };

/** Clears the 8 bytes of the extra slot and writes type and flags. */
function extraHead(v: DataView, type: number, flags: number): void {
  for (let i = 0; i < NETIF_EXTRA_INFO.size; i += 4) v.setUint32(i, 0, true);
  v.setUint8(NETIF_EXTRA_INFO.type, type);
  v.setUint8(NETIF_EXTRA_INFO.flags, flags);
}

export function writeExtraGso(
  v: DataView,
  flags: number,
  size: number,
  gsoType: number,
  features: number,
): void {
  extraHead(v, XEN_NETIF_EXTRA_TYPE.gso, flags);
  v.setUint16(NETIF_EXTRA_INFO.gsoSize, size, true);
  v.setUint8(NETIF_EXTRA_INFO.gsoType, gsoType);
  v.setUint16(NETIF_EXTRA_INFO.gsoFeatures, features, true);
}

export function writeExtraMcast(v: DataView, type: 2 | 3, flags: number, addr: Uint8Array): void {
  extraHead(v, type, flags);
  for (let i = 0; i < 6; i++) v.setUint8(NETIF_EXTRA_INFO.mcastAddr + i, addr[i] ?? 0);
}

export function writeExtraHash(
  v: DataView,
  flags: number,
  hashType: number,
  algorithm: number,
  value: Uint8Array,
): void {
  extraHead(v, XEN_NETIF_EXTRA_TYPE.hash, flags);
  v.setUint8(NETIF_EXTRA_INFO.hashType, hashType);
  v.setUint8(NETIF_EXTRA_INFO.hashAlgorithm, algorithm);
  for (let i = 0; i < 4; i++) v.setUint8(NETIF_EXTRA_INFO.hashValue + i, value[i] ?? 0);
}

export const extraType = (v: DataView): number => v.getUint8(NETIF_EXTRA_INFO.type);
export const extraFlags = (v: DataView): number => v.getUint8(NETIF_EXTRA_INFO.flags);
export const extraGsoSize = (v: DataView): number => v.getUint16(NETIF_EXTRA_INFO.gsoSize, true);
export const extraGsoType = (v: DataView): number => v.getUint8(NETIF_EXTRA_INFO.gsoType);

function bytes(v: DataView, off: number, n: number): Uint8Array {
  return new Uint8Array(v.buffer.slice(v.byteOffset + off, v.byteOffset + off + n));
}

/** The extra slot as an object (tools and tests; the drivers read fields in place). */
export function decodeExtra(v: DataView): NetifExtra {
  const type = extraType(v);
  const flags = extraFlags(v);
  switch (type) {
    case XEN_NETIF_EXTRA_TYPE.gso:
      return {
        type,
        flags,
        gso: {
          size: extraGsoSize(v),
          type: extraGsoType(v),
          pad: v.getUint8(NETIF_EXTRA_INFO.gsoPad),
          features: v.getUint16(NETIF_EXTRA_INFO.gsoFeatures, true),
        },
      };
    case XEN_NETIF_EXTRA_TYPE.mcastAdd:
    case XEN_NETIF_EXTRA_TYPE.mcastDel:
      return { type, flags, mcast: bytes(v, NETIF_EXTRA_INFO.mcastAddr, 6) };
    case XEN_NETIF_EXTRA_TYPE.hash:
      return {
        type,
        flags,
        hash: {
          type: v.getUint8(NETIF_EXTRA_INFO.hashType),
          algorithm: v.getUint8(NETIF_EXTRA_INFO.hashAlgorithm),
          value: bytes(v, NETIF_EXTRA_INFO.hashValue, 4),
        },
      };
    default:
      return { type, flags, unknown: bytes(v, NETIF_EXTRA_INFO.u, 6) };
  }
}

/** A status's name, for logs. */
export function netifStatusName(status: number): string {
  switch (status) {
    case NETIF_RSP.dropped:
      return "DROPPED";
    case NETIF_RSP.error:
      return "ERROR";
    case NETIF_RSP.okay:
      return "OKAY";
    case NETIF_RSP.null:
      return "NULL";
    default:
      return String(status);
  }
}
