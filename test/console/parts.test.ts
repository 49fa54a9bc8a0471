/**
 * The console's pure parts one by one: xenconsoled's capped output buffer, the guest's hvc0
 * (queueing when the out ring is full, dropping past the bound, input only to a reader), the
 * getty's line discipline and commands, and libxl's console keys.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConsoleKeys } from "../../src/console/keys.ts";
import { OutputBuffer } from "../../src/console/output-buffer.ts";
import { ConsoleFront } from "../../src/kernel/hvc.ts";
import { GuestShell, type ShellKernel, shellCommands, splitWords } from "../../src/kernel/shell.ts";
import { ConsoleInterface } from "../../src/ring/byte-ring.ts";

const text = (b: Uint8Array): string => Buffer.from(b).toString("latin1");
const bytes = (s: string): Uint8Array => Buffer.from(s, "latin1");

function page(): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(4096));
}

/** Drains the out ring as a backend would. */
function drain(p: Uint8Array): string {
  const buf = new Uint8Array(2048);
  const r = new ConsoleInterface(p).out.read(buf);
  assert.ok(r.ok);
  return text(buf.subarray(0, r.bytes));
}

describe("OutputBuffer (xenconsoled's buffer, --overflow-data=discard)", () => {
  it("keeps everything up to 5/4 of the cap", () => {
    const b = new OutputBuffer(8);
    b.append(bytes("abcdefghij"));
    assert.equal(b.size, 10);
    assert.equal(text(b.take()), "abcdefghij");
    assert.equal(b.size, 0);
  });

  it("past 5/4 of the cap drops the bytes from max/2 to max (the worked example)", () => {
    const b = new OutputBuffer(8);
    b.append(bytes("abcdefgh"));
    b.append(bytes("ijk"));
    assert.equal(b.discarded, 4);
    assert.equal(b.size, 7);
    assert.equal(text(b.take()), "abcdijk");
  });

  it("stays bounded under a long flood, keeping the oldest half and the newest bytes", () => {
    const b = new OutputBuffer(1000);
    for (let i = 0; i < 500; i++) b.append(bytes(`${String(i).padStart(4, "0")}|`.repeat(20)));
    assert.ok(b.size <= 1250 + 100, `size ${b.size}`);
    const all = text(b.take());
    assert.ok(all.startsWith("0000|0000|"));
    assert.ok(all.endsWith("0499|"));
    assert.equal(b.discarded + all.length, 500 * 100);
  });

  it("cap 0 is unbounded, as xenconsoled without a limit", () => {
    const b = new OutputBuffer(0);
    b.append(new Uint8Array(100_000));
    assert.equal(b.size, 100_000);
  });
});

describe("ConsoleFront (the guest's hvc0)", () => {
  it("writes into the out ring and notifies once per write that moved bytes", () => {
    const p = page();
    let kicks = 0;
    const f = new ConsoleFront({ page: p, notify: () => kicks++ });
    f.print("hello\nworld\n");
    assert.equal(kicks, 1);
    assert.equal(drain(p), "hello\r\nworld\r\n");
  });

  it("queues what does not fit and flushes it, in order, on the backend's kick", () => {
    const p = page();
    let kicks = 0;
    const f = new ConsoleFront({ page: p, notify: () => kicks++ });
    f.write(bytes("a".repeat(2000)));
    f.write(bytes("b".repeat(100)));
    f.write(bytes("c".repeat(10)));
    assert.equal(f.pendingBytes, 2110 - 2048);
    assert.equal(drain(p), `${"a".repeat(2000)}${"b".repeat(48)}`);
    f.onKick();
    assert.equal(f.pendingBytes, 0);
    assert.equal(drain(p), `${"b".repeat(52)}${"c".repeat(10)}`);
    // The first write, the part of the second that fitted, the flush.
    assert.equal(kicks, 3);
  });

  it("never blocks: past its bound it drops the oldest queued bytes and counts them", () => {
    const p = page();
    const f = new ConsoleFront({ page: p, notify: () => {}, pendingMax: 100 });
    f.write(new Uint8Array(2048));
    for (let i = 0; i < 30; i++) f.write(bytes(String(i % 10).repeat(10)));
    assert.equal(f.pendingBytes, 100);
    assert.equal(f.dropped, 200);
    drain(p);
    f.onKick();
    // The newest 100 bytes survive: writes 20 to 29.
    assert.equal(
      drain(p),
      "0123456789".replace(/./g, (d) => d.repeat(10)),
    );
  });

  it("leaves input in the ring until a reader is set, then reads it and notifies", () => {
    const p = page();
    let kicks = 0;
    const f = new ConsoleFront({ page: p, notify: () => kicks++ });
    const intf = new ConsoleInterface(p);
    intf.in.write(bytes("ls\r"));
    f.onKick();
    assert.equal(intf.in.cons, 0);
    assert.equal(kicks, 0);
    const got: string[] = [];
    f.setInput((b) => got.push(text(b)));
    assert.deepEqual(got, ["ls\r"]);
    assert.equal(intf.in.cons, 3);
    assert.equal(kicks, 1);
    f.setInput(null);
    intf.in.write(bytes("x"));
    f.onKick();
    assert.deepEqual(got, ["ls\r"]);
  });
});

function fakeKernel(store: Record<string, string> = {}): { k: ShellKernel; out: () => string } {
  const p = page();
  const con = new ConsoleFront({ page: p, notify: () => {} });
  let seen = "";
  const xs = {
    read: async (path: string) => {
      const v = store[path];
      if (v === undefined) throw new Error("ENOENT");
      return v;
    },
    tryRead: async (path: string) => store[path],
    write: async (path: string, v: string) => {
      store[path] = v;
    },
    directory: async (path: string) => {
      const kids = new Set<string>();
      for (const key of Object.keys(store)) {
        if (key.startsWith(`${path}/`)) kids.add(key.slice(path.length + 1).split("/")[0]!);
      }
      if (kids.size === 0 && store[path] === undefined) throw new Error("ENOENT");
      return [...kids];
    },
  };
  const k = {
    domid: 3,
    name: "guest3",
    xs,
    console: con,
    uptime: () => 1.5,
    modules: ["alice_front"],
    dmesg: () => ["[    0.000001] Booting"],
  } as unknown as ShellKernel;
  return {
    k,
    out: () => {
      seen += drain(p);
      con.onKick();
      seen += drain(p);
      return seen;
    },
  };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 10));

describe("GuestShell (the getty on hvc0)", () => {
  it("prints a banner and a prompt, echoes input and answers a command", async () => {
    const { k, out } = fakeKernel();
    const sh = new GuestShell(k);
    sh.start();
    sh.input(bytes("echo hi there\r"));
    await settle();
    const o = out();
    assert.match(o, /xenlab guest3 hvc0 \(domain 3\)\r\n/);
    assert.ok(o.endsWith("root@guest3:~# echo hi there\r\nhi there\r\nroot@guest3:~# "), JSON.stringify(o));
  });

  it("edits the line: backspace, ^U, ^C; a CR LF pair ends one line", async () => {
    const { k, out } = fakeKernel();
    const sh = new GuestShell(k);
    sh.input(bytes("echo abX\x7fc\r\n"));
    await settle();
    sh.input(bytes("junk\x15echo d\n"));
    await settle();
    sh.input(bytes("nope\x03"));
    await settle();
    const o = out();
    const erase = "\b \b";
    assert.ok(o.includes(`echo abX${erase}c\r\nabc\r\n`), JSON.stringify(o));
    assert.ok(o.includes(`junk${erase.repeat(4)}echo d\r\nd\r\n`), JSON.stringify(o));
    assert.match(o, /nope\^C\r\nroot@guest3:~# $/);
    assert.doesNotMatch(o, /command not found/);
  });

  it("runs the commands modules add (shellCommands), and lists them in help", async () => {
    const { k } = fakeKernel();
    const subsystems = new Map<unknown, unknown>();
    const withTable = Object.assign(k, {
      subsystem: <T>(cls: abstract new (...a: never[]) => T, make: () => T): T => {
        if (!subsystems.has(cls)) subsystems.set(cls, make());
        return subsystems.get(cls) as T;
      },
    }) as ShellKernel;
    shellCommands(withTable as Required<Pick<ShellKernel, "subsystem">>).set("hello", {
      help: "hello [NAME]              greets",
      run: (args) => `hello ${args[0] ?? "world"}\n`,
    });
    const sh = new GuestShell(withTable);
    assert.equal(await sh.execute("hello xen"), "hello xen\n");
    assert.match(await sh.execute("help"), /\n {2}hello \[NAME\] {14}greets\n$/);
    assert.equal(await sh.execute("nope"), "nope: command not found\n");
  });

  it("reads and lists XenStore, relative paths and all, and says what it cannot", async () => {
    const { k } = fakeKernel({
      "/local/domain/3": "",
      "/local/domain/3/name": "guest3",
      "/local/domain/3/data": "",
      "/local/domain/3/data/x": "1",
      name: "guest3",
    });
    const sh = new GuestShell(k);
    assert.equal(await sh.execute("xenstore-read name"), "guest3\n");
    assert.equal(await sh.execute("xenstore-read /nope"), "xenstore-read: couldn't read path /nope\n");
    assert.equal(await sh.execute("ls"), "name\ndata\n");
    assert.equal(await sh.execute("xenstore-ls"), 'name = "guest3"\ndata = ""\n x = "1"\n');
    assert.equal(await sh.execute("xenstore-write /local/domain/3/data/y 'two words'"), "");
    assert.equal(await sh.execute('xenstore-read "/local/domain/3/data/y"'), "two words\n");
    assert.equal(await sh.execute("uname"), "xenlab\n");
    assert.match(await sh.execute("uname -a"), /^xenlab guest3 \S+ \S+\n$/);
    assert.equal(await sh.execute("lsmod"), "alice_front\n");
    assert.equal(await sh.execute("dmesg"), "[    0.000001] Booting\n");
    assert.equal(await sh.execute("frob"), "frob: command not found\n");
  });

  it("splits words with quotes", () => {
    assert.deepEqual(splitWords(` a  "b c" 'd e' f `), ["a", "b c", "d e", "f"]);
  });
});

describe("parseConsoleKeys (xenconsoled's xs_gather)", () => {
  it("needs ring-ref and port; type and limit are optional", () => {
    assert.deepEqual(parseConsoleKeys({ ringRef: "254", port: "2", type: undefined, limit: "1048576" }), {
      ringRef: 254,
      port: 2,
      type: undefined,
      limit: 1048576,
    });
    assert.equal(
      parseConsoleKeys({ ringRef: undefined, port: "2", type: undefined, limit: undefined }),
      undefined,
    );
    assert.equal(parseConsoleKeys({ ringRef: "x", port: "2", type: undefined, limit: undefined }), undefined);
  });
});
