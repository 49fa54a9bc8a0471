/**
 * The guest IP stack's wire formats: Ethernet II, ARP (for IPv4 over Ethernet), IPv4 (no options
 * sent, no fragments), ICMP echo, UDP and TCP headers, and the Internet checksum (RFC 1071). Pure:
 * bytes in, typed values out; every builder returns a whole frame.
 */

export const ETHERTYPE = { ipv4: 0x0800, arp: 0x0806, ipv6: 0x86dd } as const;
export const IPPROTO = { icmp: 1, tcp: 6, udp: 17 } as const;
export const ETH_HLEN = 14;
export const IP_HLEN = 20;
export const UDP_HLEN = 8;
export const TCP_HLEN = 20;
export const BROADCAST_MAC = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** An IPv4 address as a u32 (network order read as a number). */
export type Ip4 = number;

export function parseIp4(s: string): Ip4 | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) return undefined;
  const b = m.slice(1).map(Number);
  if (b.some((x) => x > 255)) return undefined;
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

export function formatIp4(a: Ip4): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/** The prefix length of a netmask (255.255.255.0 → 24). */
export function prefixLength(mask: Ip4): number {
  let n = 0;
  for (let m = mask >>> 0; m & 0x80000000; m = (m << 1) >>> 0) n++;
  return n;
}

/** RFC 1071 sum of `b` (plus `initial`), folded, not yet complemented. */
export function sum16(b: Uint8Array, initial = 0): number {
  let s = initial;
  const n = b.length & ~1;
  for (let i = 0; i < n; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** The Internet checksum of `b` with an optional initial sum (e.g. a pseudo-header's). */
export function checksum(b: Uint8Array, initial = 0): number {
  return ~sum16(b, initial) & 0xffff;
}

/** The TCP/UDP pseudo-header's sum. */
export function pseudoSum(src: Ip4, dst: Ip4, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}

// ------------------------------------------------------------------ Ethernet

export interface EthFrame {
  readonly dst: Uint8Array;
  readonly src: Uint8Array;
  readonly type: number;
  readonly payload: Uint8Array;
}

export function parseEth(f: Uint8Array): EthFrame | undefined {
  if (f.length < ETH_HLEN) return undefined;
  return {
    dst: f.subarray(0, 6),
    src: f.subarray(6, 12),
    type: (f[12]! << 8) | f[13]!,
    payload: f.subarray(ETH_HLEN),
  };
}

/** A frame of `payloadLen` bytes after the Ethernet header, with the header written. */
export function ethFrame(dst: Uint8Array, src: Uint8Array, type: number, payloadLen: number): Uint8Array {
  const f = new Uint8Array(ETH_HLEN + payloadLen);
  f.set(dst.subarray(0, 6), 0);
  f.set(src.subarray(0, 6), 6);
  f[12] = type >> 8;
  f[13] = type & 255;
  return f;
}

export function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ------------------------------------------------------------------ ARP

export interface Arp {
  readonly op: number;
  readonly sha: Uint8Array;
  readonly spa: Ip4;
  readonly tha: Uint8Array;
  readonly tpa: Ip4;
}

export const ARP_OP = { request: 1, reply: 2 } as const;

export function parseArp(p: Uint8Array): Arp | undefined {
  if (p.length < 28) return undefined;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (v.getUint16(0) !== 1 || v.getUint16(2) !== ETHERTYPE.ipv4 || p[4] !== 6 || p[5] !== 4) return undefined;
  return {
    op: v.getUint16(6),
    sha: p.slice(8, 14),
    spa: v.getUint32(14),
    tha: p.slice(18, 24),
    tpa: v.getUint32(24),
  };
}

export function arpFrame(
  op: number,
  sha: Uint8Array,
  spa: Ip4,
  tha: Uint8Array,
  tpa: Ip4,
  dst: Uint8Array,
): Uint8Array {
  const f = ethFrame(dst, sha, ETHERTYPE.arp, 28);
  const v = new DataView(f.buffer, ETH_HLEN);
  v.setUint16(0, 1);
  v.setUint16(2, ETHERTYPE.ipv4);
  v.setUint8(4, 6);
  v.setUint8(5, 4);
  v.setUint16(6, op);
  f.set(sha.subarray(0, 6), ETH_HLEN + 8);
  v.setUint32(14, spa);
  f.set(tha.subarray(0, 6), ETH_HLEN + 18);
  v.setUint32(24, tpa);
  return f;
}

// ------------------------------------------------------------------ IPv4

export interface Ip4Packet {
  readonly src: Ip4;
  readonly dst: Ip4;
  readonly proto: number;
  readonly ttl: number;
  readonly payload: Uint8Array;
}

/** An IPv4 packet, or undefined when malformed, fragmented or with a bad header checksum. */
export function parseIp4Packet(p: Uint8Array): Ip4Packet | undefined {
  if (p.length < IP_HLEN || p[0]! >> 4 !== 4) return undefined;
  const ihl = (p[0]! & 15) * 4;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const total = v.getUint16(2);
  if (ihl < IP_HLEN || total < ihl || total > p.length) return undefined;
  if (checksum(p.subarray(0, ihl)) !== 0) return undefined;
  const frag = v.getUint16(6);
  if ((frag & 0x2000) !== 0 || (frag & 0x1fff) !== 0) return undefined; // more fragments, or an offset
  return {
    src: v.getUint32(12),
    dst: v.getUint32(16),
    proto: p[9]!,
    ttl: p[8]!,
    payload: p.subarray(ihl, total),
  };
}

/** Writes a 20-byte IPv4 header at `at` of `f` for `payloadLen` bytes after it. */
export function writeIp4Header(
  f: Uint8Array,
  at: number,
  src: Ip4,
  dst: Ip4,
  proto: number,
  payloadLen: number,
  id: number,
): void {
  const v = new DataView(f.buffer, f.byteOffset + at, IP_HLEN);
  v.setUint8(0, 0x45);
  v.setUint8(1, 0);
  v.setUint16(2, IP_HLEN + payloadLen);
  v.setUint16(4, id & 0xffff);
  v.setUint16(6, 0x4000); // don't fragment
  v.setUint8(8, 64);
  v.setUint8(9, proto);
  v.setUint16(10, 0);
  v.setUint32(12, src);
  v.setUint32(16, dst);
  v.setUint16(10, checksum(f.subarray(at, at + IP_HLEN)));
}

// ------------------------------------------------------------------ ICMP

export const ICMP = { echoReply: 0, echoRequest: 8 } as const;

/** An ICMP echo message (request or reply) of `data`. */
export function icmpEcho(type: number, ident: number, seq: number, data: Uint8Array): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  const v = new DataView(m.buffer);
  v.setUint8(0, type);
  v.setUint16(4, ident);
  v.setUint16(6, seq);
  m.set(data, 8);
  v.setUint16(2, checksum(m));
  return m;
}

// ------------------------------------------------------------------ UDP

export interface UdpDatagram {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
}

export function parseUdp(p: Uint8Array, src: Ip4, dst: Ip4): UdpDatagram | undefined {
  if (p.length < UDP_HLEN) return undefined;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const len = v.getUint16(4);
  if (len < UDP_HLEN || len > p.length) return undefined;
  if (v.getUint16(6) !== 0 && checksum(p.subarray(0, len), pseudoSum(src, dst, IPPROTO.udp, len)) !== 0)
    return undefined;
  return { srcPort: v.getUint16(0), dstPort: v.getUint16(2), payload: p.subarray(UDP_HLEN, len) };
}

/** A UDP datagram with its checksum (over the pseudo-header). */
export function udpDatagram(
  src: Ip4,
  dst: Ip4,
  srcPort: number,
  dstPort: number,
  data: Uint8Array,
): Uint8Array {
  const d = new Uint8Array(UDP_HLEN + data.length);
  const v = new DataView(d.buffer);
  v.setUint16(0, srcPort);
  v.setUint16(2, dstPort);
  v.setUint16(4, d.length);
  d.set(data, UDP_HLEN);
  const c = checksum(d, pseudoSum(src, dst, IPPROTO.udp, d.length));
  v.setUint16(6, c === 0 ? 0xffff : c);
  return d;
}

// ------------------------------------------------------------------ TCP

export const TCP_FLAG = { fin: 0x01, syn: 0x02, rst: 0x04, psh: 0x08, ack: 0x10 } as const;

export interface TcpSegment {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack: number;
  readonly flags: number;
  readonly window: number;
  /** The MSS option of a SYN, if any. */
  readonly mss: number | undefined;
  /** The window scale option of a SYN, if any (RFC 7323). */
  readonly wscale: number | undefined;
  readonly payload: Uint8Array;
}

export function parseTcp(p: Uint8Array, src: Ip4, dst: Ip4): TcpSegment | undefined {
  if (p.length < TCP_HLEN) return undefined;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const off = (p[12]! >> 4) * 4;
  if (off < TCP_HLEN || off > p.length) return undefined;
  if (checksum(p, pseudoSum(src, dst, IPPROTO.tcp, p.length)) !== 0) return undefined;
  let mss: number | undefined;
  let wscale: number | undefined;
  for (let i = TCP_HLEN; i < off; ) {
    const kind = p[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    const len = p[i + 1] ?? 0;
    if (len < 2) break;
    if (kind === 2 && len === 4) mss = v.getUint16(i + 2);
    if (kind === 3 && len === 3) wscale = Math.min(p[i + 2]!, 14);
    i += len;
  }
  return {
    srcPort: v.getUint16(0),
    dstPort: v.getUint16(2),
    seq: v.getUint32(4),
    ack: v.getUint32(8),
    flags: p[13]!,
    window: v.getUint16(14),
    mss,
    wscale,
    payload: p.subarray(off),
  };
}

/** A TCP segment with its checksum; a SYN carries the MSS option and window scale 0 (NOP, WS). */
export function tcpSegment(
  src: Ip4,
  dst: Ip4,
  s: {
    srcPort: number;
    dstPort: number;
    seq: number;
    ack: number;
    flags: number;
    window: number;
    mss?: number;
  },
  data: Uint8Array,
): Uint8Array {
  const hl = TCP_HLEN + (s.mss !== undefined ? 8 : 0);
  const t = new Uint8Array(hl + data.length);
  const v = new DataView(t.buffer);
  v.setUint16(0, s.srcPort);
  v.setUint16(2, s.dstPort);
  v.setUint32(4, s.seq >>> 0);
  v.setUint32(8, s.ack >>> 0);
  v.setUint8(12, (hl / 4) << 4);
  v.setUint8(13, s.flags);
  v.setUint16(14, s.window);
  if (s.mss !== undefined) {
    v.setUint8(20, 2);
    v.setUint8(21, 4);
    v.setUint16(22, s.mss);
    // NOP, then window scale 0: we do not scale our window, but the peer may scale its own.
    v.setUint8(24, 1);
    v.setUint8(25, 3);
    v.setUint8(26, 3);
    v.setUint8(27, 0);
  }
  t.set(data, hl);
  v.setUint16(16, checksum(t, pseudoSum(src, dst, IPPROTO.tcp, t.length)));
  return t;
}
