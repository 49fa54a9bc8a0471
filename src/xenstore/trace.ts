/**
 * The daemon's trace (C xenstored `-T FILE`, `trace()` and `trace_io()` of xenstored_core.c):
 * every request and reply, and a few events, appended to a file in C's line format. CONTROL
 * switches it (`log on|off`), moves it (`logfile FILE`) and writes the memory report into it
 * (`memreport`). The files themselves are an injected collaborator (`TraceFiles`; Node's file
 * system in state-files.ts), so this layer stays free of I/O.
 *
 * The format is C's:
 *
 *   (blank line)
 *   ***                                   each time the file is (re)opened
 *   CREATE connection 0x3                 a client connected
 *   IN 0x3 20261204 13:39:21 WRITE (/a 1)
 *   OUT 0x3 20261204 13:39:21 WRITE (OK )
 *   DESTROY connection 0x3                the client went away
 *
 * A request or reply line gives the direction, the connection, the local date and time, the
 * message type (`**UNKNOWN**` for a type xenstored does not know) and the payload with each
 * NUL shown as a space. Where C prints the connection's address, xenlab prints its number in
 * hex: both name one connection for its lifetime. C also traces its write-rate-limit state
 * (`wrl: ...` lines); xenlab does not.
 */
import { typeName, type XsPacket, XsType } from "./wire.ts";

/** The logging the trace needs (an XsLogger fits). */
export interface TraceLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** An open file the trace appends to. Text is written one byte per character (latin1). */
export interface TraceFile {
  write(text: string): void;
  close(): void;
}

/** Where trace and report files are opened. */
export interface TraceFiles {
  /**
   * Opens `path` for appending, creating it with `mode` if missing (C: `O_WRONLY | O_CREAT |
   * O_APPEND`). Throws an Error saying why when it cannot.
   */
  openAppend(path: string, mode: number): TraceFile;
}

export interface TraceOptions {
  /** The trace file (`-T`); null: none until `logfile` names one. */
  readonly file?: string | null;
  readonly log?: TraceLogger;
  /** The clock of the trace lines (tests pass their own). */
  readonly now?: () => Date;
}

/** C opens the trace file with mode 0600; `fopen(..., "a")` creates a report with 0666 (umask applies). */
const TRACE_MODE = 0o600;
const REPORT_MODE = 0o666;

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** `20261204 13:39:21`: C's `%04d%02d%02d %02d:%02d:%02d` of `localtime`. */
function stamp(d: Date): string {
  return (
    `${pad(d.getFullYear(), 4)}${pad(d.getMonth() + 1)}${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** The connection as a trace line names it. */
export function traceConnection(id: number): string {
  return `0x${id.toString(16)}`;
}

/** C `sockmsg_string`: the type's name, `**UNKNOWN**` for codes without a handler's name. */
function traceType(type: number): string {
  return type === XsType.INVALID || typeName(type) === `TYPE${type}` ? "**UNKNOWN**" : typeName(type);
}

/** One request or reply line (C `trace_io`), without I/O. */
export function traceLine(dir: "IN" | "OUT", connId: number, p: XsPacket, now: Date): string {
  let body = "";
  for (const b of p.payload) body += b === 0 ? " " : String.fromCharCode(b);
  return `${dir} ${traceConnection(connId)} ${stamp(now)} ${traceType(p.type)} (${body})\n`;
}

/**
 * The trace's state, as C keeps it in `tracefile` (the name) and `tracefd` (the open file):
 * a name may be set while the file is closed (`log off`), and `log on` reopens it.
 */
export class Trace {
  readonly #files: TraceFiles | null;
  readonly #log: TraceLogger | null;
  readonly #now: () => Date;
  #file: string | null;
  #out: TraceFile | null = null;

  /** `files` null: no file system (a daemon inside tests or a host), the trace stays closed. */
  constructor(files: TraceFiles | null, opts: TraceOptions = {}) {
    this.#files = files;
    this.#file = opts.file ?? null;
    this.#log = opts.log ?? null;
    this.#now = opts.now ?? (() => new Date());
  }

  /** The trace file's name, open or not (C `tracefile`). */
  get file(): string | null {
    return this.#file;
  }

  /** Whether lines are being written (C `tracefd >= 0`). */
  get open(): boolean {
    return this.#out !== null;
  }

  /**
   * C `reopen_log` (`log on`, SIGHUP, start-up): with a file named, closes it and opens it
   * again for appending, then writes the `***` separator. A file that cannot be opened leaves
   * the trace closed, as in C, and is logged.
   */
  reopen(): void {
    if (this.#file === null || this.#files === null) return;
    this.close();
    try {
      this.#out = this.#files.openAppend(this.#file, TRACE_MODE);
    } catch (e) {
      this.#log?.error({ file: this.#file, err: (e as Error).message }, "Could not open tracefile");
      return;
    }
    this.write("\n***\n");
  }

  /** C `close_log` (`log off`): stops writing; the name is kept. */
  close(): void {
    const out = this.#out;
    this.#out = null;
    out?.close();
  }

  /** CONTROL `logfile FILE` (C `do_control_logfile`): closes the trace and reopens it at `path`. */
  moveTo(path: string): void {
    this.close();
    this.#file = path;
    this.reopen();
  }

  /** C `trace()`: appends `text` when the trace is open. */
  write(text: string): void {
    if (this.#out !== null) this.#append(this.#out, text);
  }

  /** A request read (`IN`) or a packet written (`OUT`) on connection `connId`. */
  io(dir: "IN" | "OUT", connId: number, p: XsPacket): void {
    if (this.#out !== null) this.#append(this.#out, traceLine(dir, connId, p, this.#now()));
  }

  /** A failed write (a full disk) loses the text, as C ignores `write()`'s result; it is logged. */
  #append(f: TraceFile, text: string): void {
    try {
      f.write(text);
    } catch (e) {
      this.#log?.warn({ err: (e as Error).message }, "trace: write failed");
    }
  }

  /** C `trace_create` / `trace_destroy` of a connection. */
  connection(event: "CREATE" | "DESTROY", connId: number): void {
    this.write(`${event} connection ${traceConnection(connId)}\n`);
  }

  /**
   * CONTROL `memreport [FILE]` (C `do_control_memreport`): appends `report` to `path`, or
   * without one to the open trace, or else to the trace file opened for the report. False
   * when there is nowhere to write it (no trace file named, or the file cannot be opened):
   * C's EBADF.
   */
  report(report: string, path: string | null): boolean {
    if (path === null && this.#out !== null) {
      this.#append(this.#out, report);
      return true;
    }
    const target = path ?? this.#file;
    if (target === null || this.#files === null) return false;
    let f: TraceFile;
    try {
      f = this.#files.openAppend(target, REPORT_MODE);
    } catch (e) {
      this.#log?.warn({ file: target, err: (e as Error).message }, "memreport: cannot open file");
      return false;
    }
    this.#append(f, report);
    f.close();
    return true;
  }
}
