/**
 * The baseline side of `xenlab bench blk`: a plain worker thread that runs the same loads
 * (blk-load.ts) against the image file with node:fs (one FileHandle, positional reads and
 * writes through libuv's thread pool), as a program in dom0 would without any PV disk between.
 * It runs in a worker, not the bench's main thread, so it pays the same thread hops as the guest
 * side (the guest's loop runs in a domain's worker).
 *
 * workerData: { path }. Messages in: { id, spec: LoadSpec } and { id, close: true }; out:
 * { id, result: LoadResult } or { id, error }.
 */
import { open } from "node:fs/promises";
import { parentPort, workerData } from "node:worker_threads";
import { type LoadSpec, runLoad, type SectorIO } from "./blk-load.ts";

export interface FileWorkerData {
  readonly path: string;
}

export type FileRequest = { id: number; spec: LoadSpec } | { id: number; close: true };

const SECTOR = 512;
const port = parentPort!;
const fh = await open((workerData as FileWorkerData).path, "r+");

const io: SectorIO = {
  async read(sector, count) {
    const buf = Buffer.allocUnsafe(count * SECTOR);
    const { bytesRead } = await fh.read(buf, 0, buf.length, sector * SECTOR);
    if (bytesRead !== buf.length) throw new Error(`Short read at sector ${sector}: ${bytesRead} bytes`);
    return buf;
  },
  async write(sector, data) {
    const { bytesWritten } = await fh.write(data, 0, data.length, sector * SECTOR);
    if (bytesWritten !== data.length)
      throw new Error(`Short write at sector ${sector}: ${bytesWritten} bytes`);
  },
};

port.on("message", (m: FileRequest) => {
  if ("close" in m) {
    void fh.close().then(() => {
      port.postMessage({ id: m.id, result: null });
      port.close();
    });
    return;
  }
  runLoad(io, m.spec).then(
    (result) => port.postMessage({ id: m.id, result }),
    (e: unknown) => port.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) }),
  );
});
port.postMessage({ ready: true });
