/**
 * Byte offsets of the blkif ring entries (`io/blkif.h`, x86_64 ABI), for ring sizing and tests.
 * Offsets only: the block issue owns the request/response codec.
 */

/** `struct blkif_request` (112 bytes, 8-byte aligned). */
export const BLKIF_REQUEST = {
  size: 112,
  operation: 0,
  nrSegments: 1,
  handle: 2,
  id: 8,
  sectorNumber: 16,
  /** First `struct blkif_request_segment`. */
  seg: 24,
  maxSegments: 11,
} as const;

/** `struct blkif_request_segment` (8 bytes), relative to its start. */
export const BLKIF_SEGMENT = {
  size: 8,
  gref: 0,
  firstSect: 4,
  lastSect: 5,
} as const;

/** `struct blkif_response` (16 bytes). */
export const BLKIF_RESPONSE = {
  size: 16,
  id: 0,
  operation: 8,
  status: 10,
} as const;

/** Size of `union blkif_sring_entry`: 32 entries in a one-page ring. */
export const BLKIF_ENTRY_SIZE = 112;
