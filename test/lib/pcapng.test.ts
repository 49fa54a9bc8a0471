/**
 * The pcapng encoders and writer (src/lib/pcapng.ts, src/lib/pcapng-file.ts), read back with the
 * test's own reader (test/helpers/pcapng-read.ts): block framing, options and their padding,
 * 64-bit timestamps, snap lengths, batching in one reused buffer, and a failed write.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Direction,
  enhancedPacketBlock,
  interfaceDescriptionBlock,
  LinkType,
  Opt,
  sectionHeaderBlock,
} from "../../src/lib/pcapng.ts";
import { type ByteSink, PcapngWriter } from "../../src/lib/pcapng-file.ts";
import { blocks, options, optText, readCapture } from "../helpers/pcapng-read.ts";

/** A sink keeping each write apart. */
function memSink(): ByteSink & { writes: Uint8Array[]; closed: boolean; all(): Uint8Array } {
  const s = {
    writes: [] as Uint8Array[],
    closed: false,
    write(b: Uint8Array) {
      s.writes.push(b.slice());
    },
    close() {
      s.closed = true;
    },
    all() {
      return Uint8Array.from(s.writes.flatMap((w) => [...w]));
    },
  };
  return s;
}

describe("sectionHeaderBlock()", () => {
  it("writes version 1.0, the little-endian magic, an unknown section length and its options", () => {
    const b = sectionHeaderBlock({ application: "xenlab", comment: "hi" });
    const [blk] = blocks(b);
    assert.equal(blk!.type, 0x0a0d0d0a);
    const c = readCapture(b);
    assert.deepEqual([c.section.major, c.section.minor, c.section.sectionLength], [1, 0, -1n]);
    assert.equal(optText(c.section.options, Opt.SHB_USERAPPL), "xenlab");
    assert.equal(optText(c.section.options, Opt.COMMENT), "hi");
  });

  it("has no option list at all when given no options: 28 bytes", () => {
    const b = sectionHeaderBlock();
    assert.equal(b.byteLength, 28);
    assert.deepEqual(options(blocks(b)[0]!.body, 16), []);
  });
});

describe("interfaceDescriptionBlock()", () => {
  it("names the link type, snap length, name and microsecond resolution", () => {
    const b = interfaceDescriptionBlock({ linkType: LinkType.USER0, name: "xenstore", snapLen: 9000 });
    const c = readCapture(new Uint8Array([...sectionHeaderBlock(), ...b]));
    const i = c.interfaces[0]!;
    assert.equal(i.linkType, 147);
    assert.equal(i.snapLen, 9000);
    assert.equal(optText(i.options, Opt.IF_NAME), "xenstore");
    assert.deepEqual([...i.options.find((o) => o.code === Opt.IF_TSRESOL)!.value], [6]);
  });

  it("rejects a link type that is not 16 bits", () => {
    assert.throws(() => interfaceDescriptionBlock({ linkType: 70000 }), RangeError);
  });
});

describe("enhancedPacketBlock()", () => {
  it("is 104 bytes for a 60-byte inbound frame with no comment (the worked example)", () => {
    const b = enhancedPacketBlock({
      interfaceId: 0,
      timestampUs: 0,
      data: new Uint8Array(60),
      direction: Direction.inbound,
    });
    assert.equal(b.byteLength, 104);
  });

  it("splits a 64-bit timestamp into high and low words and pads odd data with zeros", () => {
    const ts = 1_796_397_237_910_831;
    const data = Uint8Array.of(1, 2, 3, 4, 5);
    const file = new Uint8Array([
      ...sectionHeaderBlock(),
      ...interfaceDescriptionBlock({ linkType: LinkType.ETHERNET }),
      ...enhancedPacketBlock({
        interfaceId: 0,
        timestampUs: ts,
        data,
        comment: "dom1",
        direction: Direction.outbound,
      }),
    ]);
    const p = readCapture(file).packets[0]!;
    assert.equal(p.timestampUs, BigInt(ts));
    assert.deepEqual([...p.data], [1, 2, 3, 4, 5]);
    assert.equal(p.capturedLength, 5);
    assert.equal(p.originalLength, 5);
    assert.equal(optText(p.options, Opt.COMMENT), "dom1");
    const flags = p.options.find((o) => o.code === Opt.EPB_FLAGS)!.value;
    assert.equal(new DataView(flags.buffer).getUint32(0, true), 2);
    // 28 header + 8 data (5 padded) + comment 4+4 + flags 4+4 + end 4 + trailer 4
    assert.equal(blocks(file)[2]!.length, 60);
  });

  it("rejects an option longer than 65535 bytes", () => {
    assert.throws(
      () =>
        enhancedPacketBlock({
          interfaceId: 0,
          timestampUs: 0,
          data: new Uint8Array(1),
          comment: "x".repeat(70000),
        }),
      /at most 65535/,
    );
  });
});

describe("PcapngWriter", () => {
  it("writes the section header and interfaces at once: a valid, empty capture", () => {
    const s = memSink();
    new PcapngWriter(s, { interfaces: [{ linkType: LinkType.ETHERNET, name: "vif1.0" }] });
    assert.equal(s.writes.length, 1);
    const c = readCapture(s.all());
    assert.equal(c.interfaces.length, 1);
    assert.equal(c.packets.length, 0);
  });

  it("writes queued packets together on flush(), stamped by its clock", () => {
    const s = memSink();
    let t = 1000;
    const w = new PcapngWriter(s, { interfaces: [{ linkType: LinkType.ETHERNET }], now: () => t++ });
    for (let i = 0; i < 5; i++) w.packet(0, Uint8Array.of(i));
    assert.equal(s.writes.length, 1, "nothing written before the flush");
    w.flush();
    assert.equal(s.writes.length, 2);
    const c = readCapture(s.all());
    assert.deepEqual(
      c.packets.map((p) => [p.data[0], p.timestampUs]),
      [0, 1, 2, 3, 4].map((i) => [i, 1000n + BigInt(i)]),
    );
    assert.equal(w.packets, 5);
    w.close();
  });

  it("writes by itself flushDelayMs after the first packet queued", async () => {
    const s = memSink();
    const w = new PcapngWriter(s, { interfaces: [{ linkType: LinkType.ETHERNET }], flushDelayMs: 1 });
    w.packet(0, Uint8Array.of(1));
    w.packet(0, Uint8Array.of(2));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(s.writes.length, 2);
    assert.equal(readCapture(s.all()).packets.length, 2);
    w.close();
  });

  it("writes when its 64 KiB buffer fills, and grows it for a larger packet; reused space is padded with zeros", () => {
    const s = memSink();
    const w = new PcapngWriter(s, { interfaces: [{ linkType: LinkType.ETHERNET }] });
    for (let i = 0; i < 100; i++) w.packet(0, new Uint8Array(1001).fill(0xff));
    assert.ok(s.writes.length >= 2, "a full buffer was written before the flush");
    w.packet(0, new Uint8Array(100_001).fill(7));
    w.packet(0, Uint8Array.of(1, 2, 3));
    w.close();
    const c = readCapture(s.all());
    assert.equal(c.packets.length, 102);
    assert.equal(c.packets[100]!.data.byteLength, 100_001);
    assert.deepEqual([...c.packets[101]!.data], [1, 2, 3]);
  });

  it("numbers interfaces added later after the first ones", () => {
    const s = memSink();
    const w = new PcapngWriter(s, { interfaces: [{ linkType: LinkType.USER0 }] });
    assert.equal(w.addInterface({ linkType: LinkType.ETHERNET, name: "later" }), 1);
    w.packet(1, Uint8Array.of(9));
    w.close();
    const c = readCapture(s.all());
    assert.equal(c.interfaces[1]!.linkType, 1);
    assert.equal(c.packets[0]!.interfaceId, 1);
  });

  it("cuts a packet to the interface's snap length and keeps its original length", () => {
    const s = memSink();
    const w = new PcapngWriter(s, { interfaces: [{ linkType: LinkType.ETHERNET, snapLen: 4 }] });
    w.packet(0, Uint8Array.of(1, 2, 3, 4, 5, 6));
    w.close();
    const p = readCapture(s.all()).packets[0]!;
    assert.deepEqual([...p.data], [1, 2, 3, 4]);
    assert.equal(p.originalLength, 6);
  });

  it("rejects a packet on an interface it does not have", () => {
    const w = new PcapngWriter(memSink(), { interfaces: [{ linkType: LinkType.ETHERNET }] });
    assert.throws(() => w.packet(1, Uint8Array.of(0)), /No interface 1/);
  });

  it("close() writes what is queued and closes the sink; later packets are ignored", () => {
    const s = memSink();
    const w = new PcapngWriter(s, { interfaces: [{ linkType: LinkType.ETHERNET }] });
    w.packet(0, Uint8Array.of(7));
    w.close();
    assert.ok(s.closed);
    w.packet(0, Uint8Array.of(8));
    assert.equal(readCapture(s.all()).packets.length, 1);
    assert.equal(w.packets, 1);
  });

  it("stops capturing after a failed write and reports it once", () => {
    let fail = false;
    const errors: string[] = [];
    const s = memSink();
    const w = new PcapngWriter(
      {
        write: (b) => {
          if (fail) throw new Error("ENOSPC: no space left on device");
          s.write(b);
        },
        close: () => s.close(),
      },
      { interfaces: [{ linkType: LinkType.ETHERNET }], onError: (e) => errors.push(e.message) },
    );
    fail = true;
    w.packet(0, Uint8Array.of(1));
    w.flush();
    w.packet(0, Uint8Array.of(2));
    w.flush();
    assert.deepEqual(errors, ["ENOSPC: no space left on device"]);
    assert.ok(w.closed && s.closed);
  });
});
