/**
 * An in-process connection to the core, for code running in the daemon's own process (the
 * host's toolstack, which is dom0 user space like Xen's libxl): an `XsChannel` that steps the
 * core directly, with no socket. It is a socket connection in every respect but the bytes:
 * dom0, privileged, its replies delivered at the end of the current turn.
 */
import type { XsChannel, XsChannelSink } from "./client.ts";
import type { XenStoreCore } from "./core.ts";
import { type Connection, deliver } from "./daemon.ts";
import { isQueuedDuplicate } from "./watch.ts";
import { encodePacket, PacketReader, type XsPacket } from "./wire.ts";

export class LocalChannel implements XsChannel {
  readonly conn: Connection;
  readonly #core: XenStoreCore;
  readonly #reader = new PacketReader();
  #sink: XsChannelSink | null = null;
  #out: XsPacket[] = [];

  constructor(core: XenStoreCore) {
    this.#core = core;
    this.conn = core.connectSocket();
    this.conn.sink = {
      send: (_c, p) => {
        if (isQueuedDuplicate(this.#out, p)) return;
        if (this.#out.length === 0) queueMicrotask(() => this.#flush());
        this.#out.push(p);
      },
    };
  }

  attach(sink: XsChannelSink): void {
    this.#sink = sink;
  }

  write(bytes: Uint8Array): void {
    for (const p of this.#reader.push(bytes)) {
      if (this.conn.closed) return;
      this.#core.io("IN", this.conn, p);
      deliver(this.#core.step(this.conn, p).out);
    }
    // A header announcing too much ends the connection, as on the socket.
    const tooLarge = this.#reader.error;
    if (tooLarge !== null) this.#close(tooLarge);
  }

  close(): void {
    this.#close(undefined);
  }

  #close(error: Error | undefined): void {
    this.#core.disconnect(this.conn);
    const sink = this.#sink;
    this.#sink = null;
    sink?.closed(error);
  }

  #flush(): void {
    const out = this.#out;
    this.#out = [];
    for (const p of out) {
      this.#core.io("OUT", this.conn, p);
      this.#sink?.data(encodePacket(p));
    }
  }
}
