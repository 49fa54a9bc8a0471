/**
 * Byte rings: the XenStore (`io/xs_wire.h` `xenstore_domain_interface`) and console
 * (`io/console.h` `xencons_interface`) shared pages.
 *
 * Each direction is an array of a power-of-two size plus two free-running uint32 byte counters,
 * `cons` (advanced by the reader) and `prod` (advanced by the writer); byte `x` lives at
 * `x & (size - 1)`. Both counters live in the shared page, so either may have been scribbled on by
 * the peer: `prod − cons > size` is corruption, reported to the caller (XenStore then sets
 * `error` = XS_RING_ERROR.badIndex and stops talking to the guest). Neither side may assume the
 * counters start at 0.
 *
 * Like `ring.ts`, nothing here signals: after any call that moved an index (`bytes > 0`), the
 * caller notifies the peer's event channel.
 */

/** Where one direction of a byte ring lives in its page. */
export interface ByteRingLayout {
  /** Offset of the data array. */
  readonly data: number;
  /** Size of the data array: a power of two. */
  readonly size: number;
  /** Offset of the reader's uint32 counter. */
  readonly cons: number;
  /** Offset of the writer's uint32 counter. */
  readonly prod: number;
}

/** `struct xenstore_domain_interface` (one 4 KiB page). */
export const XENSTORE_INTERFACE = {
  ringSize: 1024,
  /** Guest → daemon. */
  req: { data: 0, size: 1024, cons: 2048, prod: 2052 },
  /** Daemon → guest: replies and watch events. */
  rsp: { data: 1024, size: 1024, cons: 2056, prod: 2060 },
  serverFeatures: 2064,
  connection: 2068,
  error: 2072,
  /** Xen HEAD only (absent from 4.17 headers): 0 means "use XS_INTRODUCE's port". */
  evtchnPort: 2076,
  /** sizeof at Xen 4.17 (no evtchn_port) and at HEAD. */
  structSize417: 2076,
  structSize: 2080,
} as const satisfies Record<string, number | ByteRingLayout>;

/** `server_features` bits (XENSTORE_SERVER_FEATURE_*); bits are only ever set. */
export const XS_SERVER_FEATURE = {
  reconnection: 1,
  error: 2,
  watchDepth: 4,
  domidAny: 8,
} as const;

/** `connection` values. Only the guest sets reconnecting, only the daemon sets connected. */
export const XS_CONNECTION = { connected: 0, reconnecting: 1 } as const;

/** `error` values (XENSTORE_ERROR_*). */
export const XS_RING_ERROR = { none: 0, eventChannel: 1, badIndex: 2, payloadTooLong: 3 } as const;

/** `struct xencons_interface` (one 4 KiB page). */
export const CONSOLE_INTERFACE = {
  /** Backend → guest (keystrokes). */
  in: { data: 0, size: 1024, cons: 3072, prod: 3076 },
  /** Guest → backend (output). */
  out: { data: 1024, size: 2048, cons: 3080, prod: 3084 },
  /** u8, Xen HEAD only: 1 disconnected, 0 connected (set by the backend when it starts). */
  connection: 3088,
  /** sizeof at Xen 4.17 (no connection byte). */
  structSize417: 3088,
} as const satisfies Record<string, number | ByteRingLayout>;

/** Outcome of a byte-ring operation: bytes moved, or the indexes found corrupt. */
export type ByteRingResult =
  | { readonly ok: true; readonly bytes: number }
  | { readonly ok: false; readonly cons: number; readonly prod: number };

/** One direction of a byte ring. Both ends use the same object: one writes, the other reads. */
export class ByteRing {
  readonly page: Uint8Array;
  readonly layout: ByteRingLayout;
  readonly #idx: Uint32Array;
  readonly #cons: number;
  readonly #prod: number;
  readonly #mask: number;

  constructor(page: Uint8Array, layout: ByteRingLayout) {
    const { data, size, cons, prod } = layout;
    if (!Number.isSafeInteger(size) || size <= 0 || (size & (size - 1)) !== 0) {
      throw new RangeError(`Cannot use byte ring: size must be a power of two, got ${size}`);
    }
    if (data < 0 || data + size > page.byteLength) {
      throw new RangeError(
        `Cannot use byte ring: data ${data}+${size} lies outside a ${page.byteLength}-byte page`,
      );
    }
    for (const off of [cons, prod]) {
      if (off < 0 || off % 4 !== 0 || off + 4 > page.byteLength) {
        throw new RangeError(`Cannot use byte ring: index offset ${off} is not an aligned word of the page`);
      }
    }
    if (page.byteOffset % 4 !== 0) {
      throw new RangeError(`Cannot use byte ring: page byte offset ${page.byteOffset} is not 4-byte aligned`);
    }
    this.page = page;
    this.layout = layout;
    this.#idx = new Uint32Array(page.buffer, page.byteOffset, page.byteLength >>> 2);
    this.#cons = cons >>> 2;
    this.#prod = prod >>> 2;
    this.#mask = size - 1;
  }

  /** The reader's counter, read atomically. */
  get cons(): number {
    return Atomics.load(this.#idx, this.#cons);
  }
  set cons(v: number) {
    Atomics.store(this.#idx, this.#cons, v >>> 0);
  }
  /** The writer's counter, read atomically. */
  get prod(): number {
    return Atomics.load(this.#idx, this.#prod);
  }
  set prod(v: number) {
    Atomics.store(this.#idx, this.#prod, v >>> 0);
  }

  /** Bytes waiting to be read. */
  available(): ByteRingResult {
    const cons = this.cons;
    const prod = this.prod;
    const used = (prod - cons) >>> 0;
    if (used > this.layout.size) return { ok: false, cons, prod };
    return { ok: true, bytes: used };
  }

  /** Bytes that can be written now. */
  space(): ByteRingResult {
    const r = this.available();
    return r.ok ? { ok: true, bytes: this.layout.size - r.bytes } : r;
  }

  /** Writes as much of `src` as fits (possibly 0 bytes) and publishes it. */
  write(src: Uint8Array): ByteRingResult {
    // Read both counters once; everything below uses these copies.
    // Ordering point: acquiring cons means the reader is done with every byte before it.
    const cons = this.cons;
    const prod = this.prod;
    const used = (prod - cons) >>> 0;
    if (used > this.layout.size) return { ok: false, cons, prod };
    const n = Math.min(src.length, this.layout.size - used);
    if (n === 0) return { ok: true, bytes: 0 };
    const at = prod & this.#mask;
    const first = Math.min(n, this.layout.size - at);
    const base = this.layout.data;
    this.page.set(src.subarray(0, first), base + at);
    if (first < n) this.page.set(src.subarray(first, n), base);
    // Ordering point (xen_wmb): the release store publishes the bytes before the new prod.
    this.prod = prod + n;
    return { ok: true, bytes: n };
  }

  /** Reads up to `dst.length` bytes of what is there into `dst` and consumes them. */
  read(dst: Uint8Array): ByteRingResult {
    return this.#take(dst, true);
  }

  /** Like `read()` but leaves the bytes in the ring. */
  peek(dst: Uint8Array): ByteRingResult {
    return this.#take(dst, false);
  }

  #take(dst: Uint8Array, consume: boolean): ByteRingResult {
    // Read both counters once; everything below uses these copies.
    // Ordering point (xen_rmb): acquiring prod makes the writer's bytes up to it visible.
    const prod = this.prod;
    const cons = this.cons;
    const used = (prod - cons) >>> 0;
    if (used > this.layout.size) return { ok: false, cons, prod };
    const n = Math.min(dst.length, used);
    if (n === 0) return { ok: true, bytes: 0 };
    const at = cons & this.#mask;
    const first = Math.min(n, this.layout.size - at);
    const base = this.layout.data;
    dst.set(this.page.subarray(base + at, base + at + first));
    if (first < n) dst.set(this.page.subarray(base, base + n - first), first);
    // Ordering point (xen_mb): the release store hands the slots back only after they were copied.
    if (consume) this.cons = cons + n;
    return { ok: true, bytes: n };
  }
}

/** The XenStore shared page: both byte rings and the control words. */
export class XenstoreInterface {
  readonly page: Uint8Array;
  /** Guest → daemon. */
  readonly req: ByteRing;
  /** Daemon → guest. */
  readonly rsp: ByteRing;
  readonly #words: Uint32Array;

  constructor(page: Uint8Array) {
    if (page.byteLength < XENSTORE_INTERFACE.structSize) {
      throw new RangeError(
        `Cannot use XenStore page: need ${XENSTORE_INTERFACE.structSize} bytes, got ${page.byteLength}`,
      );
    }
    this.page = page;
    this.req = new ByteRing(page, XENSTORE_INTERFACE.req);
    this.rsp = new ByteRing(page, XENSTORE_INTERFACE.rsp);
    this.#words = new Uint32Array(page.buffer, page.byteOffset, XENSTORE_INTERFACE.structSize >>> 2);
  }

  get serverFeatures(): number {
    return Atomics.load(this.#words, XENSTORE_INTERFACE.serverFeatures >>> 2);
  }
  /** Sets feature bits (never clears them), atomically. */
  addServerFeatures(bits: number): void {
    Atomics.or(this.#words, XENSTORE_INTERFACE.serverFeatures >>> 2, bits >>> 0);
  }
  get connection(): number {
    return Atomics.load(this.#words, XENSTORE_INTERFACE.connection >>> 2);
  }
  set connection(v: number) {
    Atomics.store(this.#words, XENSTORE_INTERFACE.connection >>> 2, v >>> 0);
  }
  get error(): number {
    return Atomics.load(this.#words, XENSTORE_INTERFACE.error >>> 2);
  }
  set error(v: number) {
    Atomics.store(this.#words, XENSTORE_INTERFACE.error >>> 2, v >>> 0);
  }
  get evtchnPort(): number {
    return Atomics.load(this.#words, XENSTORE_INTERFACE.evtchnPort >>> 2);
  }
  set evtchnPort(v: number) {
    Atomics.store(this.#words, XENSTORE_INTERFACE.evtchnPort >>> 2, v >>> 0);
  }
}

/** The console shared page: both byte rings and the (HEAD-only) connection byte. */
export class ConsoleInterface {
  readonly page: Uint8Array;
  /** Backend → guest. */
  readonly in: ByteRing;
  /** Guest → backend. */
  readonly out: ByteRing;

  constructor(page: Uint8Array) {
    if (page.byteLength <= CONSOLE_INTERFACE.connection) {
      throw new RangeError(
        `Cannot use console page: need ${CONSOLE_INTERFACE.connection + 1} bytes, got ${page.byteLength}`,
      );
    }
    this.page = page;
    this.in = new ByteRing(page, CONSOLE_INTERFACE.in);
    this.out = new ByteRing(page, CONSOLE_INTERFACE.out);
  }

  get connection(): number {
    return Atomics.load(this.page, CONSOLE_INTERFACE.connection);
  }
  set connection(v: number) {
    Atomics.store(this.page, CONSOLE_INTERFACE.connection, v & 0xff);
  }
}
