/**
 * The client's side of the control socket's framed byte streams (src/host/blk-stream.ts's
 * framing: a request line, frames of a u32 little-endian length and its bytes, a 0-frame, the
 * reply line), shared by `xenlab blk-cp` and `xenlab vchan`: sending a local stream as frames,
 * receiving frames into one, and the one-line errors of both.
 */
import { connect, type Socket } from "node:net";
import type { Readable, Writable } from "node:stream";
import { CHUNK, drained, FrameReader, frameHeader } from "../host/blk-stream.ts";
import type { ControlReply } from "../host/control-client.ts";
import { controlSocketError } from "../lib/errors.ts";

/** Counts the bytes that went (a progress bar, or nothing). */
export interface Progress {
  add(n: number): void;
}

/** A user's mistake or a refusal: its message is the whole story, printed as one line. */
export class CopyError extends Error {}

/** `verb 'file': no such file or directory` from a failed open/stat/read/write. */
export function fileError(verb: string, file: string, e: unknown): CopyError {
  const err = e as NodeJS.ErrnoException;
  // Node's message is "ENOENT: no such file or directory, open '/x'": keep the description.
  const what = /^[A-Z0-9]+: ([^,]+)/.exec(err.message)?.[1] ?? err.message;
  return new CopyError(`${verb} '${file}': ${what}${err.code === undefined ? "" : ` (${err.code})`}`);
}

/** Opens the control socket for a streaming request and sends its line. */
export function openStream(ctl: string, req: object): Socket {
  const s = connect(ctl);
  s.write(`${JSON.stringify(req)}\n`);
  return s;
}

/** The host's reply line, when `text` holds a whole one. */
export function replyOf(text: string): ControlReply | undefined {
  const nl = text.indexOf("\n");
  return nl < 0 ? undefined : (JSON.parse(text.slice(0, nl)) as ControlReply);
}

/** The socket's failure as the user's line: no host, or the host went away. */
export function socketError(ctl: string, e: NodeJS.ErrnoException): Error {
  if (e.code === "ENOENT" || e.code === "ECONNREFUSED")
    return new CopyError(controlSocketError(ctl, e).message);
  return new CopyError(`the host closed the connection (${e.code ?? e.message})`);
}

/**
 * Calls `done` once the request's socket has closed: with the host's refusal, or the socket's
 * failure when no reply came, or nothing when the host answered OK.
 */
export function onStreamClose(
  s: Socket,
  ctl: string,
  reply: () => ControlReply | undefined,
  done: (err: Error | undefined) => void,
): void {
  let sockErr: NodeJS.ErrnoException | undefined;
  s.on("error", (e: NodeJS.ErrnoException) => {
    sockErr ??= e;
  });
  s.on("close", () => {
    const r = reply();
    if (r === undefined) done(socketError(ctl, sockErr ?? new Error("closed")));
    else done(r.ok ? undefined : new CopyError(r.error));
  });
}

/**
 * Sends `input` as frames after the request and resolves with the host's reply (after its
 * flush); a reply that comes early, an error, stops the sending.
 */
export function sendFrames(
  ctl: string,
  req: object,
  input: Readable,
  file: string,
  bar: Progress,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = openStream(ctl, req);
    let text = "";
    let reply: ControlReply | undefined;
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      text += d;
      reply ??= replyOf(text);
      if (reply !== undefined) {
        input.destroy();
        s.end();
      }
    });
    onStreamClose(
      s,
      ctl,
      () => reply,
      (err) => (err === undefined ? resolve() : reject(err)),
    );
    void (async () => {
      try {
        for await (const chunk of input as AsyncIterable<Buffer>) {
          if (reply !== undefined || s.destroyed) return;
          s.write(frameHeader(chunk.length));
          const room = s.write(chunk);
          bar.add(chunk.length);
          if (!room) await drained(s);
        }
        if (reply === undefined && !s.destroyed) s.write(frameHeader(0));
      } catch (e) {
        if (reply !== undefined) return;
        reject(fileError("cannot read", file, e));
        s.destroy();
      }
    })();
  });
}

/** Writes the frames the host sends to `out`, pausing the socket while `out` is full. */
export function receiveFrames(
  ctl: string,
  req: object,
  out: Writable,
  file: string,
  bar: Progress,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = openStream(ctl, req);
    let outErr: Error | undefined;
    let reply: ControlReply | undefined;
    // Pieces of the socket's chunks gathered into CHUNK-sized writes.
    let buf = Buffer.allocUnsafe(CHUNK);
    let fill = 0;
    const flush = (): void => {
      if (fill === 0) return;
      if (!out.write(buf.subarray(0, fill))) {
        s.pause();
        out.once("drain", () => s.resume());
      }
      buf = Buffer.allocUnsafe(CHUNK);
      fill = 0;
    };
    const reader = new FrameReader(
      (piece) => {
        bar.add(piece.length);
        for (let at = 0; at < piece.length; ) {
          const n = Math.min(CHUNK - fill, piece.length - at);
          piece.copy(buf, fill, at, at + n);
          fill += n;
          at += n;
          if (fill === CHUNK) flush();
        }
      },
      () => flush(),
    );
    const onError = (e: Error): void => {
      outErr ??= e;
      s.destroy();
    };
    out.on("error", onError);
    s.on("data", (d: Buffer) => {
      reader.push(d);
      if (reader.ended) reply ??= replyOf(reader.rest().toString("utf8"));
    });
    onStreamClose(
      s,
      ctl,
      () => reply,
      (err) => {
        out.off("error", onError);
        if (outErr !== undefined) reject(fileError("cannot write", file, outErr));
        else if (err !== undefined) reject(err);
        else if (out.writableNeedDrain) out.once("drain", () => resolve());
        else resolve();
      },
    );
  });
}
