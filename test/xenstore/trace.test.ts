/**
 * The trace file (src/xenstore/trace.ts) and the CONTROL commands on it, over in-memory files:
 * C xenstored's line format, `log on|off`, `logfile`, `memreport` and where its report goes,
 * and xenlab's memory report.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { memoryReport } from "../../src/xenstore/control.ts";
import { Trace, type TraceFile, type TraceFiles, traceLine } from "../../src/xenstore/trace.ts";
import { XsType } from "../../src/xenstore/wire.ts";
import { Scenario } from "./scenario.ts";

/** Files in a map; a path under `/missing/` cannot be opened, writes fail while `full`. */
class MemFiles implements TraceFiles {
  readonly files = new Map<string, string>();
  readonly modes = new Map<string, number>();
  open = 0;
  full = false;

  openAppend(path: string, mode: number): TraceFile {
    if (path.startsWith("/missing/")) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
    if (!this.files.has(path)) {
      this.files.set(path, "");
      this.modes.set(path, mode);
    }
    this.open++;
    let closed = false;
    return {
      write: (text) => {
        assert.ok(!closed, "write after close");
        if (this.full) throw new Error("ENOSPC: no space left on device, write");
        this.files.set(path, this.files.get(path) + text);
      },
      close: () => {
        closed = true;
        this.open--;
      },
    };
  }
}

const at = new Date(2026, 11, 4, 13, 39, 21);
const bytes = (s: string) => Uint8Array.from([...s].map((c) => c.charCodeAt(0)));
const packet = (type: number, payload: string) => ({ type, reqId: 7, txId: 0, payload: bytes(payload) });

function logged(): {
  warn: string[];
  error: string[];
  log: { warn(o: object, m: string): void; error(o: object, m: string): void };
} {
  const warn: string[] = [];
  const error: string[] = [];
  return { warn, error, log: { warn: (_o, m) => warn.push(m), error: (_o, m) => error.push(m) } };
}

describe("traceLine()", () => {
  it("writes C's trace_io line: direction, connection, local time, type, payload with NULs as spaces", () => {
    assert.equal(
      traceLine("IN", 3, packet(XsType.WRITE, "/a\x001"), at),
      "IN 0x3 20261204 13:39:21 WRITE (/a 1)\n",
    );
    assert.equal(
      traceLine("OUT", 26, packet(XsType.WRITE, "OK\0"), at),
      "OUT 0x1a 20261204 13:39:21 WRITE (OK )\n",
    );
  });

  it("names types C xenstored has no name for **UNKNOWN** and keeps payload bytes as they are", () => {
    assert.equal(traceLine("IN", 1, packet(20, ""), at), "IN 0x1 20261204 13:39:21 **UNKNOWN** ()\n");
    assert.equal(
      traceLine("IN", 1, packet(XsType.INVALID, ""), at),
      "IN 0x1 20261204 13:39:21 **UNKNOWN** ()\n",
    );
    assert.equal(
      traceLine("IN", 1, packet(XsType.READ, "\xe9\0"), at),
      "IN 0x1 20261204 13:39:21 READ (\xe9 )\n",
    );
  });
});

describe("Trace", () => {
  it("opens its file with the *** line and mode 0600, and appends lines while open", () => {
    const files = new MemFiles();
    const t = new Trace(files, { file: "/t", now: () => at });
    assert.equal(t.open, false);
    t.reopen();
    t.io("IN", 1, packet(XsType.READ, "/a\0"));
    t.connection("DESTROY", 1);
    assert.equal(
      files.files.get("/t"),
      "\n***\nIN 0x1 20261204 13:39:21 READ (/a )\nDESTROY connection 0x1\n",
    );
    assert.equal(files.modes.get("/t"), 0o600);
  });

  it("log off stops the lines and log on starts them again after a new *** line", () => {
    const files = new MemFiles();
    const t = new Trace(files, { file: "/t" });
    t.reopen();
    t.close();
    t.write("dropped\n");
    assert.equal(files.open, 0);
    t.reopen();
    t.write("kept\n");
    assert.equal(files.files.get("/t"), "\n***\n\n***\nkept\n");
    t.reopen();
    assert.equal(files.open, 1, "reopening closes the old file");
  });

  it("does nothing on log on without a file named, or without a file system", () => {
    const files = new MemFiles();
    const t = new Trace(files);
    t.reopen();
    assert.equal(t.open, false);
    assert.equal(files.files.size, 0);
    const none = new Trace(null, { file: "/t" });
    none.reopen();
    assert.equal(none.open, false);
  });

  it("logfile closes the trace and reopens it at the new file", () => {
    const files = new MemFiles();
    const t = new Trace(files, { file: "/old" });
    t.reopen();
    t.moveTo("/new");
    t.write("line\n");
    assert.equal(files.files.get("/old"), "\n***\n");
    assert.equal(files.files.get("/new"), "\n***\nline\n");
    assert.equal(t.file, "/new");
    assert.equal(files.open, 1);
  });

  it("leaves the trace closed and logs when the file cannot be opened", () => {
    const files = new MemFiles();
    const l = logged();
    const t = new Trace(files, { file: "/t", log: l.log });
    t.reopen();
    t.moveTo("/missing/t");
    assert.equal(t.open, false);
    assert.equal(t.file, "/missing/t");
    assert.deepEqual(l.error, ["Could not open tracefile"]);
  });

  it("loses, and logs, text it cannot write instead of throwing", () => {
    const files = new MemFiles();
    const l = logged();
    const t = new Trace(files, { file: "/t", log: l.log });
    t.reopen();
    files.full = true;
    t.write("lost\n");
    assert.equal(t.report("report\n", null), true);
    assert.equal(l.warn.length, 2);
  });

  it("puts a report into the open trace, else the trace file, else FILE; nowhere is false", () => {
    const files = new MemFiles();
    const t = new Trace(files, { file: "/t" });
    assert.equal(t.report("R0\n", null), true, "a named trace file, never opened");
    t.reopen();
    assert.equal(t.report("R1\n", null), true);
    t.close();
    assert.equal(t.report("R2\n", null), true);
    assert.equal(files.files.get("/t"), "R0\n\n***\nR1\nR2\n");
    assert.equal(t.report("R3\n", "/r"), true);
    assert.equal(t.report("R4\n", "/r"), true);
    assert.equal(files.files.get("/r"), "R3\nR4\n");
    assert.equal(files.modes.get("/r"), 0o666);
    assert.equal(t.report("R5\n", "/missing/r"), false);
    assert.equal(new Trace(files).report("R6\n", null), false);
    assert.equal(files.open, 0);
  });
});

describe("CONTROL log, logfile and memreport", () => {
  function traced() {
    const files = new MemFiles();
    const trace = new Trace(files, { file: "/t", now: () => at });
    trace.reopen();
    return { files, s: new Scenario({ trace }) };
  }

  it("answers as C xenstored does, bad arguments EINVAL", () => {
    const { s } = traced();
    s.run([
      { who: "dom0", op: "CONTROL", arg: "log|off|", expect: "OK|" },
      { who: "dom0", op: "CONTROL", arg: "log|on|", expect: "OK|" },
      { who: "dom0", op: "CONTROL", arg: "log|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "log|x|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "log|on|off|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "logfile|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "logfile|a|b|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "logfile|/missing/t|", expect: "OK|", note: "C: OK, trace closed" },
      { who: "dom0", op: "CONTROL", arg: "memreport|a|b|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "memreport|/missing/r|", expect: "!EINVAL", note: "C: EBADF" },
      { who: "dom0", op: "CONTROL", arg: "memreport|/r|", expect: "OK|" },
      { who: "dom5", op: "CONTROL", arg: "log|off|", expect: "!EACCES" },
    ]);
  });

  it("answers memreport EINVAL when no trace file is named (C's EBADF)", () => {
    const s = new Scenario({ trace: new Trace(new MemFiles()) });
    s.run([
      { who: "dom0", op: "CONTROL", arg: "memreport|", expect: "!EINVAL" },
      { who: "dom0", op: "CONTROL", arg: "logfile|/t|", expect: "OK|" },
      { who: "dom0", op: "CONTROL", arg: "memreport|", expect: "OK|" },
    ]);
  });

  it("switches the trace: log off, log on, logfile", () => {
    const { files, s } = traced();
    s.send("dom0", "CONTROL", "log|off|");
    s.send("dom0", "CONTROL", "check|");
    s.send("dom0", "CONTROL", "log|on|");
    s.send("dom0", "CONTROL", "check|");
    s.send("dom0", "CONTROL", "logfile|/moved|");
    s.send("dom0", "CONTROL", "check|");
    const t = files.files.get("/t")!;
    assert.equal((t.match(/Checking store \.\.\./g) ?? []).length, 1, "one check traced in /t");
    assert.equal((t.match(/\*\*\*/g) ?? []).length, 2);
    assert.match(
      files.files.get("/moved")!,
      /^\n\*\*\*\nChecking store \.\.\.\nChecking store complete\.\n$/,
    );
  });

  it("writes the memory report into the trace or FILE", () => {
    const { files, s } = traced();
    s.send("dom0", "CONTROL", "memreport|");
    s.send("dom0", "CONTROL", "memreport|/r|");
    assert.match(files.files.get("/t")!, /xenstored memory report/);
    assert.match(files.files.get("/r")!, /^xenstored memory report/);
  });

  it("reports per domain what the quota accounting counts, then the totals", () => {
    const s = new Scenario();
    s.run([
      { who: "dom0", op: "WRITE", arg: "/local/domain/5|", expect: "OK|" },
      { who: "dom0", op: "SET_PERMS", arg: "/local/domain/5|n5|", expect: "OK|" },
      { who: "dom5", op: "WRITE", arg: "data|12345", expect: "OK|" },
      { who: "dom5", op: "WATCH", arg: "data|tok|", expect: "OK|", events: ["dom5 data tok"] },
      { who: "dom5", op: "TRANSACTION_START", arg: "|", expect: /^\d+\|$/ },
    ]);
    const r = memoryReport(s.core);
    const dom5 = /^Domain 5:\n([\s\S]*?)(?=^Domain|^Total)/m.exec(r)?.[1] ?? "";
    assert.match(dom5, /^ {2}nodes +: +2$/m);
    assert.match(
      dom5,
      new RegExp(
        `^ {2}memory +: +${s.core.accounts.memory(5)} \\(quota 2621440, warning at 2097152\\)$`,
        "m",
      ),
    );
    assert.match(dom5, /^ {2}watches +: +1$/m);
    assert.match(dom5, /^ {2}transactions +: +1$/m);
    assert.match(dom5, /^ {2}connections +: +1$/m);
    assert.match(dom5, /^ {4}0x[0-9a-f]+ dom5: 1 watches, 1 transactions$/m);
    assert.match(r, /^Domain 0:\n {2}nodes +: +\d+\n {2}memory +: +\d+ \(no quota: dom0\)$/m);
    const nodes = [...r.matchAll(/^ {2}nodes +: +(\d+)$/gm)].map((m) => Number(m[1]));
    assert.equal(nodes.at(-1), s.core.store.nodes.size, "the total counts every node");
  });
});
