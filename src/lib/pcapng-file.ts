/**
 * A pcapng capture being written (the blocks of pcapng.ts): the section header and interfaces
 * at once, so the file is a valid, empty capture from its creation, then packets, encoded in
 * place into one reused buffer and written together: when the buffer fills, `flushDelayMs`
 * (default 50 ms) after the first packet queued, or on `flush()`/`close()`. So the file on disk
 * lags the traffic by at most that delay (`tshark -r` reads it while xenlab runs), and a busy
 * capture costs one write per 64 KiB or per delay, not one per packet or per turn.
 *
 * The bytes go to a `ByteSink`: `fileSink(path)` for a file, an array in tests.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { errorMessage } from "./errors.ts";
import {
  DEFAULT_SNAPLEN,
  Direction,
  type DirectionCode,
  enhancedPacketLength,
  type InterfaceDescription,
  interfaceDescriptionBlock,
  type SectionHeader,
  sectionHeaderBlock,
  writeEnhancedPacket,
} from "./pcapng.ts";

/** Where a capture's bytes go, in order. */
export interface ByteSink {
  /** Consumes `bytes` before returning: the writer reuses the buffer afterwards. */
  write(bytes: Uint8Array): void;
  close(): void;
}

/** When this thread's monotonic clock started, ms since 1970 (read once: the getter is slow). */
const TIME_ORIGIN = performance.timeOrigin;

/** Now, in microseconds since 1970: the wall clock with the sub-millisecond part of the monotonic one. */
export function wallClockUs(): number {
  return Math.round((TIME_ORIGIN + performance.now()) * 1000);
}

/** A file-system error without the path Node appends: `EACCES: permission denied`. */
export function fsReason(e: unknown): string {
  const m = errorMessage(e);
  const code = (e as NodeJS.ErrnoException).code;
  return code !== undefined && m.startsWith(`${code}: `) ? m.split(", ")[0]! : m;
}

/**
 * A file with mode 0644: created or emptied (a capture starts afresh, as dumpcap's `-w`), or with
 * `append` created or added to (a second section after the first: pcapng readers read every
 * section of a file). Throws an Error naming the file and the cause when it cannot be opened.
 */
export function fileSink(path: string, opts: { readonly append?: boolean } = {}): ByteSink {
  let fd: number;
  try {
    fd = openSync(path, opts.append === true ? "a" : "w", 0o644);
  } catch (e) {
    throw new Error(`Cannot create capture file '${path}': ${fsReason(e)}`);
  }
  return {
    write(bytes) {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done);
    },
    close() {
      closeSync(fd);
    },
  };
}

export interface PacketOptions {
  readonly direction?: DirectionCode;
  readonly comment?: string;
}

export interface PcapngWriterOptions {
  readonly section?: SectionHeader;
  /** The interfaces, numbered 0, 1, … in this order; more may be added later. */
  readonly interfaces?: readonly InterfaceDescription[];
  /** The packets' clock, µs since 1970 (tests pass their own). */
  readonly now?: () => number;
  /** A write that failed (a full disk): the capture stops; default: thrown from the flush. */
  readonly onError?: (err: Error) => void;
  /** Longest a queued packet waits before it is written, ms (default 50). */
  readonly flushDelayMs?: number;
}

/** Fills a packet's `len` bytes in place at `off` of `bytes` (`dv` over the same buffer). */
export type PacketFill = (bytes: Uint8Array, dv: DataView, off: number) => void;

const CHUNK = 64 * 1024;
const ENCODER = new TextEncoder();

export class PcapngWriter {
  readonly #sink: ByteSink;
  readonly #now: () => number;
  readonly #onError: ((err: Error) => void) | null;
  readonly #delay: number;
  /** Snap length of each interface, by number. */
  readonly #snap: number[] = [];
  #buf = new Uint8Array(CHUNK);
  #dv = new DataView(this.#buf.buffer);
  #pos = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;
  #packets = 0;

  constructor(sink: ByteSink, opts: PcapngWriterOptions = {}) {
    this.#sink = sink;
    this.#now = opts.now ?? wallClockUs;
    this.#onError = opts.onError ?? null;
    this.#delay = opts.flushDelayMs ?? 50;
    this.#append(sectionHeaderBlock(opts.section ?? {}));
    for (const i of opts.interfaces ?? []) this.addInterface(i);
    this.flush();
  }

  /** Packets written or queued so far. */
  get packets(): number {
    return this.#packets;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Describes one more interface; returns its number for `packet()`. */
  addInterface(i: InterfaceDescription): number {
    if (this.#closed) throw new Error("Cannot add an interface: the capture is closed");
    this.#append(interfaceDescriptionBlock(i));
    this.#snap.push(i.snapLen ?? DEFAULT_SNAPLEN);
    return this.#snap.length - 1;
  }

  /**
   * Queues one packet on interface `interfaceId`, stamped now; bytes past the interface's snap
   * length are cut (the original length is kept). Ignored once the capture is closed.
   */
  packet(interfaceId: number, data: Uint8Array, opts: PacketOptions = {}): void {
    const comment = opts.comment === undefined ? null : ENCODER.encode(opts.comment);
    this.packetInPlace(
      interfaceId,
      data.byteLength,
      opts.direction ?? Direction.unknown,
      comment,
      (bytes, _dv, off) => bytes.set(data, off),
    );
  }

  /**
   * The fast path of `packet()`: a packet of `len` bytes that `fill` writes in place (it may
   * write them all: past the snap length they are overwritten or dropped), with the comment
   * already encoded. No allocation per packet.
   */
  packetInPlace(
    interfaceId: number,
    len: number,
    direction: DirectionCode,
    comment: Uint8Array | null,
    fill: PacketFill,
  ): void {
    if (this.#closed) return;
    const snap = this.#snap[interfaceId];
    if (snap === undefined) throw new RangeError(`No interface ${interfaceId} in this capture`);
    const kept = snap !== 0 && len > snap ? snap : len;
    // Room for the whole packet: `fill` writes `len` bytes, the block keeps `kept`.
    const need = enhancedPacketLength(len, direction !== Direction.unknown, comment?.byteLength ?? 0);
    this.#reserve(need);
    const off = this.#pos;
    if (kept === len) fill(this.#buf, this.#dv, off + 28);
    else {
      const whole = new Uint8Array(len);
      fill(whole, new DataView(whole.buffer), 0);
      this.#buf.set(whole.subarray(0, kept), off + 28);
    }
    this.#pos += writeEnhancedPacket(
      this.#buf,
      this.#dv,
      off,
      interfaceId,
      this.#now(),
      kept,
      len,
      direction,
      comment,
    );
    this.#packets++;
  }

  /** Writes every queued block now. */
  flush(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#pos === 0) return;
    const bytes = this.#buf.subarray(0, this.#pos);
    this.#pos = 0;
    try {
      this.#sink.write(bytes);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      if (this.#onError === null) throw err;
      this.#closed = true;
      try {
        this.#sink.close();
      } catch {
        // The write's error is the one worth reporting.
      }
      this.#onError(err);
    }
  }

  /** Writes what is queued and closes the sink; later packets are ignored. */
  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    this.#sink.close();
  }

  /** Makes room for `n` more bytes: writes what is queued when full, grows for a larger block. */
  #reserve(n: number): void {
    if (this.#pos + n > this.#buf.byteLength) {
      this.flush();
      if (n > this.#buf.byteLength) {
        this.#buf = new Uint8Array(n);
        this.#dv = new DataView(this.#buf.buffer);
      }
    }
    if (this.#pos === 0 && this.#timer === null && this.#delay >= 0) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.flush();
      }, this.#delay);
      // A capture never keeps the process alive; close() writes the rest.
      this.#timer.unref();
    }
  }

  #append(block: Uint8Array): void {
    this.#reserve(block.byteLength);
    this.#buf.set(block, this.#pos);
    this.#pos += block.byteLength;
  }
}
