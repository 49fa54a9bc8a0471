/**
 * The fuzzer's own model of how a daemon frames a byte stream (C `handle_input`): 16-byte
 * header, then `len` bytes; a header announcing more than XENSTORE_PAYLOAD_MAX ends the
 * connection. It is written independently of `wire.ts`'s PacketReader (a buffer and an
 * offset instead of a state machine) so the two can be checked against each other, and it
 * tells the socket and ring targets how many replies to wait for and where the daemon must
 * hang up.
 */
import { HEADER_SIZE, XENSTORE_PAYLOAD_MAX, type XsPacket } from "../xenstore/wire.ts";

export interface Framed {
  /** Packets the daemon must answer, in order. */
  readonly packets: XsPacket[];
  /** Set when a header announced more than the limit: the connection ends there. */
  readonly tooLarge: number | null;
}

export class StreamModel {
  #pending = new Uint8Array(0);
  #dead = false;

  /** True once a header announced an over-long payload. */
  get dead(): boolean {
    return this.#dead;
  }

  /** Bytes of an incomplete packet held back. */
  get pendingBytes(): number {
    return this.#pending.byteLength;
  }

  push(bytes: Uint8Array): Framed {
    const packets: XsPacket[] = [];
    if (this.#dead) return { packets, tooLarge: null };
    const buf = new Uint8Array(this.#pending.byteLength + bytes.byteLength);
    buf.set(this.#pending, 0);
    buf.set(bytes, this.#pending.byteLength);
    const dv = new DataView(buf.buffer);
    let at = 0;
    let tooLarge: number | null = null;
    while (buf.byteLength - at >= HEADER_SIZE) {
      const len = dv.getUint32(at + 12, true);
      if (len > XENSTORE_PAYLOAD_MAX) {
        tooLarge = len;
        this.#dead = true;
        break;
      }
      if (buf.byteLength - at - HEADER_SIZE < len) break;
      packets.push({
        type: dv.getUint32(at, true),
        reqId: dv.getUint32(at + 4, true),
        txId: dv.getUint32(at + 8, true),
        payload: buf.slice(at + HEADER_SIZE, at + HEADER_SIZE + len),
      });
      at += HEADER_SIZE + len;
    }
    this.#pending = this.#dead ? new Uint8Array(0) : buf.slice(at);
    return { packets, tooLarge };
  }

  /**
   * Zero bytes that complete the packet held back, so that what follows starts on a packet
   * boundary. A header completed with zeros may still announce too much (its `len` bytes
   * were already sent): `push()` of the filler then reports it.
   */
  filler(): Uint8Array {
    const n = this.#pending.byteLength;
    if (n === 0 || this.#dead) return new Uint8Array(0);
    const head = new Uint8Array(HEADER_SIZE);
    head.set(this.#pending.subarray(0, HEADER_SIZE));
    const len = new DataView(head.buffer).getUint32(12, true);
    if (len > XENSTORE_PAYLOAD_MAX) return new Uint8Array(Math.max(0, HEADER_SIZE - n));
    return new Uint8Array(HEADER_SIZE + len - n);
  }
}
