/**
 * The pure parts of the network path: QEMU's stream framing (fed whole and one byte at a time),
 * the IP stack's wire formats and DHCP messages, and the TCP client's state machine against a
 * scripted peer (the worked example of tcp.ts, a lost segment, a reset).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { encodeStreamFrame, STREAM_FRAME_MAX, StreamFrameReader } from "../../src/drivers/net/qemu-stream.ts";
import { DHCP_TYPE, dhcpClientMessage, messageType, parseDhcp } from "../../src/drivers/net/stack/dhcp.ts";
import { TcpConnection, type TcpError } from "../../src/drivers/net/stack/tcp.ts";
import {
  checksum,
  formatIp4,
  parseIp4,
  parseIp4Packet,
  parseTcp,
  parseUdp,
  prefixLength,
  TCP_FLAG,
  tcpSegment,
  udpDatagram,
  writeIp4Header,
} from "../../src/drivers/net/stack/wire.ts";

describe("StreamFrameReader (QEMU's stream netdev framing)", () => {
  it("gives back the frames fed whole or one byte at a time", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 2000 }), { maxLength: 8 }), (frames) => {
        const bytes = Buffer.concat(frames.map(encodeStreamFrame));
        const whole = new StreamFrameReader().push(new Uint8Array(bytes));
        assert.deepEqual(
          whole.map((f) => Buffer.from(f)),
          frames.map((f) => Buffer.from(f)),
        );
        const r = new StreamFrameReader();
        const one: Uint8Array[] = [];
        for (const b of bytes) one.push(...r.push(Uint8Array.of(b)));
        assert.deepEqual(
          one.map((f) => Buffer.from(f)),
          frames.map((f) => Buffer.from(f)),
        );
      }),
      { numRuns: 50 },
    );
  });

  it("puts the length first, big-endian", () => {
    assert.equal(Buffer.from(encodeStreamFrame(Uint8Array.of(1, 2, 3))).toString("hex"), "00000003010203");
  });

  it("stops for good at a length over its limit", () => {
    const r = new StreamFrameReader();
    const bad = new Uint8Array(8);
    new DataView(bad.buffer).setUint32(0, STREAM_FRAME_MAX + 1);
    assert.deepEqual(r.push(bad), []);
    assert.match(r.error!.message, /^Cannot read frame: length 65551 is over 65550 bytes$/);
    assert.deepEqual(r.push(encodeStreamFrame(Uint8Array.of(1))), []);
  });
});

describe("the stack's wire formats", () => {
  it("parses and prints IPv4 addresses and prefixes", () => {
    assert.equal(parseIp4("192.0.2.1"), 0xc0000201);
    assert.equal(formatIp4(0xc0000201), "192.0.2.1");
    assert.equal(parseIp4("256.0.0.1"), undefined);
    assert.equal(parseIp4("example.org"), undefined);
    assert.equal(prefixLength(0xffffff00), 24);
  });

  it("computes RFC 1071's checksum (its worked example)", () => {
    // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    assert.equal(checksum(Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7)), ~0xddf2 & 0xffff);
  });

  it("round-trips IPv4 headers, UDP and TCP segments with valid checksums", () => {
    const src = 0x0a000002;
    const dst = 0x0a000001;
    const udp = udpDatagram(src, dst, 1234, 53, new TextEncoder().encode("hi"));
    const pkt = new Uint8Array(20 + udp.length);
    writeIp4Header(pkt, 0, src, dst, 17, udp.length, 7);
    pkt.set(udp, 20);
    const ip = parseIp4Packet(pkt)!;
    assert.deepEqual([ip.src, ip.dst, ip.proto], [src, dst, 17]);
    const u = parseUdp(ip.payload, src, dst)!;
    assert.deepEqual([u.srcPort, u.dstPort, new TextDecoder().decode(u.payload)], [1234, 53, "hi"]);
    pkt[15]! ^= 1; // a corrupted header fails its checksum
    assert.equal(parseIp4Packet(pkt), undefined);
    const syn = tcpSegment(
      src,
      dst,
      { srcPort: 5, dstPort: 80, seq: 9, ack: 0, flags: TCP_FLAG.syn, window: 100, mss: 1460 },
      new Uint8Array(0),
    );
    const t = parseTcp(syn, src, dst)!;
    assert.deepEqual([t.seq, t.flags, t.mss, t.wscale], [9, TCP_FLAG.syn, 1460, 0]);
  });

  it("builds DHCP requests a server can parse", () => {
    const mac = Uint8Array.of(0, 0x16, 0x3e, 1, 2, 3);
    const m = parseDhcp(
      dhcpClientMessage(DHCP_TYPE.request, 0xabcdef01, mac, { requested: 0xc0000202, server: 0xc0000201 }),
    )!;
    assert.equal(m.xid, 0xabcdef01);
    assert.equal(messageType(m), DHCP_TYPE.request);
    assert.deepEqual([...m.chaddr], [...mac]);
    assert.deepEqual([...m.options.get(50)!], [192, 0, 2, 2]);
  });
});

/** A TCP client wired to a script: what it sends is recorded, what the peer says is fed back. */
function scripted() {
  const sent: { seq: number; ack: number; flags: number; len: number; data: string }[] = [];
  let closed: TcpError | null | undefined;
  const c = new TcpConnection({
    mss: 4,
    iss: 1000,
    output: (s, d) =>
      sent.push({ seq: s.seq, ack: s.ack, flags: s.flags, len: d.length, data: new TextDecoder().decode(d) }),
    onClosed: (e) => {
      closed = e;
    },
  });
  const seg = (o: { seq: number; ack: number; flags: number; window?: number; data?: string }) =>
    c.input({
      srcPort: 80,
      dstPort: 5,
      seq: o.seq,
      ack: o.ack,
      flags: o.flags,
      window: o.window ?? 1000,
      mss: undefined,
      wscale: undefined,
      payload: new TextEncoder().encode(o.data ?? ""),
    });
  return { c, sent, seg, closed: () => closed };
}

describe("TcpConnection against a scripted peer", () => {
  const { syn, ack, fin, rst, psh } = TCP_FLAG;

  it("runs tcp.ts's worked example: connect, send, receive, close", async () => {
    const { c, sent, seg, closed } = scripted();
    const got: string[] = [];
    c.onData = (d) => got.push(new TextDecoder().decode(d));
    const connected = c.connect();
    assert.deepEqual(sent.shift(), { seq: 1000, ack: 0, flags: syn, len: 0, data: "" });
    seg({ seq: 5000, ack: 1001, flags: syn | ack });
    await connected;
    assert.equal(c.state, "ESTABLISHED");
    assert.deepEqual(sent.shift(), { seq: 1001, ack: 5001, flags: ack, len: 0, data: "" });
    c.write(new TextEncoder().encode("hi there")); // two segments of MSS 4
    assert.deepEqual(
      sent.splice(0).map((s) => [s.seq, s.data]),
      [
        [1001, "hi t"],
        [1005, "here"],
      ],
    );
    seg({ seq: 5001, ack: 1009, flags: ack | psh, data: "ok" });
    assert.deepEqual(got, ["ok"]);
    assert.deepEqual(sent.shift(), { seq: 1009, ack: 5003, flags: ack, len: 0, data: "" });
    c.end();
    assert.equal(c.state, "FIN_WAIT_1");
    assert.deepEqual(sent.shift(), { seq: 1009, ack: 5003, flags: fin | ack, len: 0, data: "" });
    seg({ seq: 5003, ack: 1010, flags: fin | ack });
    assert.equal(c.state, "CLOSED");
    assert.equal(closed(), null);
    assert.deepEqual(sent.shift(), { seq: 1010, ack: 5004, flags: ack, len: 0, data: "" });
  });

  it("drops an out-of-order segment with a duplicate ACK, and takes it again in order", async () => {
    const { c, sent, seg } = scripted();
    const got: string[] = [];
    c.onData = (d) => got.push(new TextDecoder().decode(d));
    const p = c.connect();
    seg({ seq: 0, ack: 1001, flags: syn | ack });
    await p;
    sent.length = 0;
    seg({ seq: 3, ack: 1001, flags: ack, data: "def" });
    assert.deepEqual(got, []);
    assert.equal(sent.shift()!.ack, 1);
    seg({ seq: 1, ack: 1001, flags: ack, data: "ab" });
    seg({ seq: 3, ack: 1001, flags: ack, data: "def" });
    assert.deepEqual(got, ["ab", "def"]);
  });

  it("fails with ECONNREFUSED on a reset to its SYN, ECONNRESET on a reset later", async () => {
    const a = scripted();
    const p = a.c.connect();
    a.seg({ seq: 0, ack: 1001, flags: rst | ack });
    await assert.rejects(p, { code: "ECONNREFUSED" });
    const b = scripted();
    const q = b.c.connect();
    b.seg({ seq: 0, ack: 1001, flags: syn | ack });
    await q;
    b.seg({ seq: 1, ack: 1001, flags: rst });
    assert.equal(b.c.state, "CLOSED");
    assert.equal(b.closed()?.code, "ECONNRESET");
  });
});
