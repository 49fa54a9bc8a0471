/**
 * The differential harness itself: what it normalises (transaction ids, DIRECTORY_PART
 * generation counts) and what it must not (anything else), shown with scriptable fake
 * daemons built on our codec; and two reference daemons, which must always agree.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { encodePacket, PacketReader, utf8, type XsPacket, XsType } from "../../src/xenstore/wire.ts";
import { refxsAvailable, requirePeer, startRefxs, tempDir } from "../helpers/peers.ts";
import {
  ScriptRunner,
  type Step,
  type StepRecord,
  showBytes,
  transcriptDifferences,
} from "../helpers/xs-script.ts";
import { PROBE_SECTIONS } from "./probe-steps.ts";

/** A fake daemon: `answer` maps each request to the payloads sent back (type = request's). */
interface Fake {
  socket: string;
  close(): Promise<void>;
}

async function fakeDaemon(answer: (p: XsPacket, conn: Socket) => Uint8Array[]): Promise<Fake> {
  const dir = tempDir("xenlab-fake-");
  const socket = join(dir, "socket");
  const server: Server = createServer((conn) => {
    const reader = new PacketReader();
    conn.on("data", (chunk: Buffer) => {
      for (const p of reader.push(chunk)) {
        for (const payload of answer(p, conn)) {
          conn.write(encodePacket({ type: p.type, reqId: p.reqId, txId: p.txId, payload }));
        }
      }
    });
    conn.on("error", () => {});
  });
  await new Promise<void>((res) => server.listen(socket, res));
  return {
    socket,
    close: () =>
      new Promise((res) => {
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          res();
        });
      }),
  };
}

/** Answers TRANSACTION_START with ids from `txIds` and DIRECTORY_PART with counts from `gens`. */
function numbering(txIds: number[], gens: number[]): (p: XsPacket) => Uint8Array[] {
  return (p) => {
    if (p.type === XsType.TRANSACTION_START) return [utf8(`${txIds.shift()}\0`)];
    if (p.type === XsType.DIRECTORY_PART) return [utf8(`${gens.shift()}\0a\0\0`)];
    return [utf8("OK\0")];
  };
}

const NUMBERED: readonly Step[] = [
  { on: "a", op: "TRANSACTION_START", args: [""], bind: "t1" },
  { on: "a", op: "WRITE", args: ["/x"], value: "1", tx: "t1" },
  { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t1" },
  { on: "a", op: "TRANSACTION_START", args: [""], bind: "t2" },
  { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "t2" },
  { on: "a", op: "DIRECTORY_PART", args: ["/d", "0"] },
  { on: "a", op: "DIRECTORY_PART", args: ["/d", "0"] },
  { on: "a", op: "DIRECTORY_PART", args: ["/d", "0"] },
];

async function transcript(answer: (p: XsPacket, conn: Socket) => Uint8Array[], steps: readonly Step[]) {
  const fake = await fakeDaemon(answer);
  const runner = new ScriptRunner(fake.socket);
  try {
    return await runner.run(steps);
  } finally {
    await runner.close();
    await fake.close();
  }
}

const differences = (a: StepRecord[], b: StepRecord[], steps: readonly Step[]) =>
  transcriptDifferences(steps, a, b, "other");

describe("showBytes()", () => {
  it("shows NULs as \\0, and as \\x00 before a digit", () => {
    assert.equal(showBytes(utf8("a\0b\x001\0")), '"a\\0b\\x001\\0"');
  });
  it("escapes quotes, backslashes and bytes outside printable ASCII", () => {
    assert.equal(showBytes(new Uint8Array([0x22, 0x5c, 0x0a, 0xff])), '"\\"\\\\\\x0a\\xff"');
  });
  it("shows payloads over 160 bytes by length and checksum", () => {
    assert.match(showBytes(new Uint8Array(200)), /^<200 bytes fnv=[0-9a-f]+>$/);
    assert.notEqual(showBytes(new Uint8Array(200)), showBytes(new Uint8Array(200).fill(1)));
  });
});

describe("ScriptRunner normalisation", () => {
  it("finds no difference between daemons that number transactions and generations differently", async () => {
    const a = await transcript(numbering([1, 2], [5, 5, 9]), NUMBERED);
    const b = await transcript(numbering([700, 1], [123456, 123456, 7]), NUMBERED);
    assert.deepEqual(differences(a, b, NUMBERED), []);
  });

  it("finds no difference between reusing a transaction id and not reusing it", async () => {
    const a = await transcript(numbering([1, 1], [5, 5, 9]), NUMBERED);
    const b = await transcript(numbering([1, 2], [5, 5, 9]), NUMBERED);
    assert.deepEqual(differences(a, b, NUMBERED), []);
  });

  it("finds the difference when a generation count changes where the other daemon's stays", async () => {
    const a = await transcript(numbering([1, 2], [5, 5, 9]), NUMBERED);
    const b = await transcript(numbering([1, 2], [5, 6, 6]), NUMBERED);
    const d = differences(a, b, NUMBERED);
    assert.equal(d.length, 1);
    assert.match(d[0] ?? "", /^step 7: /);
  });

  it("finds the difference in a reply's bytes, and in the order of a reply and an event", async () => {
    const steps: Step[] = [{ on: "a", op: "WRITE", args: ["/x"], value: "1" }];
    const event = encodePacket({ type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload: utf8("/x\0t\0") });
    const before = await transcript((p, conn) => {
      if (p.type === XsType.WRITE) conn.write(event);
      return [utf8("OK\0")];
    }, steps);
    const afterwards = await transcript((p, conn) => {
      if (p.type === XsType.WRITE) setImmediate(() => conn.write(event));
      return [utf8("OK\0")];
    }, steps);
    assert.equal(differences(before, afterwards, steps).length, 1);
    const other = await transcript(() => [utf8("OK")], steps);
    assert.equal(differences(before, other, steps).length, 1);
  });

  it("records a dropped connection", async () => {
    const steps: Step[] = [{ on: "a", op: "READ", args: ["/x"] }];
    const got = await transcript((_p, conn) => {
      conn.destroy();
      return [];
    }, steps);
    assert.deepEqual(got[0]?.got, ["<connection closed>"]);
  });
});

describe("two reference C xenstored daemons", () => {
  const stops: (() => Promise<void>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s();
  });

  it("give identical transcripts for probe.py's sequence (the harness is deterministic)", async (t) => {
    if (!requirePeer(t, "reference C xenstored (../shared/refxs, gcc)", refxsAvailable())) return;
    const steps = PROBE_SECTIONS.flatMap(([, s]) => s);
    const records: StepRecord[][] = [];
    for (let i = 0; i < 2; i++) {
      const d = await startRefxs();
      stops.push(() => d.stop());
      const runner = new ScriptRunner(d.socket);
      stops.push(() => runner.close());
      records.push(await runner.run(steps));
    }
    assert.deepEqual(differences(records[0]!, records[1]!, steps), []);
  });
});
