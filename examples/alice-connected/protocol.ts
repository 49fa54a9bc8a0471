/**
 * The alice_dev protocol of the connected example: one ring page, io/ring.h layout, 16-byte
 * entries, as C would declare them:
 *
 *   struct alice_request  { uint32_t id; uint32_t op;     uint64_t value; };   op 1: ping
 *   struct alice_response { uint32_t id; int32_t status;  uint64_t value; };   value + 1
 *
 * The frontend tells the backend where the ring is with two keys in its own directory; the
 * generic keys (`state`, `backend`, …) are XenBus's.
 */

/** The frontend's keys for the backend: the ring's grant ref and the event channel's port. */
export const AliceKey = {
  ringRef: "ring-ref",
  eventChannel: "event-channel",
} as const;

export const ENTRY_SIZE = 16;
export const ALICE_OP_PING = 1;

export interface AliceMessage {
  id: number;
  /** op in a request, status in a response */
  code: number;
  value: bigint;
}

export function writeMessage(slot: Uint8Array, m: AliceMessage): void {
  const v = new DataView(slot.buffer, slot.byteOffset, ENTRY_SIZE);
  v.setUint32(0, m.id, true);
  v.setInt32(4, m.code, true);
  v.setBigUint64(8, m.value, true);
}

export function readMessage(slot: Uint8Array): AliceMessage {
  const v = new DataView(slot.buffer, slot.byteOffset, ENTRY_SIZE);
  return { id: v.getUint32(0, true), code: v.getInt32(4, true), value: v.getBigUint64(8, true) };
}
