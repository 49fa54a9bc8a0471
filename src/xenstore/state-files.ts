/**
 * xenstored's files on Node's file system: the state directory (the StateFiles the journal,
 * src/xenstore/journal.ts, writes through) and the trace and memory-report files (the
 * TraceFiles of src/xenstore/trace.ts). Kept apart because the xenstore layer does no I/O
 * (biome.json), as the Unix-socket helpers live apart in src/lib/unix-socket.ts.
 */
import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import type { StateDumpFiles } from "./daemon.ts";
import { type StateFile, type StateFiles, TMP_SUFFIX } from "./journal.ts";
import type { TraceFile, TraceFiles } from "./trace.ts";

function writeAll(fd: number, b: Uint8Array): void {
  let off = 0;
  while (off < b.byteLength) off += writeSync(fd, b, off, b.byteLength - off);
}

class FdFile implements StateFile {
  #fd: number;

  constructor(fd: number) {
    this.#fd = fd;
  }

  append(b: Uint8Array): void {
    writeAll(this.#fd, b);
  }

  datasync(): void {
    fdatasyncSync(this.#fd);
  }

  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
}

/** The files of `dir` (created if missing). */
export class DirStateFiles implements StateFiles {
  readonly where: string;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.where = dir;
  }

  read(name: string): Uint8Array | null {
    try {
      return readFileSync(join(this.where, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  replace(name: string, parts: readonly Uint8Array[], sync: boolean): StateFile {
    const path = join(this.where, name);
    // Not O_APPEND: this process is the only writer, and the offset after the header is where
    // the next append goes.
    const fd = openSync(path + TMP_SUFFIX, "w");
    try {
      for (const p of parts) writeAll(fd, p);
      if (sync) fsyncSync(fd);
      renameSync(path + TMP_SUFFIX, path);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new FdFile(fd);
  }

  remove(name: string): void {
    rmSync(join(this.where, name), { force: true });
  }

  syncDir(): void {
    const fd = openSync(this.where, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * Trace and report files, appended to with a synchronous write per line, as C's `write()`:
 * a line is in the file before the reply it traces leaves.
 */
export class NodeTraceFiles implements TraceFiles {
  openAppend(path: string, mode: number): TraceFile {
    const fd = openSync(path, "a", mode);
    const file = new FdFile(fd);
    return {
      write: (text) => file.append(Buffer.from(text, "latin1")),
      close: () => file.close(),
    };
  }
}

/**
 * CONTROL `dump-state`'s file: written to `path.tmp` (mode 0600, as C's `state_dump`) and
 * renamed, so a reader never sees half a dump.
 */
export class NodeDumpFiles implements StateDumpFiles {
  write(path: string, bytes: Uint8Array): void {
    const tmp = path + TMP_SUFFIX;
    let made = false;
    try {
      const fd = openSync(tmp, "w", 0o600);
      made = true;
      try {
        writeAll(fd, bytes);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
    } catch (e) {
      // A failed dump leaves nothing behind (the rename onto a directory fails last).
      if (made) rmSync(tmp, { force: true });
      throw new Error(dumpFailure(e), { cause: e });
    }
  }
}

/** Why a dump could not be written, without Node's syscall and paths (the caller names the file). */
function dumpFailure(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "EISDIR") return "it is a directory";
  if (code === "ENOENT" || code === "ENOTDIR") return "its directory does not exist";
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") return `not writable (${code})`;
  return (e as Error).message;
}
