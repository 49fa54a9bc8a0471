/**
 * The baseline side of `xenlab bench blk`: a plain worker thread that runs the same loads
 * (blk-load.ts) against the image file with node:fs, as a program in dom0 would without any PV
 * disk between: the fastest honest direct file I/O Node has, one callback `fs.read`/`fs.write`
 * (pread/pwrite on libuv's thread pool) per request on one fd, into and from the load's buffers.
 * (A FileHandle's promise API costs more per call: an earlier baseline used it, in xenlab's
 * favour.) It runs in a worker, not the bench's main thread, so it pays the same thread hops as
 * the guest side (the guest's loop runs in a domain's worker).
 *
 * workerData: { path }. Messages in: { id, spec: LoadSpec } and { id, close: true }; out:
 * { id, result: LoadResult } or { id, error }.
 */
import * as fs from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { errorMessage } from "../lib/errors.ts";
import { alignedBuffer, type LoadSpec, runLoad, type SectorIO } from "./blk-load.ts";

export interface FileWorkerData {
  readonly path: string;
}

export type FileRequest = { id: number; spec: LoadSpec } | { id: number; close: true };

const SECTOR = 512;
const port = parentPort!;
const fd = fs.openSync((workerData as FileWorkerData).path, "r+");

const io: SectorIO<Uint8Array> = {
  alloc: alignedBuffer,
  read(sector, count, into) {
    return new Promise((resolve, reject) => {
      fs.read(fd, into, 0, count * SECTOR, sector * SECTOR, (e, n) => {
        if (e) reject(e);
        else if (n !== count * SECTOR) reject(new Error(`Short read at sector ${sector}: ${n} bytes`));
        else resolve(into);
      });
    });
  },
  write(sector, count, data) {
    const bytes = count * SECTOR;
    return new Promise((resolve, reject) => {
      fs.write(fd, data, 0, bytes, sector * SECTOR, (e, n) => {
        if (e) reject(e);
        else if (n !== bytes) reject(new Error(`Short write at sector ${sector}: ${n} bytes`));
        else resolve();
      });
    });
  },
};

port.on("message", (m: FileRequest) => {
  if ("close" in m) {
    fs.close(fd, () => {
      port.postMessage({ id: m.id, result: null });
      port.close();
    });
    return;
  }
  runLoad(io, m.spec).then(
    (result) => port.postMessage({ id: m.id, result }),
    (e: unknown) => port.postMessage({ id: m.id, error: errorMessage(e) }),
  );
});
port.postMessage({ ready: true });
