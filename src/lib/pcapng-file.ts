/**
 * A pcapng capture being written (the blocks of pcapng.ts): the section header and interfaces
 * at once, so the file is a valid, empty capture from its creation, then packets, buffered and
 * written together at the end of the current turn (one write per turn however many packets it
 * saw; `close()` writes what is left). Between turns the file holds every packet so far, so
 * `tshark -r` can read it while xenlab runs.
 *
 * The bytes go to a `ByteSink`: `fileSink(path)` for a file, an array in tests.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { errorMessage } from "./errors.ts";
import {
  DEFAULT_SNAPLEN,
  type DirectionCode,
  enhancedPacketBlock,
  type InterfaceDescription,
  interfaceDescriptionBlock,
  type SectionHeader,
  sectionHeaderBlock,
} from "./pcapng.ts";

/** Where a capture's bytes go, in order. */
export interface ByteSink {
  write(bytes: Uint8Array): void;
  close(): void;
}

/** Now, in microseconds since 1970: the wall clock with the sub-millisecond part of the monotonic one. */
export function wallClockUs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
}

/** A file-system error without the path Node appends: `EACCES: permission denied`. */
export function fsReason(e: unknown): string {
  const m = errorMessage(e);
  const code = (e as NodeJS.ErrnoException).code;
  return code !== undefined && m.startsWith(`${code}: `) ? m.split(", ")[0]! : m;
}

/**
 * A file, created or emptied (a capture starts afresh, as dumpcap's `-w`), with mode 0644.
 * Throws an Error naming the file and the cause when it cannot be created.
 */
export function fileSink(path: string): ByteSink {
  let fd: number;
  try {
    fd = openSync(path, "w", 0o644);
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
  readonly now?: () => bigint;
  /** A write that failed (a full disk): the capture stops; default: thrown from the flush. */
  readonly onError?: (err: Error) => void;
}

export class PcapngWriter {
  readonly #sink: ByteSink;
  readonly #now: () => bigint;
  readonly #onError: ((err: Error) => void) | null;
  /** Snap length of each interface, by number. */
  readonly #snap: number[] = [];
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #closed = false;
  #packets = 0;

  constructor(sink: ByteSink, opts: PcapngWriterOptions = {}) {
    this.#sink = sink;
    this.#now = opts.now ?? wallClockUs;
    this.#onError = opts.onError ?? null;
    this.#queue(sectionHeaderBlock(opts.section ?? {}));
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
    this.#queue(interfaceDescriptionBlock(i));
    this.#snap.push(i.snapLen ?? DEFAULT_SNAPLEN);
    return this.#snap.length - 1;
  }

  /**
   * Queues one packet on interface `interfaceId`, stamped now; bytes past the interface's snap
   * length are cut (the original length is kept). Ignored once the capture is closed.
   */
  packet(interfaceId: number, data: Uint8Array, opts: PacketOptions = {}): void {
    if (this.#closed) return;
    const snap = this.#snap[interfaceId];
    if (snap === undefined) throw new RangeError(`No interface ${interfaceId} in this capture`);
    const kept = snap !== 0 && data.byteLength > snap ? data.subarray(0, snap) : data;
    this.#packets++;
    this.#queue(
      enhancedPacketBlock({
        interfaceId,
        timestampUs: this.#now(),
        data: kept,
        originalLength: data.byteLength,
        ...(opts.direction === undefined ? {} : { direction: opts.direction }),
        ...(opts.comment === undefined ? {} : { comment: opts.comment }),
      }),
    );
  }

  /** Writes every queued block now. */
  flush(): void {
    if (this.#pending.length === 0) return;
    const blocks = this.#pending;
    const len = this.#pendingBytes;
    this.#pending = [];
    this.#pendingBytes = 0;
    let bytes: Uint8Array;
    if (blocks.length === 1) bytes = blocks[0]!;
    else {
      bytes = new Uint8Array(len);
      let pos = 0;
      for (const b of blocks) {
        bytes.set(b, pos);
        pos += b.byteLength;
      }
    }
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

  #queue(b: Uint8Array): void {
    if (this.#pending.length === 0) queueMicrotask(() => this.flush());
    this.#pending.push(b);
    this.#pendingBytes += b.byteLength;
  }
}
