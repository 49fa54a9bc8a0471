/**
 * blk-cp's data path: a control connection turned into a stream of a disk's bytes, as `xenlab
 * console` turns one into a console's (src/console/stream.ts). One JSON request line, then frames,
 * each a u32 little-endian length and that many bytes; a frame of length 0 ends the data. The
 * reply is one of the control socket's reply lines:
 *
 *   → {"op":"blk-write","domid":1,"vdev":"xvda","sector":16}  frames…  0-frame
 *                                   ← {"ok":true,"value":{"bytes":N}}  (after the guest's flush with "sync":true)
 *   → {"op":"blk-read","domid":1,"vdev":"xvda","sector":16,"count":2048,"bytes":N}
 *                                   ← frames…  0-frame  {"ok":true,"value":{"bytes":N}}
 *
 * A failure ends the exchange with `{"ok":false,"error":…}` at once: for a write as soon as it
 * happens (the client stops sending when the line comes), for a read after a 0-frame.
 *
 * The host keeps the guest's queue full: up to DEPTH requests of CHUNK bytes are in flight to the
 * guest's blkfront (Hypervisor.call, `xen_blkfront` `read`/`write`) while the socket's bytes keep
 * coming (a write pauses the socket when DEPTH are in flight; a read waits for the socket to
 * drain). blkfront splits each into ring requests and waits for pool pages when the guest is
 * small, so the queue depth here bounds the memory of the copy, not the guest's. Reads reach the
 * socket in disk order. Copying in, a partial last sector is a read-modify-write (the rest of the
 * sector keeps what the disk held). The data is in the image (dom0's page cache) when the reply
 * comes, as after `cp`; with `sync` the copy ends with the guest's flush (blkback's fdatasync), as
 * `dd conv=fsync`, so it also survives a power cut.
 */
import { open } from "node:fs/promises";
import type { Socket } from "node:net";
import { errorMessage } from "../lib/errors.ts";
import type { Host } from "./host.ts";

export const SECTOR = 512;
/** Bytes per request to the guest (2048 sectors). */
export const CHUNK = 1 << 20;
/** Requests in flight to the guest at once. */
export const DEPTH = 4;

export interface BlkWriteRequest {
  readonly op: "blk-write";
  readonly domid: number;
  readonly vdev: string;
  readonly sector: number;
  /**
   * A regular file the host reads itself (an absolute path), instead of frames: the bytes skip
   * the socket, and the host sends a progress line `{"progress":N}` per CHUNK before its reply.
   */
  readonly path?: string;
  /** End with the guest's cache flush (blkback's fdatasync), as `dd conv=fsync`; default no, as `cp`. */
  readonly sync?: boolean;
}

export interface BlkReadRequest {
  readonly op: "blk-read";
  readonly domid: number;
  readonly vdev: string;
  readonly sector: number;
  readonly count: number;
  /** Stop after this many bytes (default count × 512). */
  readonly bytes?: number;
}

export type BlkStreamRequest = BlkWriteRequest | BlkReadRequest;

/** The request, when `line` is one of the streaming requests. */
export function parseBlkStreamRequest(line: string): BlkStreamRequest | undefined {
  let r: unknown;
  try {
    r = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof r !== "object" || r === null) return undefined;
  const op = (r as { op?: unknown }).op;
  return op === "blk-write" || op === "blk-read" ? (r as BlkStreamRequest) : undefined;
}

/** A frame's header: the length of the bytes that follow. */
export function frameHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32LE(length, 0);
  return h;
}

/**
 * The frames of a byte stream, as a small state machine: push(chunk) hands each frame's bytes to
 * `onData` as pieces of the chunks given (no copy) and calls `onEnd` at the 0-frame; the bytes
 * after it are returned by rest().
 */
export class FrameReader {
  readonly #onData: (piece: Buffer) => void;
  readonly #onEnd: () => void;
  readonly #head = Buffer.alloc(4);
  #headHave = 0;
  /** Bytes of the current frame still to come. */
  #left = 0;
  #ended = false;
  #rest: Buffer = Buffer.alloc(0);

  constructor(onData: (piece: Buffer) => void, onEnd: () => void) {
    this.#onData = onData;
    this.#onEnd = onEnd;
  }

  get ended(): boolean {
    return this.#ended;
  }

  rest(): Buffer {
    return this.#rest;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#ended) {
        this.#rest = Buffer.concat([this.#rest, chunk.subarray(at)]);
        return;
      }
      if (this.#left > 0) {
        const n = Math.min(this.#left, chunk.length - at);
        this.#left -= n;
        this.#onData(chunk.subarray(at, at + n));
        at += n;
        continue;
      }
      const n = Math.min(4 - this.#headHave, chunk.length - at);
      chunk.copy(this.#head, this.#headHave, at, at + n);
      this.#headHave += n;
      at += n;
      if (this.#headHave < 4) return;
      this.#headHave = 0;
      this.#left = this.#head.readUInt32LE(0);
      if (this.#left === 0) {
        this.#ended = true;
        this.#onEnd();
      }
    }
  }
}

/** Serves one streaming request on `s`; `rest` is what came after its line. */
export async function serveBlkStream(
  host: Host,
  s: Socket,
  r: BlkStreamRequest,
  rest: Buffer,
): Promise<void> {
  // No byte may flow past us while the disk is looked up: a write's frames wait in the socket.
  s.pause();
  const reply = (v: { ok: true; value: unknown } | { ok: false; error: string }): void => {
    if (!s.destroyed) s.end(`${JSON.stringify(v)}\n`);
  };
  try {
    const d = host.hv.info(r.domid);
    if (d === undefined) throw new Error(`No domain ${r.domid}`);
    // A guest's failure (blkfront's BlockIOError, no such disk) reaches the user naming the guest.
    const who = `domain ${d.name} (${d.domid})`;
    const call = (cmd: string, arg: Record<string, unknown>): Promise<unknown> =>
      host.hv.call(r.domid, "xen_blkfront", cmd, { vdev: r.vdev, ...arg }).catch((e: unknown) => {
        const msg = errorMessage(e);
        const fix = msg.includes("(ENOMEM)")
          ? `; give it more than its ${d.maxPages * 4} KiB: 'xenlab create NAME --memory 1024'`
          : "";
        throw new Error(`${who}: ${msg}${fix}`);
      });
    const info = (await call("info", {})) as { sectors: number; readonly: boolean };
    const value =
      r.op === "blk-read"
        ? await readOut(s, r, info, call)
        : r.path !== undefined
          ? await writeFromFile(s, r, r.path, info, call)
          : await writeIn(s, r, info, call, rest);
    reply({ ok: true, value });
  } catch (e) {
    if (r.op === "blk-read" && !s.destroyed) s.write(frameHeader(0));
    reply({ ok: false, error: errorMessage(e) });
  }
}

type Call = (cmd: string, arg: Record<string, unknown>) => Promise<unknown>;

/**
 * CHUNK-sized buffers over SharedArrayBuffers, reused: a host call's argument or result over one
 * crosses to the guest's worker without a copy (postMessage shares it), where a plain buffer
 * would be cloned (a MiB copied on the host's main thread, and a MiB of garbage) per request.
 */
class SharedChunks {
  readonly #free: Buffer[] = [];
  take(): Buffer {
    return this.#free.pop() ?? Buffer.from(new SharedArrayBuffer(CHUNK));
  }
  give(b: Buffer): void {
    this.#free.push(b);
  }
}

/** The frames into the disk from `r.sector`, DEPTH requests in flight; resolves after the flush. */
function writeIn(
  s: Socket,
  r: BlkWriteRequest,
  info: { sectors: number; readonly: boolean },
  call: Call,
  rest: Buffer,
): Promise<{ bytes: number }> {
  if (info.readonly) return Promise.reject(new Error(`${r.vdev} is read-only`));
  if (!(Number.isInteger(r.sector) && r.sector >= 0 && r.sector <= info.sectors))
    return Promise.reject(
      new Error(`sector ${r.sector} is past the end of ${r.vdev} (${info.sectors} sectors)`),
    );
  return new Promise((resolve, reject) => {
    let sector = r.sector;
    let bytes = 0;
    const chunks = new SharedChunks();
    let chunk = chunks.take();
    let fill = 0;
    let inflight = 0;
    let failed = false;
    let ended = false;
    const fail = (e: unknown): void => {
      if (failed) return;
      failed = true;
      s.off("data", onData);
      reject(e);
    };
    const fits = (n: number): boolean => {
      if (sector + n <= info.sectors) return true;
      fail(
        new Error(
          `the data does not fit in ${r.vdev}: it has ${info.sectors} sectors, the copy needs sector ${sector + n - 1}`,
        ),
      );
      return false;
    };
    const done = (): void => {
      if (failed || !ended || inflight > 0) return;
      (r.sync === true ? call("flush", {}) : Promise.resolve()).then(() => resolve({ bytes }), fail);
    };
    const submit = (buf: Buffer, length: number): void => {
      const n = length / SECTOR;
      if (!fits(n)) return;
      const at = sector;
      sector += n;
      inflight++;
      if (inflight >= DEPTH) s.pause();
      call("write", { sector: at, data: buf.subarray(0, length) }).then(() => {
        chunks.give(buf);
        inflight--;
        if (!failed && !ended) s.resume();
        done();
      }, fail);
    };
    const reader = new FrameReader(
      (piece) => {
        bytes += piece.length;
        for (let at = 0; at < piece.length && !failed; ) {
          const n = Math.min(CHUNK - fill, piece.length - at);
          piece.copy(chunk, fill, at, at + n);
          fill += n;
          at += n;
          if (fill === CHUNK) {
            submit(chunk, CHUNK);
            chunk = chunks.take();
            fill = 0;
          }
        }
      },
      () => {
        s.off("data", onData);
        const whole = fill - (fill % SECTOR);
        if (whole > 0) submit(chunk, whole);
        if (failed) return;
        if (whole < fill) {
          // The last, partial sector: keep the rest of what the disk held there.
          const tail = chunk.subarray(whole, fill);
          if (!fits(1)) return;
          const at = sector;
          sector += 1;
          inflight++;
          call("read", { sector: at, count: 1 })
            .then((old) => {
              const data = Buffer.from(old as Uint8Array);
              tail.copy(data);
              return call("write", { sector: at, data });
            })
            .then(() => {
              inflight--;
              done();
            }, fail);
        }
        ended = true;
        done();
      },
    );
    const onData = (d: Buffer): void => reader.push(d);
    s.on("data", onData);
    s.once("close", () => {
      if (!ended) fail(new Error("The client went away before the end of the data"));
    });
    // What came with the request line first, then the socket's bytes (unless the queue is full).
    if (rest.length > 0) reader.push(rest);
    if (!ended && !failed && inflight < DEPTH) s.resume();
  });
}

/**
 * A regular file into the disk from `r.sector`, read by the host into the shared chunks (no
 * socket, no copy on the host's thread: the thread pool's pread fills them), DEPTH requests in
 * flight; a progress line per chunk; resolves after the flush.
 */
async function writeFromFile(
  s: Socket,
  r: BlkWriteRequest,
  path: string,
  info: { sectors: number; readonly: boolean },
  call: Call,
): Promise<{ bytes: number }> {
  if (info.readonly) throw new Error(`${r.vdev} is read-only`);
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const need = Math.ceil(size / SECTOR);
    if (!(Number.isInteger(r.sector) && r.sector >= 0 && r.sector + need <= info.sectors))
      throw new Error(
        `the data does not fit in ${r.vdev}: it has ${info.sectors} sectors, the copy needs sector ${r.sector + need - 1}`,
      );
    const chunks = new SharedChunks();
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    const track = (p: Promise<unknown>, buf: Buffer | null): void => {
      const t: Promise<void> = p.then(
        () => {
          if (buf !== null) chunks.give(buf);
        },
        (e: unknown) => {
          failure ??= e;
        },
      );
      inflight.add(t);
      void t.then(() => inflight.delete(t));
    };
    let sector = r.sector;
    for (let pos = 0; pos < size && failure === undefined; ) {
      const buf = chunks.take();
      const n = Math.min(CHUNK, size - pos);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await fh.read(buf, got, n - got, pos + got);
        if (bytesRead === 0) throw new Error(`${path} became shorter during the copy`);
        got += bytesRead;
      }
      pos += n;
      const whole = n - (n % SECTOR);
      if (whole > 0) track(call("write", { sector, data: buf.subarray(0, whole) }), buf);
      sector += whole / SECTOR;
      if (whole < n) {
        // The file's last, partial sector: keep the rest of what the disk held there.
        const at = sector;
        const old = Buffer.from((await call("read", { sector: at, count: 1 })) as Uint8Array);
        buf.copy(old, 0, whole, n);
        track(call("write", { sector: at, data: old }), null);
      }
      if (!s.destroyed) s.write(`${JSON.stringify({ progress: pos })}\n`);
      while (inflight.size >= DEPTH) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    if (failure !== undefined) throw failure;
    if (r.sync === true) await call("flush", {});
    return { bytes: size };
  } finally {
    await fh.close();
  }
}

/** `r.count` sectors from `r.sector` out as frames, in disk order, DEPTH requests in flight. */
async function readOut(
  s: Socket,
  r: BlkReadRequest,
  info: { sectors: number },
  call: Call,
): Promise<{ bytes: number }> {
  if (!(Number.isInteger(r.sector) && Number.isInteger(r.count) && r.sector >= 0 && r.count >= 0))
    throw new RangeError("sector and count must be whole numbers");
  if (r.sector + r.count > info.sectors)
    throw new Error(`sectors ${r.sector}+${r.count} run past the end of ${r.vdev} (${info.sectors} sectors)`);
  let left = Math.min(r.bytes ?? Number.POSITIVE_INFINITY, r.count * SECTOR);
  const total = left;
  let next = r.sector;
  let toIssue = Math.ceil(left / SECTOR);
  const chunks = new SharedChunks();
  const queue: { p: Promise<unknown>; buf: Buffer }[] = [];
  const issue = (): void => {
    while (queue.length < DEPTH && toIssue > 0) {
      const n = Math.min(CHUNK / SECTOR, toIssue);
      const buf = chunks.take();
      const p = call("read", { sector: next, count: n, into: buf });
      p.catch(() => {}); // awaited in order below; a later one's failure waits its turn
      queue.push({ p, buf });
      next += n;
      toIssue -= n;
    }
  };
  issue();
  while (queue.length > 0) {
    const q = queue.shift()!;
    const data = (await q.p) as Uint8Array;
    const keep = Math.min(left, data.length);
    if (s.destroyed) throw new Error("The client went away");
    s.write(frameHeader(keep));
    // The buffer goes back to the pool once the socket has written it.
    const room = s.write(q.buf.subarray(0, keep), () => chunks.give(q.buf));
    left -= keep;
    issue();
    if (!room) await drained(s);
  }
  s.write(frameHeader(0));
  return { bytes: total };
}

/** Resolves when `s` has room again, or has closed (the next write then finds it destroyed). */
export function drained(s: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      s.off("drain", done);
      s.off("close", done);
      resolve();
    };
    s.once("drain", done);
    s.once("close", done);
  });
}
