/**
 * libxenvchan's shared control page (`struct vchan_interface`, Xen's `io/libxenvchan.h`) and its
 * ring-size rules (tools/libs/vchan/init.c), as bytes: pure, no I/O.
 *
 *   off  size  field
 *    0    4    left.cons    the server's read position in the left ring (client → server)
 *    4    4    left.prod    the client's write position in the left ring
 *    8    4    right.cons   the client's read position in the right ring (server → client)
 *   12    4    right.prod   the server's write position in the right ring
 *   16    2    left_order   log2 of the left ring's bytes
 *   18    2    right_order  log2 of the right ring's bytes
 *   20    1    cli_live     0 gone, 1 connected, 2 not yet connected
 *   21    1    srv_live     0 gone, 1 alive
 *   22    1    cli_notify   bits the client acts on (the server sets them)
 *   23    1    srv_notify   bits the server acts on (the client sets them)
 *   24   4×n   grants[]     the left ring's page refs, then the right ring's
 *
 * Where a ring lives depends on its order: 10 at byte 1024 of the control page, 11 at byte 2048,
 * 12 and more in 2^(order−12) pages of their own. Indices are free-running u32 byte counts.
 */
import { XEN_PAGE_SIZE } from "../../xen/xen.ts";

export const VCHAN = {
  leftCons: 0,
  leftProd: 4,
  rightCons: 8,
  rightProd: 12,
  leftOrder: 16,
  rightOrder: 18,
  cliLive: 20,
  srvLive: 21,
  cliNotify: 22,
  srvNotify: 23,
  grants: 24,
} as const;

/** The header's size, before `grants[]`. */
export const VCHAN_HEADER_SIZE = 24;

/** Notification request bits: "tell me when you write", "tell me when you consume". */
export const VCHAN_NOTIFY = { write: 0x1, read: 0x2 } as const;

/** `cli_live` / `srv_live` values. */
export const VCHAN_LIVE = { gone: 0, connected: 1, waiting: 2 } as const;

/** Order 10: the ring sits at byte 1024 of the control page. */
export const SMALL_RING_SHIFT = 10;
/** Order 11: the ring sits at byte 2048 of the control page. */
export const LARGE_RING_SHIFT = 11;
export const SMALL_RING_OFFSET = 1024;
export const LARGE_RING_OFFSET = 2048;
/** The largest ring: 1 MiB. */
export const MAX_RING_SHIFT = 20;
export const MAX_RING_SIZE = 1 << MAX_RING_SHIFT;
const PAGE_SHIFT = 12;

/** The server's pick of orders for a left (it reads) and right (it writes) ring. */
export interface VchanOrders {
  readonly left: number;
  readonly right: number;
}

/** The smallest order ≥ 12 whose ring holds `bytes`. */
function minOrder(bytes: number): number {
  let order = PAGE_SHIFT;
  while (bytes > 2 ** order) order++;
  return order;
}

/**
 * `libxenvchan_server_init`'s choice: both rings inside the control page when they fit (left 1024
 * and right 2048, or the mirror), else the one that fits 2048 in the page and the other in pages
 * of its own, else both in pages. A minimum of 0 means "in the page".
 */
export function serverOrders(leftMin: number, rightMin: number): VchanOrders {
  for (const [name, v] of [
    ["left", leftMin],
    ["right", rightMin],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`Invalid vchan ${name} ring size: ${v}`);
    if (v > MAX_RING_SIZE)
      throw new RangeError(`Cannot make a vchan ${name} ring of ${v} bytes: the largest is ${MAX_RING_SIZE}`);
  }
  const small = 1 << SMALL_RING_SHIFT;
  const large = 1 << LARGE_RING_SHIFT;
  if (leftMin <= small && rightMin <= large) return { left: SMALL_RING_SHIFT, right: LARGE_RING_SHIFT };
  if (leftMin <= large && rightMin <= small) return { left: LARGE_RING_SHIFT, right: SMALL_RING_SHIFT };
  if (leftMin <= large) return { left: LARGE_RING_SHIFT, right: minOrder(rightMin) };
  if (rightMin <= large) return { left: minOrder(leftMin), right: LARGE_RING_SHIFT };
  return { left: minOrder(leftMin), right: minOrder(rightMin) };
}

/**
 * `init_gnt_cli`'s checks of the orders a client reads from the page: each within 10..20, and not
 * both the same in-page slot. Returns why they are refused, or undefined when they are good.
 */
export function orderProblem(orders: VchanOrders): string | undefined {
  for (const [name, o] of [
    ["left_order", orders.left],
    ["right_order", orders.right],
  ] as const) {
    if (o < SMALL_RING_SHIFT || o > MAX_RING_SHIFT)
      return `${name} is ${o}, outside ${SMALL_RING_SHIFT}..${MAX_RING_SHIFT}`;
  }
  if (orders.left === orders.right && orders.left < PAGE_SHIFT)
    return `left_order and right_order are both ${orders.left}: two rings in one slot of the page`;
  return undefined;
}

/** Pages of its own a ring of `order` needs (0: it lives in the control page). */
export function ringPages(order: number): number {
  return order >= PAGE_SHIFT ? 1 << (order - PAGE_SHIFT) : 0;
}

/** Byte offset in the control page of an in-page ring of `order` (10 or 11). */
export function inPageOffset(order: number): number {
  if (order === SMALL_RING_SHIFT) return SMALL_RING_OFFSET;
  if (order === LARGE_RING_SHIFT) return LARGE_RING_OFFSET;
  throw new RangeError(`A vchan ring of order ${order} does not live in the control page`);
}

/** The control page's header fields, decoded (for tests and `why` messages). */
export interface VchanHeader {
  readonly leftCons: number;
  readonly leftProd: number;
  readonly rightCons: number;
  readonly rightProd: number;
  readonly leftOrder: number;
  readonly rightOrder: number;
  readonly cliLive: number;
  readonly srvLive: number;
  readonly cliNotify: number;
  readonly srvNotify: number;
}

export function decodeHeader(page: Uint8Array): VchanHeader {
  if (page.byteLength < XEN_PAGE_SIZE)
    throw new RangeError(`Cannot decode a vchan page: need ${XEN_PAGE_SIZE} bytes, got ${page.byteLength}`);
  const v = new DataView(page.buffer, page.byteOffset, VCHAN_HEADER_SIZE);
  return {
    leftCons: v.getUint32(VCHAN.leftCons, true),
    leftProd: v.getUint32(VCHAN.leftProd, true),
    rightCons: v.getUint32(VCHAN.rightCons, true),
    rightProd: v.getUint32(VCHAN.rightProd, true),
    leftOrder: v.getUint16(VCHAN.leftOrder, true),
    rightOrder: v.getUint16(VCHAN.rightOrder, true),
    cliLive: v.getUint8(VCHAN.cliLive),
    srvLive: v.getUint8(VCHAN.srvLive),
    cliNotify: v.getUint8(VCHAN.cliNotify),
    srvNotify: v.getUint8(VCHAN.srvNotify),
  };
}
