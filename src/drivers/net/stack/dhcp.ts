/**
 * DHCP messages (RFC 2131, options RFC 2132) for the guest's client: DISCOVER and REQUEST out, OFFER
 * and ACK (or NAK) in. Pure. passt is the server a vif meets: it offers the host's own address,
 * netmask, gateway, DNS and MTU.
 *
 *   op u8 @0, htype @1, hlen @2, hops @3, xid u32 @4, secs u16 @8, flags u16 @10, ciaddr @12,
 *   yiaddr @16, siaddr @20, giaddr @24, chaddr[16] @28, sname[64] @44, file[128] @108,
 *   magic cookie 63 82 53 63 @236, options @240 (code, length, value; 255 ends)
 */
import type { Ip4 } from "./wire.ts";

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
export const DHCP_TYPE = {
  discover: 1,
  offer: 2,
  request: 3,
  decline: 4,
  ack: 5,
  nak: 6,
  release: 7,
} as const;
export const DHCP_OPT = {
  subnetMask: 1,
  router: 3,
  dns: 6,
  hostname: 12,
  mtu: 26,
  requestedIp: 50,
  leaseTime: 51,
  messageType: 53,
  serverId: 54,
  paramList: 55,
  end: 255,
} as const;
const MAGIC = 0x63825363;

export interface DhcpMessage {
  readonly op: number;
  readonly xid: number;
  readonly yiaddr: Ip4;
  readonly chaddr: Uint8Array;
  readonly options: ReadonlyMap<number, Uint8Array>;
}

/** A client message: DISCOVER, or REQUEST of `requested` from `server`. */
export function dhcpClientMessage(
  type: number,
  xid: number,
  mac: Uint8Array,
  o: { requested?: Ip4; server?: Ip4; hostname?: string } = {},
): Uint8Array {
  const opts: number[] = [DHCP_OPT.messageType, 1, type];
  const ip = (code: number, a: Ip4) =>
    opts.push(code, 4, a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255);
  if (o.requested !== undefined) ip(DHCP_OPT.requestedIp, o.requested);
  if (o.server !== undefined) ip(DHCP_OPT.serverId, o.server);
  if (o.hostname !== undefined) {
    const h = new TextEncoder().encode(o.hostname.slice(0, 63));
    opts.push(DHCP_OPT.hostname, h.length, ...h);
  }
  opts.push(
    DHCP_OPT.paramList,
    4,
    DHCP_OPT.subnetMask,
    DHCP_OPT.router,
    DHCP_OPT.dns,
    DHCP_OPT.mtu,
    DHCP_OPT.end,
  );
  const m = new Uint8Array(240 + opts.length);
  const v = new DataView(m.buffer);
  v.setUint8(0, 1);
  v.setUint8(1, 1);
  v.setUint8(2, 6);
  v.setUint32(4, xid >>> 0);
  v.setUint16(10, 0x8000); // broadcast: we have no address yet
  m.set(mac.subarray(0, 6), 28);
  v.setUint32(236, MAGIC);
  m.set(opts, 240);
  return m;
}

export function parseDhcp(p: Uint8Array): DhcpMessage | undefined {
  if (p.length < 240) return undefined;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (v.getUint32(236) !== MAGIC) return undefined;
  const options = new Map<number, Uint8Array>();
  for (let i = 240; i < p.length; ) {
    const code = p[i]!;
    if (code === DHCP_OPT.end) break;
    if (code === 0) {
      i++;
      continue;
    }
    const len = p[i + 1];
    if (len === undefined || i + 2 + len > p.length) break;
    options.set(code, p.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return { op: p[0]!, xid: v.getUint32(4), yiaddr: v.getUint32(16), chaddr: p.subarray(28, 34), options };
}

/** An option holding one or more addresses: the first. */
export function optionIp(m: DhcpMessage, code: number): Ip4 | undefined {
  const o = m.options.get(code);
  if (o === undefined || o.length < 4) return undefined;
  return ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
}

export function optionU16(m: DhcpMessage, code: number): number | undefined {
  const o = m.options.get(code);
  return o === undefined || o.length < 2 ? undefined : (o[0]! << 8) | o[1]!;
}

export function messageType(m: DhcpMessage): number | undefined {
  return m.options.get(DHCP_OPT.messageType)?.[0];
}
