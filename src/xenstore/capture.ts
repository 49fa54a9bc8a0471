/**
 * The record of one XenStore packet in a capture (`xenlab up --pcap`, link type
 * LINKTYPE_USER0): a 12-byte xenlab header saying who sent it and which way it went, then the
 * packet exactly as on the wire (the 16-byte `xsd_sockmsg` header and the payload). Pure.
 * wireshark/xenstore.lua decodes it.
 *
 *   off size  field
 *     0   1   version (1)
 *     1   1   direction: 0 = request to xenstored, 1 = from xenstored (a reply or a watch event)
 *     2   1   transport: 0 = a Unix-socket client (or the host's in-process toolstack), 1 = a ring
 *     3   1   0
 *     4   2   domid of the connection (LE): 0 for socket clients
 *     6   2   0
 *     8   4   connection id (LE), as the trace file names it (0x…): stable for a connection's life
 *    12  16   xsd_sockmsg: type, req_id, tx_id, len (LE)
 *    28 len   payload
 *
 * Example: dom1 asking READ "name\0" with req_id 7 over its ring, connection 3, is
 * `01 00 01 00 01 00 00 00 03 00 00 00` then `02 00 00 00 07 00 00 00 00 00 00 00 05 00 00 00
 * 6e 61 6d 65 00`: 33 bytes.
 */
import type { Connection } from "./daemon.ts";
import { HEADER_SIZE, type XsPacket } from "./wire.ts";

export const CAPTURE_VERSION = 1;
export const CAPTURE_HEADER_SIZE = 12;

export const CaptureDirection = { toXenstored: 0, fromXenstored: 1 } as const;
export const CaptureTransport = { socket: 0, ring: 1 } as const;

/** The length of `p`'s capture record. */
export function captureRecordLength(p: XsPacket): number {
  return CAPTURE_HEADER_SIZE + HEADER_SIZE + p.payload.byteLength;
}

/**
 * Writes `p`'s capture record, seen going `dir` on `conn` (`IN`: a request, `OUT`: sent to it),
 * at `off` of `bytes` (`dv` over the same buffer), `captureRecordLength(p)` bytes.
 */
export function writeCaptureRecord(
  bytes: Uint8Array,
  dv: DataView,
  off: number,
  dir: "IN" | "OUT",
  conn: Connection,
  p: XsPacket,
): void {
  const len = p.payload.byteLength;
  dv.setUint8(off, CAPTURE_VERSION);
  dv.setUint8(off + 1, dir === "IN" ? CaptureDirection.toXenstored : CaptureDirection.fromXenstored);
  dv.setUint8(off + 2, conn.ring ? CaptureTransport.ring : CaptureTransport.socket);
  dv.setUint8(off + 3, 0);
  dv.setUint16(off + 4, conn.domid, true);
  dv.setUint16(off + 6, 0, true);
  dv.setUint32(off + 8, conn.id, true);
  const h = off + CAPTURE_HEADER_SIZE;
  dv.setUint32(h, p.type >>> 0, true);
  dv.setUint32(h + 4, p.reqId >>> 0, true);
  dv.setUint32(h + 8, p.txId >>> 0, true);
  dv.setUint32(h + 12, len, true);
  bytes.set(p.payload, h + HEADER_SIZE);
}

/** The capture record of `p`, seen going `dir` on `conn`, in a new array. */
export function captureRecord(dir: "IN" | "OUT", conn: Connection, p: XsPacket): Uint8Array {
  const rec = new Uint8Array(captureRecordLength(p));
  writeCaptureRecord(rec, new DataView(rec.buffer), 0, dir, conn, p);
  return rec;
}
