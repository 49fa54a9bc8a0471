/**
 * The guest's IPv4 stack over its Ethernet devices (netdev.ts): ARP (a cache, requests retried,
 * packets held while a neighbour resolves), IPv4 (one address per interface, on-link or through the
 * default gateway), ICMP echo (answers pings, sends them), UDP sockets, a DHCP client, and TCP client
 * connections (tcp.ts). What a distro's kernel and dhclient do, in the few lines a guest needs to
 * reach passt's network: each device that comes up asks DHCP for its address at once.
 */
import { errorMessage } from "../../../lib/errors.ts";
import type { NetDevice } from "../netdev.ts";
import {
  DHCP_CLIENT_PORT,
  DHCP_OPT,
  DHCP_SERVER_PORT,
  DHCP_TYPE,
  dhcpClientMessage,
  messageType,
  optionIp,
  optionU16,
  parseDhcp,
} from "./dhcp.ts";
import { TcpConnection, TcpError } from "./tcp.ts";
import {
  ARP_OP,
  arpFrame,
  BROADCAST_MAC,
  ETH_HLEN,
  ETHERTYPE,
  ethFrame,
  formatIp4,
  ICMP,
  IP_HLEN,
  IPPROTO,
  type Ip4,
  icmpEcho,
  parseArp,
  parseEth,
  parseIp4Packet,
  parseTcp,
  parseUdp,
  sameMac,
  tcpSegment,
  udpDatagram,
  writeIp4Header,
} from "./wire.ts";

const ARP_RETRIES = 3;
const ARP_RETRY_MS = 1000;
const ARP_HOLD_MAX = 64;
const EPHEMERAL_LOW = 32768;
const EPHEMERAL_HIGH = 60999;

export interface Iface {
  readonly dev: NetDevice;
  /** 0 until DHCP (or `ip addr add`) gives one. */
  addr: Ip4;
  mask: Ip4;
  gateway: Ip4;
  dns: Ip4;
  mtu: number;
  /** What DHCP said last: "bound", "requesting", "failed: …". */
  dhcp: string;
}

export class NetError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "NetError";
    this.code = code;
  }
}

export interface UdpSocket {
  readonly port: number;
  send(dst: Ip4, port: number, data: Uint8Array): void;
  onMessage: ((data: Uint8Array, from: Ip4, port: number) => void) | null;
  close(): void;
}

export interface TcpSocket {
  readonly conn: TcpConnection;
  readonly localPort: number;
}

interface Pending {
  readonly frames: { iface: Iface; build: (mac: Uint8Array) => Uint8Array }[];
  tries: number;
  timer: ReturnType<typeof setTimeout> | null;
}

export class NetStack {
  readonly ifaces = new Map<string, Iface>();
  readonly #log: (line: string) => void;
  readonly #hostname: string;
  readonly #arp = new Map<Ip4, Uint8Array>();
  readonly #pending = new Map<Ip4, Pending>();
  readonly #udp = new Map<number, UdpSocket>();
  readonly #tcp = new Map<string, TcpConnection>();
  readonly #pings = new Map<number, (ms: number) => void>();
  #ipId = 1;
  #pingIdent = Math.floor(Math.random() * 0xffff);

  constructor(o: { log(line: string): void; hostname: string }) {
    this.#log = o.log;
    this.#hostname = o.hostname;
  }

  /** A device came up: an interface for it, and DHCP at once. */
  attach(dev: NetDevice, dhcp = true): Iface {
    const iface: Iface = { dev, addr: 0, mask: 0, gateway: 0, dns: 0, mtu: dev.mtu, dhcp: "none" };
    this.ifaces.set(dev.name, iface);
    dev.onReceive = (f) => this.#receive(iface, f);
    if (dhcp) {
      this.dhcp(iface).catch((e: unknown) => this.#log(`${dev.name}: DHCP: ${errorMessage(e)}`));
    }
    return iface;
  }

  detach(dev: NetDevice): void {
    if (this.ifaces.get(dev.name)?.dev === dev) this.ifaces.delete(dev.name);
    dev.onReceive = null;
  }

  // ------------------------------------------------------------------ receive

  #receive(iface: Iface, frame: Uint8Array): void {
    const eth = parseEth(frame);
    if (eth === undefined) return;
    if (!sameMac(eth.dst, iface.dev.mac) && !sameMac(eth.dst, BROADCAST_MAC)) return;
    if (eth.type === ETHERTYPE.arp) this.#arpIn(iface, eth.payload);
    else if (eth.type === ETHERTYPE.ipv4) this.#ipIn(iface, eth.payload);
  }

  #arpIn(iface: Iface, p: Uint8Array): void {
    const a = parseArp(p);
    if (a === undefined) return;
    if (a.spa !== 0) this.#learn(a.spa, a.sha);
    if (a.op === ARP_OP.request && iface.addr !== 0 && a.tpa === iface.addr) {
      iface.dev.send(arpFrame(ARP_OP.reply, iface.dev.mac, iface.addr, a.sha, a.spa, a.sha));
    }
  }

  #learn(ip: Ip4, mac: Uint8Array): void {
    this.#arp.set(ip, mac.slice(0, 6));
    const p = this.#pending.get(ip);
    if (p === undefined) return;
    this.#pending.delete(ip);
    if (p.timer !== null) clearTimeout(p.timer);
    for (const f of p.frames) f.iface.dev.send(f.build(mac));
  }

  #ipIn(iface: Iface, p: Uint8Array): void {
    const ip = parseIp4Packet(p);
    if (ip === undefined) return;
    const bcast =
      ip.dst === 0xffffffff ||
      (iface.mask !== 0 && ip.dst === ((iface.addr & iface.mask) | ~iface.mask) >>> 0);
    if (ip.dst !== iface.addr && !bcast && iface.addr !== 0) return;
    switch (ip.proto) {
      case IPPROTO.icmp:
        this.#icmpIn(ip.src, ip.payload, iface);
        return;
      case IPPROTO.udp: {
        const u = parseUdp(ip.payload, ip.src, ip.dst);
        if (u !== undefined) this.#udp.get(u.dstPort)?.onMessage?.(u.payload, ip.src, u.srcPort);
        return;
      }
      case IPPROTO.tcp: {
        const t = parseTcp(ip.payload, ip.src, ip.dst);
        if (t !== undefined) this.#tcp.get(`${ip.src}:${t.srcPort}:${t.dstPort}`)?.input(t);
        return;
      }
      default:
        return;
    }
  }

  #icmpIn(src: Ip4, m: Uint8Array, iface: Iface): void {
    if (m.length < 8) return;
    const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
    if (m[0] === ICMP.echoRequest && iface.addr !== 0) {
      this.sendIp(src, IPPROTO.icmp, icmpEcho(ICMP.echoReply, v.getUint16(4), v.getUint16(6), m.subarray(8)));
    } else if (m[0] === ICMP.echoReply && v.getUint16(4) === this.#pingIdent) {
      this.#pings.get(v.getUint16(6))?.(performance.now());
    }
  }

  // ------------------------------------------------------------------ send

  /** The interface and next hop for `dst`: on-link, else the default gateway. */
  route(dst: Ip4): { iface: Iface; hop: Ip4 } {
    let fallback: Iface | undefined;
    for (const i of this.ifaces.values()) {
      if (i.addr === 0) continue;
      if (((dst ^ i.addr) & i.mask) === 0) return { iface: i, hop: dst };
      if (i.gateway !== 0 && fallback === undefined) fallback = i;
    }
    if (fallback !== undefined) return { iface: fallback, hop: fallback.gateway };
    throw new NetError(
      "ENETUNREACH",
      `Network is unreachable: no route to ${formatIp4(dst)} (no address yet: try 'dhclient')`,
    );
  }

  /** Sends an IPv4 packet; throws ENETUNREACH when no interface reaches `dst`. */
  sendIp(dst: Ip4, proto: number, payload: Uint8Array, via?: Iface): void {
    const { iface, hop } = via !== undefined ? { iface: via, hop: dst } : this.route(dst);
    const id = this.#ipId++;
    const build = (mac: Uint8Array) => {
      const f = ethFrame(mac, iface.dev.mac, ETHERTYPE.ipv4, IP_HLEN + payload.length);
      writeIp4Header(f, ETH_HLEN, iface.addr, dst, proto, payload.length, id);
      f.set(payload, ETH_HLEN + IP_HLEN);
      return f;
    };
    if (dst === 0xffffffff) {
      iface.dev.send(build(BROADCAST_MAC));
      return;
    }
    const mac = this.#arp.get(hop);
    if (mac !== undefined) {
      iface.dev.send(build(mac));
      return;
    }
    let p = this.#pending.get(hop);
    if (p === undefined) {
      p = { frames: [], tries: 0, timer: null };
      this.#pending.set(hop, p);
      this.#arpRequest(iface, hop, p);
    }
    if (p.frames.length < ARP_HOLD_MAX) p.frames.push({ iface, build });
  }

  #arpRequest(iface: Iface, hop: Ip4, p: Pending): void {
    if (p.tries++ >= ARP_RETRIES) {
      this.#pending.delete(hop);
      this.#log(`${iface.dev.name}: ${formatIp4(hop)} does not answer ARP`);
      return;
    }
    iface.dev.send(
      arpFrame(ARP_OP.request, iface.dev.mac, iface.addr, new Uint8Array(6), hop, BROADCAST_MAC),
    );
    p.timer = setTimeout(() => this.#arpRequest(iface, hop, p), ARP_RETRY_MS);
    p.timer.unref?.();
  }

  // ------------------------------------------------------------------ ICMP, UDP, TCP

  /** One echo request; resolves with the round trip in ms, or null after `timeoutMs`. */
  ping(dst: Ip4, seq: number, timeoutMs = 1000, size = 56): Promise<number | null> {
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = i & 255;
    return new Promise((resolve) => {
      const t0 = performance.now();
      const timer = setTimeout(() => {
        this.#pings.delete(seq & 0xffff);
        resolve(null);
      }, timeoutMs);
      this.#pings.set(seq & 0xffff, (t1) => {
        clearTimeout(timer);
        this.#pings.delete(seq & 0xffff);
        resolve(t1 - t0);
      });
      try {
        this.sendIp(dst, IPPROTO.icmp, icmpEcho(ICMP.echoRequest, this.#pingIdent, seq & 0xffff, data));
      } catch (e) {
        clearTimeout(timer);
        this.#pings.delete(seq & 0xffff);
        throw e;
      }
    });
  }

  #freePort(taken: (p: number) => boolean): number {
    for (let i = 0; i < 1000; i++) {
      const p = EPHEMERAL_LOW + Math.floor(Math.random() * (EPHEMERAL_HIGH - EPHEMERAL_LOW));
      if (!taken(p)) return p;
    }
    throw new NetError("EADDRINUSE", "No free local port");
  }

  /** A UDP socket on `port` (an ephemeral one when 0). */
  udpBind(port = 0, via?: Iface): UdpSocket {
    const p = port === 0 ? this.#freePort((x) => this.#udp.has(x)) : port;
    if (this.#udp.has(p)) throw new NetError("EADDRINUSE", `UDP port ${p} is in use`);
    const sock: UdpSocket = {
      port: p,
      onMessage: null,
      send: (dst, dport, data) => {
        const { iface } = via !== undefined ? { iface: via } : this.route(dst);
        this.sendIp(dst, IPPROTO.udp, udpDatagram(iface.addr, dst, p, dport, data), via);
      },
      close: () => {
        if (this.#udp.get(p) === sock) this.#udp.delete(p);
      },
    };
    this.#udp.set(p, sock);
    return sock;
  }

  /** A TCP connection to dst:port; rejects with ECONNREFUSED, ETIMEDOUT or ENETUNREACH. */
  async tcpConnect(dst: Ip4, port: number): Promise<TcpSocket> {
    const { iface } = this.route(dst);
    const local = this.#freePort((x) => this.#tcp.has(`${dst}:${port}:${x}`));
    const key = `${dst}:${port}:${local}`;
    const conn = new TcpConnection({
      mss: iface.mtu - 40,
      output: (s, data) =>
        this.sendIp(
          dst,
          IPPROTO.tcp,
          tcpSegment(iface.addr, dst, { ...s, srcPort: local, dstPort: port }, data),
        ),
      onClosed: () => {
        if (this.#tcp.get(key) === conn) this.#tcp.delete(key);
      },
    });
    this.#tcp.set(key, conn);
    await conn.connect();
    return { conn, localPort: local };
  }

  // ------------------------------------------------------------------ DHCP

  /** DHCP for `iface`: DISCOVER, OFFER, REQUEST, ACK; then the interface has its address. */
  async dhcp(iface: Iface, tries = 4, timeoutMs = 1000): Promise<void> {
    const sock = this.#udp.get(DHCP_CLIENT_PORT) ?? this.udpBind(DHCP_CLIENT_PORT, iface);
    const mac = iface.dev.mac;
    try {
      for (let t = 0; t < tries; t++) {
        iface.dhcp = "requesting";
        const xid = Math.floor(Math.random() * 2 ** 32) >>> 0;
        const want = (type: number) =>
          new Promise<ReturnType<typeof parseDhcp>>((resolve) => {
            const timer = setTimeout(() => resolve(undefined), timeoutMs);
            sock.onMessage = (data) => {
              const m = parseDhcp(data);
              if (m === undefined || m.op !== 2 || m.xid !== xid || !sameMac(m.chaddr, mac)) return;
              const mt = messageType(m);
              if (mt !== type && mt !== DHCP_TYPE.nak) return;
              clearTimeout(timer);
              resolve(m);
            };
          });
        const send = (type: number, o: { requested?: Ip4; server?: Ip4 } = {}) => {
          const saved = iface.addr;
          iface.addr = 0;
          sock.send(
            0xffffffff,
            DHCP_SERVER_PORT,
            dhcpClientMessage(type, xid, mac, { ...o, hostname: this.#hostname }),
          );
          iface.addr = saved;
        };
        const offer = want(DHCP_TYPE.offer);
        send(DHCP_TYPE.discover);
        const o = await offer;
        if (o === undefined || messageType(o) !== DHCP_TYPE.offer) continue;
        const server = optionIp(o, DHCP_OPT.serverId);
        const ack = want(DHCP_TYPE.ack);
        send(DHCP_TYPE.request, { requested: o.yiaddr, ...(server !== undefined ? { server } : {}) });
        const a = await ack;
        if (a === undefined || messageType(a) !== DHCP_TYPE.ack) continue;
        iface.addr = a.yiaddr;
        iface.mask = optionIp(a, DHCP_OPT.subnetMask) ?? 0xffffff00;
        iface.gateway = optionIp(a, DHCP_OPT.router) ?? 0;
        iface.dns = optionIp(a, DHCP_OPT.dns) ?? 0;
        const mtu = optionU16(a, DHCP_OPT.mtu);
        // passt offers 65520; the vif's own MTU (the toolstack's key) caps it.
        if (mtu !== undefined) iface.mtu = Math.min(mtu, iface.dev.mtu);
        iface.dhcp = "bound";
        if (server !== undefined) this.#learnGateway(iface);
        this.#log(
          `${iface.dev.name}: DHCP: ${formatIp4(iface.addr)}/${formatIp4(iface.mask)} via ${formatIp4(iface.gateway)}`,
        );
        return;
      }
      iface.dhcp = "failed: no answer";
      throw new NetError("ETIMEDOUT", `no DHCP answer on ${iface.dev.name} after ${tries} tries`);
    } finally {
      sock.onMessage = null;
      sock.close();
    }
  }

  /** Resolves the gateway's MAC at once (a gratuitous-ARP-like warm-up). */
  #learnGateway(iface: Iface): void {
    if (iface.gateway === 0 || this.#arp.has(iface.gateway)) return;
    const p: Pending = { frames: [], tries: 0, timer: null };
    this.#pending.set(iface.gateway, p);
    this.#arpRequest(iface, iface.gateway, p);
  }
}

export { TcpError };
