/**
 * QEMU's stream netdev framing (net/stream.c, net/socket.c), which passt speaks on its Unix socket:
 * each Ethernet frame is preceded by its length as a 4-byte big-endian integer. Pure: bytes in,
 * frames out.
 *
 *   00 00 00 2a | 42 bytes of frame | 00 00 05 ea | 1514 bytes of frame | ...
 */

/** The largest frame accepted: passt's own limit is 65535 + the Ethernet header, rounded up. */
export const STREAM_FRAME_MAX = 65536 + 14;

export class FrameTooLargeError extends Error {
  constructor(len: number) {
    super(`Cannot read frame: length ${len} is over ${STREAM_FRAME_MAX} bytes`);
    this.name = "FrameTooLargeError";
  }
}

/** The bytes that carry `frame` on the stream. */
export function encodeStreamFrame(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length, false);
  out.set(frame, 4);
  return out;
}

/** The stream's reader: `push(chunk)` returns the whole frames the bytes so far complete. */
export class StreamFrameReader {
  #buf = new Uint8Array(0);
  /** Set when a length over STREAM_FRAME_MAX arrived: the stream is out of step for good. */
  error: FrameTooLargeError | null = null;

  push(chunk: Uint8Array): Uint8Array[] {
    if (this.error !== null) return [];
    let buf = chunk;
    if (this.#buf.length > 0) {
      buf = new Uint8Array(this.#buf.length + chunk.length);
      buf.set(this.#buf);
      buf.set(chunk, this.#buf.length);
    }
    const out: Uint8Array[] = [];
    let at = 0;
    while (buf.length - at >= 4) {
      const len = ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
      if (len > STREAM_FRAME_MAX) {
        this.error = new FrameTooLargeError(len);
        this.#buf = new Uint8Array(0);
        return out;
      }
      if (buf.length - at - 4 < len) break;
      out.push(buf.slice(at + 4, at + 4 + len));
      at += 4 + len;
    }
    this.#buf = at === buf.length ? new Uint8Array(0) : buf.slice(at);
    return out;
  }
}
