/**
 * The guest's end of the PV console (Linux `drivers/tty/hvc/hvc_xen.c`, the domU half): output
 * goes into the `out` ring of the `xencons_interface` page, input comes from its `in` ring, and
 * either side notifies the console event channel after moving an index (docs/misc/console.txt).
 *
 * A full out ring. Linux's `domU_write_console` loops, yielding the vCPU, until every byte is in
 * the ring: a guest whose console daemon is gone stops at its next printk. Here the kernel is a
 * worker whose event loop also runs its drivers, and a host may run without a console backend
 * (the hypervisor's own tests), so blocking would hang the domain. Instead what does not fit waits
 * in a bounded queue (like the printk buffer Linux keeps anyway), flushed on the backend's next
 * notification (xenconsoled notifies after every read); past the bound the oldest queued bytes
 * are dropped and counted in `dropped`. Nothing here ever blocks.
 *
 * Input. Bytes in the in ring go to the reader set with `setInput()` (the getty, src/console/
 * shell.ts). With no reader they stay in the ring, as a throttled tty leaves them, and the
 * backend stops filling it once it is full: that is a guest that never reads its input.
 *
 * Nothing here signals by itself except through the `notify` callback the kernel passes
 * (EVTCHNOP_send on the console port), after an index moved.
 */
import { ConsoleInterface } from "../ring/byte-ring.ts";

/** Queued output the guest keeps while the out ring is full (bytes). */
export const CONSOLE_PENDING_MAX = 64 * 1024;

export interface ConsoleFrontOptions {
  /** The console page (start_info's console.domU.mfn). */
  readonly page: Uint8Array;
  /** Kicks the backend (EVTCHNOP_send on start_info's console.domU.evtchn). */
  readonly notify: () => void;
  /** Bound of the output queue (default CONSOLE_PENDING_MAX). */
  readonly pendingMax?: number;
}

export type ConsoleReader = (bytes: Uint8Array) => void;

export class ConsoleFront {
  readonly intf: ConsoleInterface;
  /** Output bytes dropped because the queue was full. */
  dropped = 0;
  /** Set once the backend's indexes were found corrupt; the ring is not used again. */
  corrupt = false;
  readonly #notify: () => void;
  readonly #pendingMax: number;
  readonly #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #reader: ConsoleReader | null = null;
  readonly #inBuf = new Uint8Array(1024);
  readonly #encoder = new TextEncoder();

  constructor(opts: ConsoleFrontOptions) {
    this.intf = new ConsoleInterface(opts.page);
    this.#notify = opts.notify;
    this.#pendingMax = opts.pendingMax ?? CONSOLE_PENDING_MAX;
  }

  /** Output bytes waiting for room in the ring. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Text as a tty with ONLCR prints it: each `\n` goes out as `\r\n` (hvc_console_print too). */
  print(text: string): void {
    this.write(this.#encoder.encode(text.replace(/\n/g, "\r\n")));
  }

  /** Raw bytes to the console: into the ring now, or queued behind what is already waiting. */
  write(bytes: Uint8Array): void {
    if (bytes.length === 0 || this.corrupt) return;
    if (this.#pendingBytes === 0) {
      const r = this.intf.out.write(bytes);
      if (!r.ok) {
        this.corrupt = true;
        return;
      }
      if (r.bytes > 0) this.#notify();
      if (r.bytes === bytes.length) return;
      bytes = bytes.subarray(r.bytes);
    }
    // The caller may reuse its buffer: keep a copy.
    const queued = this.#pendingBytes > 0;
    this.#pending.push(bytes.slice());
    this.#pendingBytes += bytes.length;
    this.#trim();
    // The backend may have made room without our having seen its event yet (a busy guest runs
    // its upcall late): look at the ring now, as Linux's writer polls it.
    if (queued) this.#flush();
  }

  /**
   * The reader of console input (null: nobody reads, the input stays in the ring). Input that
   * arrived before a reader was set is read at once.
   */
  setInput(reader: ConsoleReader | null): void {
    this.#reader = reader;
    if (reader !== null) this.#readInput();
  }

  /** The console event: the backend consumed output or produced input. */
  onKick(): void {
    if (this.corrupt) return;
    this.#flush();
    this.#readInput();
  }

  #flush(): void {
    let moved = false;
    while (this.#pending.length > 0) {
      const head = this.#pending[0]!;
      const r = this.intf.out.write(head);
      if (!r.ok) {
        this.corrupt = true;
        return;
      }
      if (r.bytes > 0) moved = true;
      this.#pendingBytes -= r.bytes;
      if (r.bytes < head.length) {
        this.#pending[0] = head.subarray(r.bytes);
        break;
      }
      this.#pending.shift();
    }
    if (moved) this.#notify();
  }

  /** Drops the oldest queued bytes beyond the bound. */
  #trim(): void {
    let over = this.#pendingBytes - this.#pendingMax;
    while (over > 0) {
      const head = this.#pending[0]!;
      const n = Math.min(over, head.length);
      if (n === head.length) this.#pending.shift();
      else this.#pending[0] = head.subarray(n);
      this.#pendingBytes -= n;
      this.dropped += n;
      over -= n;
    }
  }

  /** domU_read_console: take what is in the in ring, publish in_cons, notify. */
  #readInput(): void {
    // The reader may go (setInput(null)) while it handles a chunk: check it each time.
    for (let reader = this.#reader; reader !== null; reader = this.#reader) {
      const r = this.intf.in.read(this.#inBuf);
      if (!r.ok) {
        this.corrupt = true;
        return;
      }
      if (r.bytes === 0) return;
      // Linux notifies after every read, so the backend refills the ring at once.
      this.#notify();
      reader(this.#inBuf.slice(0, r.bytes));
    }
  }
}
