/**
 * `xenlab vchan`'s data path: a control connection turned into one direction of a vchan, as
 * blk-cp's is turned into a disk's bytes (same framing, src/host/blk-stream.ts):
 *
 *   → {"op":"vchan","domid":1,"role":"server","mode":"read","peer":2,"path":"…","timeoutMs":10000}
 *                                  ← frames…  0-frame  {"ok":true,"value":{"bytes":N}}
 *   → {"op":"vchan","domid":2,"role":"client","mode":"write","peer":1,"path":"…"}  frames…  0-frame
 *                                  ← {"ok":true,"value":{"bytes":N}}
 *
 * The vchan end lives in domain `domid` (its `xen_vchan` module); the host moves the bytes
 * between the socket and calls to it. The timeout bounds the setup (the client waits for the
 * server's keys, the server for a client); once connected, the data may pause for as long as its
 * source does, and a peer that closes or dies ends the stream. The end is closed when the stream
 * ends, fails, or the connection goes.
 */
import type { Socket } from "node:net";
import { errorMessage } from "../lib/errors.ts";
import { FrameReader, frameHeader } from "./blk-stream.ts";
import type { Host } from "./host.ts";
import { vchanCall } from "./vchan.ts";

export interface VchanStreamRequest {
  readonly op: "vchan";
  /** The domain the end runs in. */
  readonly domid: number;
  readonly role: "server" | "client";
  /** read: the vchan's bytes to the socket; write: the socket's bytes into the vchan. */
  readonly mode: "read" | "write";
  readonly peer: number;
  readonly path: string;
  readonly leftMin?: number;
  readonly rightMin?: number;
  readonly timeoutMs?: number;
}

/** Bytes asked of the vchan per read. */
const READ_MAX = 256 * 1024;

export function parseVchanStreamRequest(line: string): VchanStreamRequest | undefined {
  let r: unknown;
  try {
    r = JSON.parse(line);
  } catch {
    return undefined;
  }
  return typeof r === "object" && r !== null && (r as { op?: unknown }).op === "vchan"
    ? (r as VchanStreamRequest)
    : undefined;
}

/** Serves one `vchan` request on `s`; `rest` is what came after its line. */
export async function serveVchanStream(
  host: Host,
  s: Socket,
  r: VchanStreamRequest,
  rest: Buffer,
): Promise<void> {
  s.pause();
  const reply = (v: { ok: true; value: unknown } | { ok: false; error: string }): void => {
    if (s.destroyed) return;
    s.end(`${JSON.stringify(v)}\n`);
    // A writer still sending when a failure ends the exchange: take and drop its bytes, or its
    // unsent frames would hold its connection (and it) open.
    s.on("data", () => {});
    s.resume();
  };
  let id: number | undefined;
  let bytes = 0;
  const call = (cmd: string, arg: Record<string, unknown>) => vchanCall(host, r.domid, cmd, arg);
  const close = async () => {
    if (id === undefined) return;
    const i = id;
    id = undefined;
    await call("close", { id: i }).catch(() => {});
  };
  s.on("close", () => void close());
  try {
    for (const [what, d] of [
      ["domain", r.domid],
      ["peer domain", r.peer],
    ] as const)
      if (host.hv.info(d) === undefined) throw new Error(`No ${what} ${d}: see 'xenlab list'`);
    const timeoutMs = r.timeoutMs ?? 10_000;
    if (r.role === "server") {
      const o = (await call("server", {
        peer: r.peer,
        path: r.path,
        leftMin: r.leftMin ?? 0,
        rightMin: r.rightMin ?? 0,
      })) as { id: number };
      id = o.id;
      await call("connected", { id, timeoutMs }).catch((e: unknown) => {
        throw new Error(
          /Timed out/.test(errorMessage(e))
            ? `No client connected to ${r.path} within ${timeoutMs / 1000} s: start 'xenlab vchan client' in domain ${r.peer}`
            : errorMessage(e),
        );
      });
    } else {
      id = ((await call("client", { peer: r.peer, path: r.path, timeoutMs })) as { id: number }).id;
    }
    const vid = id;
    if (r.mode === "read") {
      for (;;) {
        const data = (await call("read", { id: vid, max: READ_MAX, timeoutMs: 0 })) as Uint8Array;
        if (data.length === 0 || s.destroyed) break;
        bytes += data.length;
        s.write(frameHeader(data.length));
        if (!s.write(data)) await new Promise((ok) => s.once("drain", ok).once("close", ok));
      }
      if (!s.destroyed) s.write(frameHeader(0));
    } else {
      await writeIn(s, rest, async (piece) => {
        await call("write", { id: vid, data: piece, timeoutMs: 0 });
        bytes += piece.length;
      });
    }
    await close();
    reply({ ok: true, value: { bytes } });
  } catch (e) {
    await close();
    if (r.mode === "read" && !s.destroyed) s.write(frameHeader(0));
    reply({ ok: false, error: errorMessage(e) });
  }
}

/** Feeds the frames on `s` to `write` one at a time (the socket paused while one is in flight). */
function writeIn(s: Socket, rest: Buffer, write: (piece: Uint8Array) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let chain = Promise.resolve();
    let pending = 0;
    let failed = false;
    const reader = new FrameReader(
      (piece) => {
        // The piece is a view of the socket's chunk: copy it before the socket reuses it.
        const copy = Uint8Array.from(piece);
        s.pause();
        pending++;
        chain = chain
          .then(() => write(copy))
          .then(
            () => {
              if (--pending === 0 && !reader.ended && !failed) s.resume();
            },
            (e: unknown) => {
              failed = true;
              s.off("data", onData);
              reject(e);
            },
          );
      },
      () => {
        s.off("data", onData);
        void chain.then(() => {
          if (!failed) resolve();
        });
      },
    );
    const onData = (d: Buffer) => reader.push(d);
    s.on("data", onData);
    s.once("close", () => {
      if (!reader.ended)
        void chain.then(() => reject(new Error("the client went away before the end of the stream")));
    });
    reader.push(rest);
    if (!reader.ended) s.resume();
  });
}
