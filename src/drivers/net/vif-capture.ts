/**
 * A capture of one vif's Ethernet frames (`xenlab up --pcap DIR`): the hook netback calls for
 * every frame it moves, and the pcapng file behind it, `DIR/vif<domid>.<handle>.pcapng`, one
 * Ethernet interface named as Linux names the backend's netdev (`vif1.0`).
 *
 * How netback finds the directory: `xenlab up --pcap DIR` writes DIR to the dom0-only key
 * `/tool/xenlab/pcap` (PCAP_DIR_KEY) before any guest starts. A netback in dom0 calls, when a
 * vif connects,
 *
 *   const tap = await openVifCapture(kernel.xs, domid, handle);  // null: no capture asked for
 *   ...
 *   tap?.onFrame("from-guest", frame);   // a frame the guest sent (its TX ring), whole
 *   tap?.onFrame("to-guest", frame);     // a frame given to the guest (its RX ring), whole
 *   ...
 *   tap?.close();                        // on disconnect: the file stays readable; a
 *                                        // reconnect adds a section to the same file
 *
 * `frame` is the Ethernet frame from its destination MAC on (no FCS), as passt and a TAP carry
 * it; the tap copies it before returning, so the caller may reuse the buffer. Directions are
 * those of dom0's vif, as `tcpdump -i vif1.0` shows them: a frame from the guest is inbound, one
 * to it outbound (pcapng's epb_flags; Wireshark's `frame.packet_flags_direction`, 1 and 2). With
 * no capture the hook is null and costs netback one test per frame.
 */
import { join } from "node:path";
import { Direction, LinkType } from "../../lib/pcapng.ts";
import { fileSink, PcapngWriter, type PcapngWriterOptions } from "../../lib/pcapng-file.ts";
import type { XsOps } from "../../xenstore/client.ts";
import { XsError } from "../../xenstore/errors.ts";

/** The dom0-only XenStore key holding the capture directory while `xenlab up --pcap DIR` runs. */
export const PCAP_DIR_KEY = "/tool/xenlab/pcap";

export type FrameDirection = "from-guest" | "to-guest";

/** What netback calls for each frame it moves. */
export interface FrameTap {
  onFrame(direction: FrameDirection, frame: Uint8Array): void;
  close(): void;
}

/** Linux's name of the backend's netdev for a vif: `vif<domid>.<handle>`. */
export function vifName(domid: number, handle: number): string {
  return `vif${domid}.${handle}`;
}

/** The capture file of a vif in `dir`. */
export function vifCaptureFile(dir: string, domid: number, handle: number): string {
  return join(dir, `${vifName(domid, handle)}.pcapng`);
}

/** Whether a file name is a vif capture's (`vif<domid>.<handle>.pcapng`). */
export function isVifCaptureFile(name: string): boolean {
  return /^vif\d+\.\d+\.pcapng$/.test(name);
}

/** One vif's capture: a pcapng file with one Ethernet interface. */
export class VifCapture implements FrameTap {
  readonly #w: PcapngWriter;

  constructor(w: PcapngWriter) {
    this.#w = w;
  }

  /**
   * A capture of vif `domid`.`handle` in `dir`: a new section at the end of its file, so a vif
   * that reconnects keeps its earlier frames (the host empties `dir` of vif captures when it
   * starts: the file is this run's).
   */
  static create(
    dir: string,
    domid: number,
    handle: number,
    opts: Pick<PcapngWriterOptions, "now" | "onError" | "flushDelayMs"> = {},
  ): VifCapture {
    const name = vifName(domid, handle);
    const w = new PcapngWriter(fileSink(vifCaptureFile(dir, domid, handle), { append: true }), {
      ...opts,
      section: { application: "xenlab", comment: `Ethernet frames of ${name}, as dom0's netback moved them` },
      interfaces: [
        {
          linkType: LinkType.ETHERNET,
          name,
          description: `domain ${domid}'s network device ${handle}, seen from dom0's backend`,
        },
      ],
    });
    return new VifCapture(w);
  }

  get frames(): number {
    return this.#w.packets;
  }

  onFrame(direction: FrameDirection, frame: Uint8Array): void {
    // Copied into the writer's buffer now: the caller may reuse `frame` once this returns.
    this.#w.packet(0, frame, {
      direction: direction === "from-guest" ? Direction.inbound : Direction.outbound,
    });
  }

  close(): void {
    this.#w.close();
  }
}

/**
 * The tap for vif `domid`.`handle` when the host captures (PCAP_DIR_KEY is set), else null. A
 * directory that cannot be written to is an Error naming the file.
 */
export async function openVifCapture(
  xs: XsOps,
  domid: number,
  handle: number,
  opts: Pick<PcapngWriterOptions, "now" | "onError" | "flushDelayMs"> = {},
): Promise<FrameTap | null> {
  let dir: string;
  try {
    dir = await xs.read(PCAP_DIR_KEY);
  } catch (e) {
    if (e instanceof XsError && (e.errno === "ENOENT" || e.errno === "EACCES")) return null;
    throw e;
  }
  return dir === "" ? null : VifCapture.create(dir, domid, handle, opts);
}
