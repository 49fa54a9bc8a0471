/**
 * An in-memory state directory for the journal's tests, which can "kill" the daemon at its
 * n-th file operation: the operation throws Killed, an append first writes a prefix of its
 * bytes (a write cut short between pages), and the files stay as the kill left them. Files
 * are inodes, so an open file follows a rename as a file descriptor does.
 */
import type { StateFile, StateFiles } from "../../src/xenstore/journal.ts";

export class Killed extends Error {
  override readonly name = "Killed";
}

interface Inode {
  data: Buffer;
}

export class MemFiles implements StateFiles {
  readonly where = "memory";
  readonly files = new Map<string, Inode>();
  /** File operations so far (each create, write, rename, sync counts one). */
  ops = 0;
  /** The operation that dies; Infinity: none. */
  killAt = Number.POSITIVE_INFINITY;
  /** Appends completed so far. */
  appends = 0;

  #tick(): boolean {
    this.ops++;
    return this.ops >= this.killAt;
  }

  #die(): never {
    this.killAt = 0; // everything after the kill fails too
    throw new Killed(`killed at file operation ${this.ops}`);
  }

  #write(ino: Inode, b: Uint8Array): void {
    if (this.#tick()) {
      // The kernel took part of the write when the signal came.
      const part = Math.floor(b.byteLength / 2);
      ino.data = Buffer.concat([ino.data, b.subarray(0, part)]);
      this.#die();
    }
    ino.data = Buffer.concat([ino.data, b]);
  }

  read(name: string): Uint8Array | null {
    const ino = this.files.get(name);
    return ino === undefined ? null : Buffer.from(ino.data);
  }

  replace(name: string, parts: readonly Uint8Array[], sync: boolean): StateFile {
    if (this.#tick()) this.#die();
    const ino: Inode = { data: Buffer.alloc(0) };
    this.files.set(`${name}.tmp`, ino);
    for (const p of parts) this.#write(ino, p);
    if (sync && this.#tick()) this.#die();
    if (this.#tick()) this.#die();
    this.files.delete(`${name}.tmp`);
    this.files.set(name, ino);
    return {
      append: (b) => {
        this.#write(ino, b);
        this.appends++;
      },
      datasync: () => {
        if (this.#tick()) this.#die();
      },
      close: () => {},
    };
  }

  remove(name: string): void {
    this.files.delete(name);
  }

  syncDir(): void {
    if (this.#tick()) this.#die();
  }

  /** A copy of the directory as it is now (a kill at this moment). */
  copy(): MemFiles {
    const m = new MemFiles();
    for (const [n, ino] of this.files) m.files.set(n, { data: Buffer.from(ino.data) });
    return m;
  }

  bytes(name: string): Buffer {
    const ino = this.files.get(name);
    if (ino === undefined) throw new Error(`No file "${name}"`);
    return ino.data;
  }

  setBytes(name: string, b: Uint8Array): void {
    this.files.set(name, { data: Buffer.from(b) });
  }
}
