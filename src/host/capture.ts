/**
 * `xenlab up --pcap DIR`: the host's captures. `DIR/xenstore.pcapng` gets every XenStore request
 * and every packet xenstored sends (replies and watch events), of every connection: Unix-socket
 * clients (Debian's xenstore-* tools), the toolstack's own, and every domain's ring. Each is one
 * packet on a LINKTYPE_USER0 interface: the record of src/xenstore/capture.ts (domid, connection,
 * direction, then the message as on the wire), with the connection's label as the packet's
 * comment (`dom1`, `socket#3`), which Wireshark shows even without wireshark/xenstore.lua.
 *
 * The per-vif captures (`DIR/vif<domid>.<handle>.pcapng`) are netback's: the host removes those
 * of an earlier run and publishes DIR at PCAP_DIR_KEY for it (src/drivers/net/vif-capture.ts).
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isVifCaptureFile, PCAP_DIR_KEY } from "../drivers/net/vif-capture.ts";
import { Direction, LinkType } from "../lib/pcapng.ts";
import {
  fileSink,
  fsReason,
  type PacketFill,
  PcapngWriter,
  type PcapngWriterOptions,
} from "../lib/pcapng-file.ts";
import { captureRecordLength, writeCaptureRecord } from "../xenstore/capture.ts";
import type { XsOps } from "../xenstore/client.ts";
import type { XenStoreCore } from "../xenstore/core.ts";
import type { Connection, PacketTap } from "../xenstore/daemon.ts";
import type { XsPacket } from "../xenstore/wire.ts";

export const XENSTORE_CAPTURE_FILE = "xenstore.pcapng";

/** The shipped dissector: wireshark/ sits beside src/ and dist/ (package.json's files has it). */
export const XENSTORE_DISSECTOR = fileURLToPath(new URL("../../wireshark/xenstore.lua", import.meta.url));

/**
 * Makes `dir` (and its parents) if missing and returns its absolute path. Throws an Error
 * naming the path and what to do when it is not a directory or cannot be made.
 */
export function captureDirectory(dir: string): string {
  const abs = resolve(dir);
  try {
    mkdirSync(abs, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST" || code === "ENOTDIR")
      throw new Error(
        `Cannot capture into '${abs}': not a directory; give --pcap a directory (made if missing)`,
      );
    throw new Error(`Cannot create capture directory '${abs}': ${fsReason(e)}`);
  }
  return abs;
}

/** XenStore packets as a pcapng capture: a PacketTap for the core. */
export class XenstoreCapture implements PacketTap {
  readonly #w: PcapngWriter;
  /** Each connection's label, encoded once: the packets' comment. */
  readonly #labels = new WeakMap<Connection, Uint8Array>();
  // The packet being written, for #fill: no closure per packet.
  #dir: "IN" | "OUT" = "IN";
  #conn: Connection | null = null;
  #p: XsPacket | null = null;
  readonly #fill: PacketFill = (bytes, dv, off) =>
    writeCaptureRecord(bytes, dv, off, this.#dir, this.#conn!, this.#p!);

  constructor(w: PcapngWriter) {
    this.#w = w;
  }

  /** A capture into `file` (replaced if it exists). */
  static create(
    file: string,
    opts: Pick<PcapngWriterOptions, "now" | "onError" | "flushDelayMs"> = {},
  ): XenstoreCapture {
    const w = new PcapngWriter(fileSink(file), {
      ...opts,
      section: {
        application: "xenlab",
        comment: "XenStore requests and replies; open with wireshark/xenstore.lua",
      },
      interfaces: [
        {
          linkType: LinkType.USER0,
          name: "xenstore",
          description: "xenstored: every request, reply and watch event, with the connection's domid",
        },
      ],
    });
    return new XenstoreCapture(w);
  }

  get packets(): number {
    return this.#w.packets;
  }

  packet(dir: "IN" | "OUT", conn: Connection, p: XsPacket): void {
    let label = this.#labels.get(conn);
    if (label === undefined) {
      label = new TextEncoder().encode(conn.label);
      this.#labels.set(conn, label);
    }
    this.#dir = dir;
    this.#conn = conn;
    this.#p = p;
    const direction = dir === "IN" ? Direction.inbound : Direction.outbound;
    this.#w.packetInPlace(0, captureRecordLength(p), direction, label, this.#fill);
    this.#conn = null;
    this.#p = null;
  }

  /** Writes what is queued now. */
  flush(): void {
    this.#w.flush();
  }

  close(): void {
    this.#w.close();
  }
}

/** The captures of one host run. */
export class HostCapture {
  readonly dir: string;
  readonly xenstore: XenstoreCapture;
  readonly #core: XenStoreCore;

  private constructor(dir: string, core: XenStoreCore, xenstore: XenstoreCapture) {
    this.dir = dir;
    this.#core = core;
    this.xenstore = xenstore;
  }

  /**
   * Creates `dir` if needed, starts the XenStore capture on `core` and publishes `dir` for
   * netback. Throws an Error naming the directory or file when it cannot be written.
   */
  static async start(
    dir: string,
    core: XenStoreCore,
    xs: XsOps,
    log: { warn(obj: object, msg: string): void },
  ): Promise<HostCapture> {
    const abs = captureDirectory(dir);
    // netback appends to a vif's file (a reconnect is a new section): a file of an earlier
    // run would mix two runs.
    for (const name of readdirSync(abs)) if (isVifCaptureFile(name)) rmSync(join(abs, name), { force: true });
    let started: XenstoreCapture | null = null;
    const xenstore = XenstoreCapture.create(join(abs, XENSTORE_CAPTURE_FILE), {
      onError: (err) => {
        log.warn({ err: err.message }, "XenStore capture stopped: write failed");
        if (started !== null && core.tap === started) core.tap = null;
      },
    });
    started = xenstore;
    core.tap = xenstore;
    await xs.write(PCAP_DIR_KEY, abs);
    return new HostCapture(abs, core, xenstore);
  }

  /** Stops the XenStore capture and writes what is left. */
  close(): void {
    if (this.#core.tap === this.xenstore) this.#core.tap = null;
    this.xenstore.close();
  }
}
