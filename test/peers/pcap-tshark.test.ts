/**
 * `xenlab up --pcap DIR` end to end, read by Debian's tshark with the shipped dissector
 * (wireshark/xenstore.lua): a socket client's WRITE, READ, a READ of a missing node, a
 * transaction and a watch, and a guest's requests over its ring typed at its console; then
 * tshark's fields for type, path, value, token, req_id, tx_id, errors, the connection's domid
 * and transport, and each reply matched to its request. Under CI=true a missing tshark fails.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { XenstoreCapture } from "../../src/host/capture.ts";
import { PcapngWriter } from "../../src/lib/pcapng-file.ts";
import { CAPTURE_HEADER_SIZE, captureRecord } from "../../src/xenstore/capture.ts";
import { Connection } from "../../src/xenstore/daemon.ts";
import { connectXenstore } from "../../src/xenstore/transport-socket-client.ts";
import { decodeHeader, typeName, XsType } from "../../src/xenstore/wire.ts";
import { readCapture } from "../helpers/pcapng-read.ts";
import { hasCommand, REPO, requirePeer, startXenlab, tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { until } from "../helpers/until.ts";
import { MAIN, type RunningHost, startUp } from "../helpers/up.ts";

const LUA = join(REPO, "wireshark/xenstore.lua");
const ascii = (s: string) => new TextEncoder().encode(s);
const FIELDS = [
  "frame.number",
  "xenstore.dir",
  "xenstore.transport",
  "xenstore.domid",
  "xenstore.conn",
  "xenstore.op",
  "xenstore.type",
  "xenstore.req_id",
  "xenstore.tx_id",
  "xenstore.path",
  "xenstore.value",
  "xenstore.token",
  "xenstore.error",
  "xenstore.tx",
  "xenstore.response_to",
  "xenstore.request_op",
] as const;
type Row = Record<(typeof FIELDS)[number], string>;

/** Types a line at the guest's console and waits until `done` is in what came back. */
async function atConsole(socket: string, lines: readonly [string, RegExp][]): Promise<void> {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, "console", "domU", "--socket", socket], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString("latin1");
  });
  child.stderr!.resume();
  const exited = new Promise((r) => child.once("exit", r));
  child.stdin!.write("\r");
  await until("the guest's prompt", () => out.includes("root@domU:~# "), { ms: 90_000, detail: () => out });
  for (const [line, done] of lines) {
    child.stdin!.write(`${line}\r`);
    await until(`the answer to '${line}'`, () => done.test(out), { ms: 90_000, detail: () => out });
  }
  child.stdin!.write("\x1d");
  // Ctrl-] detaches; a client that does not is killed rather than holding the test.
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(timer);
}

describe("xenlab up --pcap, decoded by tshark with wireshark/xenstore.lua", () => {
  let up: RunningHost | undefined;
  let dir: string;
  let rows: Row[] = [];
  let verbose = "";

  before(async () => {
    dir = tempDir("xenlab-pcap-");
    const socket = join(dir, "socket");
    up = await startUp(socket, ["--pcap", join(dir, "pcap")]);
    const xs = await connectXenstore(socket);
    await xs.write("/pcap-test/a", "hello world");
    await xs.read("/pcap-test/a");
    await assert.rejects(xs.read("/pcap-test/missing"), /ENOENT/);
    const t = await xs.transactionStart();
    await t.write("/pcap-test/b", "in-tx");
    await xs.transactionEnd(t.txId, true);
    const w = xs.watch("/pcap-test", "tok1");
    await w.ready;
    await xs.write("/pcap-test/c", "fires");
    await xs.close();
    await atConsole(socket, [
      // The next prompt after the command's echo: the write is answered (a kernel line may come between).
      ["xenstore-write data/greeting hi", /xenstore-write data\/greeting hi\r\n[\s\S]*root@domU:~# /],
      ["xenstore-read data/nope", /couldn't read path data\/nope/],
    ]);
    await up.stop();
  });
  after(async () => {
    await up?.stop();
  });

  /** The rows of tshark -T fields with the dissector, once. */
  async function decoded(t: import("node:test").TestContext): Promise<Row[] | null> {
    if (!requirePeer(t, "tshark (Debian package tshark)", hasCommand("tshark"))) return null;
    if (rows.length > 0) return rows;
    const file = join(dir, "pcap", "xenstore.pcapng");
    assert.ok(existsSync(file), `${file} exists`);
    const args = ["-X", `lua_script:${LUA}`, "-r", file];
    const r = await runTool(
      "tshark",
      [...args, "-T", "fields", "-E", "separator=|", ...FIELDS.flatMap((f) => ["-e", f])],
      {
        timeoutMs: 60_000,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /Lua: (syntax )?error/i);
    rows = r.stdout
      .trim()
      .split("\n")
      .map((line) => {
        const v = line.split("|");
        return Object.fromEntries(FIELDS.map((f, i) => [f, v[i] ?? ""])) as Row;
      });
    const v = await runTool("tshark", [...args, "-V"], { timeoutMs: 60_000 });
    verbose = v.stdout;
    return rows;
  }

  /** The one request matching `pred`, and the reply tshark matched to it. */
  function exchange(pred: (r: Row) => boolean): { req: Row; rep: Row } {
    const reqs = rows.filter((r) => r["xenstore.dir"] === "0" && pred(r));
    assert.equal(
      reqs.length,
      1,
      `one such request in:\n${rows.map((r) => Object.values(r).join("|")).join("\n")}`,
    );
    const req = reqs[0]!;
    const rep = rows.find((r) => r["xenstore.response_to"] === req["frame.number"]);
    assert.ok(rep, `a reply matched to frame ${req["frame.number"]}`);
    assert.equal(rep["xenstore.req_id"], req["xenstore.req_id"]);
    assert.equal(rep["xenstore.dir"], "1");
    return { req, rep };
  }

  it("decodes every packet without a Lua error or a malformed record", async (t) => {
    if ((await decoded(t)) === null) return;
    assert.ok(rows.length > 20, `${rows.length} packets`);
    assert.ok(
      rows.every((r) => r["xenstore.op"] !== ""),
      "every packet has a type",
    );
    assert.doesNotMatch(verbose, /Lua Error|Malformed|shorter than its headers|does not match the bytes/);
  });

  it("shows a socket client's WRITE: type, path, value, req_id, tx_id 0, and the OK reply matched", async (t) => {
    if ((await decoded(t)) === null) return;
    const { req, rep } = exchange(
      (r) => r["xenstore.op"] === "WRITE" && r["xenstore.path"] === "/pcap-test/a",
    );
    assert.equal(req["xenstore.type"], "11");
    assert.equal(req["xenstore.value"], "hello world");
    assert.equal(req["xenstore.tx_id"], "0");
    assert.deepEqual([req["xenstore.transport"], req["xenstore.domid"]], ["0", "0"]);
    assert.equal(rep["xenstore.op"], "WRITE");
    assert.equal(rep["xenstore.request_op"], "WRITE");
  });

  it("shows the READ's reply value, and ENOENT for the missing node", async (t) => {
    if ((await decoded(t)) === null) return;
    const read = exchange((r) => r["xenstore.op"] === "READ" && r["xenstore.path"] === "/pcap-test/a");
    assert.equal(read.rep["xenstore.value"], "hello world");
    const missing = exchange(
      (r) => r["xenstore.op"] === "READ" && r["xenstore.path"] === "/pcap-test/missing",
    );
    assert.equal(missing.rep["xenstore.op"], "ERROR");
    assert.equal(missing.rep["xenstore.type"], "16");
    assert.equal(missing.rep["xenstore.error"], "ENOENT");
    assert.equal(missing.rep["xenstore.request_op"], "READ");
  });

  it("shows the transaction: the id TRANSACTION_START answers is the tx_id of the WRITE and END in it", async (t) => {
    if ((await decoded(t)) === null) return;
    const w = exchange((r) => r["xenstore.op"] === "WRITE" && r["xenstore.path"] === "/pcap-test/b");
    const tx = w.req["xenstore.tx_id"];
    assert.notEqual(tx, "0");
    assert.equal(w.req["xenstore.value"], "in-tx");
    const conn = w.req["xenstore.conn"];
    const mine = (r: Row) => r["xenstore.conn"] === conn;
    const start = exchange((r) => mine(r) && r["xenstore.op"] === "TRANSACTION_START");
    assert.equal(start.rep["xenstore.tx"], tx);
    const end = exchange(
      (r) => mine(r) && r["xenstore.op"] === "TRANSACTION_END" && r["xenstore.tx_id"] === tx,
    );
    assert.equal(end.rep["xenstore.op"], "TRANSACTION_END");
  });

  it("shows the watch and its events: path and token", async (t) => {
    if ((await decoded(t)) === null) return;
    exchange((r) => r["xenstore.op"] === "WATCH" && r["xenstore.token"] === "tok1");
    const events = rows.filter((r) => r["xenstore.op"] === "WATCH_EVENT" && r["xenstore.token"] === "tok1");
    assert.deepEqual(
      events.map((e) => [e["xenstore.path"], e["xenstore.req_id"], e["xenstore.response_to"]]),
      [
        ["/pcap-test", "0", ""],
        ["/pcap-test/c", "0", ""],
      ],
    );
  });

  it("prints the command that opens the capture with the shipped dissector", () => {
    assert.match(
      up!.stdout(),
      new RegExp(
        `^xenlab up: capturing into ${join(dir, "pcap")}; open with: wireshark -X lua_script:${LUA} ${join(dir, "pcap", "xenstore.pcapng")}$`,
        "m",
      ),
    );
  });

  it("starts with the host publishing the capture directory for netback, before dom0 boots", async (t) => {
    if ((await decoded(t)) === null) return;
    const first = rows[0]!;
    assert.deepEqual(
      [first["xenstore.op"], first["xenstore.path"], first["xenstore.value"]],
      ["WRITE", "/tool/xenlab/pcap", join(dir, "pcap")],
    );
  });

  it("shows the guest's requests over its ring with domid 1, its ENOENT included", async (t) => {
    if ((await decoded(t)) === null) return;
    const w = exchange((r) => r["xenstore.op"] === "WRITE" && r["xenstore.path"] === "data/greeting");
    assert.deepEqual([w.req["xenstore.transport"], w.req["xenstore.domid"]], ["1", "1"]);
    assert.equal(w.req["xenstore.value"], "hi");
    assert.deepEqual([w.rep["xenstore.transport"], w.rep["xenstore.domid"]], ["1", "1"]);
    const r = exchange((x) => x["xenstore.op"] === "READ" && x["xenstore.path"] === "data/nope");
    assert.equal(r.req["xenstore.domid"], "1");
    assert.equal(r.rep["xenstore.error"], "ENOENT");
  });
});

describe("xenlab up --pcap, given what a newcomer may give it", () => {
  const up = (dir: string, ...args: string[]) =>
    runTool(
      process.execPath,
      ["--import", "tsx", MAIN, "up", "--socket", join(dir, "s"), "--no-domu", ...args],
      {
        timeoutMs: 60_000,
      },
    );

  it("refuses a file for a directory in one line, before starting anything", async () => {
    const dir = tempDir("xenlab-pcap-args-");
    writeFileSync(join(dir, "file"), "");
    const r = await up(dir, "--pcap", join(dir, "file"));
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `xenlab up: Cannot capture into '${join(dir, "file")}': not a directory; give --pcap a directory (made if missing)\n`,
    );
    assert.equal(r.stdout, "");
  });

  it("asks for the directory when none is given", async () => {
    const dir = tempDir("xenlab-pcap-args-");
    const r = await up(dir, "--pcap=");
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "xenlab up: --pcap wants a directory to capture into, e.g. --pcap ./pcap\n");
  });
});

describe("wireshark/xenstore.lua on records a daemon would not write", () => {
  it("marks short and inconsistent records, names unknown types, and never fails in Lua", async (t) => {
    if (!requirePeer(t, "tshark (Debian package tshark)", hasCommand("tshark"))) return;
    const file = join(tempDir("xenlab-pcap-odd-"), "odd.pcapng");
    const cap = XenstoreCapture.create(file);
    const ring = new Connection(9, 3, false, "dom3", true);
    const p = (type: number, payload: string, reqId = 1) => ({
      type,
      reqId,
      txId: 0,
      payload: ascii(payload),
    });
    cap.packet("IN", ring, p(XsType.WRITE, "no-nul-at-all"));
    cap.packet("IN", ring, p(999, "x\0"));
    cap.packet("OUT", ring, p(XsType.READ, "", 2));
    cap.packet("OUT", ring, p(XsType.DIRECTORY, "", 3));
    cap.packet("IN", ring, p(XsType.WRITE, "/a\0with\0nul"));
    cap.close();
    // Two records by hand: 5 bytes, and a header announcing 100 bytes with 3 behind it.
    const w = new PcapngWriter(
      { write: (b) => appendFileSync(file, b), close: () => {} },
      { interfaces: [{ linkType: 147 }] },
    );
    w.packet(0, Uint8Array.of(1, 0, 1, 0, 3));
    const lying = captureRecord("IN", ring, p(XsType.READ, "abc"));
    new DataView(lying.buffer).setUint32(CAPTURE_HEADER_SIZE + 12, 100, true);
    w.packet(0, lying);
    w.close();
    const r = await runTool("tshark", ["-X", `lua_script:${LUA}`, "-r", file, "-V"], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /Lua Error|Lua: error/);
    assert.match(r.stdout, /Value: no-nul-at-all|Path: no-nul-at-all/);
    assert.match(r.stdout, /Type name: TYPE999/);
    assert.match(r.stdout, /Value: with\\0nul/);
    assert.match(r.stdout, /Record shorter than its headers/);
    assert.match(r.stdout, /len does not match the bytes captured/);
  });
});

describe("xenlab xenstored --pcap FILE", () => {
  it("refuses a FILE it cannot create, or none, in one line naming the fix", async () => {
    const dir = tempDir("xenlab-pcap-xsd-");
    const xenstored = (...args: string[]) =>
      runTool(process.execPath, ["--import", "tsx", MAIN, "xenstored", "--socket", join(dir, "s"), ...args], {
        timeoutMs: 60_000,
      });
    let r = await xenstored("--pcap", join(dir, "nodir", "xs.pcapng"));
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `xenlab xenstored: Cannot create capture file '${join(dir, "nodir", "xs.pcapng")}': ENOENT: no such file or directory; give --pcap a file path in an existing directory\n`,
    );
    r = await xenstored("--pcap=");
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr.split("\n")[0],
      "xenlab xenstored: --pcap wants a file to capture into, e.g. --pcap xs.pcapng",
    );
  });

  it("captures each request and reply of a socket client, written out when the daemon stops", async () => {
    const file = join(tempDir("xenlab-pcap-xsd-"), "xs.pcapng");
    const d = await startXenlab(["--pcap", file]);
    try {
      const xs = await connectXenstore(d.socket);
      await xs.write("/cap", "v");
      await assert.rejects(xs.read("/cap/none"), /ENOENT/);
      await xs.close();
    } finally {
      await d.stop();
    }
    const c = readCapture(readFileSync(file));
    assert.equal(c.interfaces[0]!.linkType, 147);
    const records = c.packets.map((p) => {
      const h = decodeHeader(p.data, CAPTURE_HEADER_SIZE);
      const payload = new TextDecoder().decode(p.data.subarray(CAPTURE_HEADER_SIZE + 16));
      return `${p.data[1]} ${typeName(h.type)} ${payload}`;
    });
    assert.deepEqual(records, ["0 WRITE /cap\0v", "1 WRITE OK\0", "0 READ /cap/none\0", "1 ERROR ENOENT\0"]);
  });
});
