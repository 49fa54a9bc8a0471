/**
 * The guest's IP stack through netfront, netback and passt, with the shell's commands: the guest
 * gets its address by DHCP (passt answers), pings the gateway, and talks UDP and TCP to echo
 * services on the host's loopback (passt maps the gateway's address to the host's 127.0.0.1).
 */
import assert from "node:assert/strict";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Host } from "../../src/host/host.ts";
import { attachNic } from "../../src/host/nic.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { hasCommand, requirePeer } from "../helpers/peers.ts";
import { until } from "../helpers/until.ts";

/**
 * passt forwards a guest's ping through an ICMP "ping socket" of the user it runs as (nobody when
 * started by root): the kernel allows those only to the groups in net.ipv4.ping_group_range
 * (.ci/run widens it).
 */
function pingSocketsAllowed(): boolean {
  try {
    const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ping_group_range", "utf8")
      .trim()
      .split(/\s+/)
      .map(Number);
    const gid = process.getuid?.() === 0 ? 65534 : (process.getgid?.() ?? 0);
    return lo! <= gid && gid <= hi!;
  } catch {
    return false;
  }
}

const MAC = "00:16:3e:00:01:02";

interface IfaceInfo {
  name: string;
  addr: string | null;
  gateway: string | null;
  mtu: number;
}

describe("the guest's IP stack over passt", () => {
  let fx: GuestHost;
  let host: Host;
  let domU: number;
  let udp: UdpSocket;
  let tcp: Server;
  let udpPort = 0;
  let tcpPort = 0;
  const sh = async (line: string) => (await host.hv.call(domU, "inet", "sh", { line })) as string;
  const present = hasCommand("passt");

  before(async () => {
    fx = await startHost({ guest: { name: "netguest", maxPages: 1024 } });
    ({ host, domU } = fx);
    udp = createSocket("udp4");
    udp.on("message", (m, r) => udp.send(m, r.port, r.address));
    await new Promise<void>((r) => udp.bind(0, "127.0.0.1", () => r()));
    udpPort = udp.address().port;
    // Echoes the first chunk and closes, as a one-line service would.
    tcp = createServer((s) => {
      s.once("data", (d) => s.end(d));
      s.on("error", () => {});
    });
    await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", () => r()));
    tcpPort = (tcp.address() as { port: number }).port;
    if (present) await attachNic(host, domU, { mac: MAC });
  });
  after(async () => {
    udp?.close();
    tcp?.close();
    await fx?.stop();
  });

  it("gets an address by DHCP from passt; ip addr and ip route show it", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", present)) return;
    let ifs: IfaceInfo[] = [];
    await until("a DHCP lease", async () => {
      ifs = (await host.hv.call(domU, "inet", "ifaces", undefined)) as IfaceInfo[];
      return ifs[0]?.addr != null;
    });
    const eth0 = ifs[0]!;
    assert.equal(eth0.name, "eth0");
    assert.match(eth0.addr!, /^\d+\.\d+\.\d+\.\d+$/);
    assert.notEqual(eth0.gateway, null);
    const addr = await sh("ip addr");
    assert.match(addr, /2: eth0: .* mtu 1500\n/);
    assert.ok(addr.includes(`link/ether ${MAC} `), addr);
    assert.ok(addr.includes(`inet ${eth0.addr}/`), addr);
    assert.ok((await sh("ip route")).startsWith(`default via ${eth0.gateway} dev eth0`));
  });

  it("pings the gateway", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", present)) return;
    const why = "ping sockets for passt (sysctl net.ipv4.ping_group_range must cover passt's group)";
    if (!requirePeer(t, why, pingSocketsAllowed())) return;
    const out = await sh("ping -c 3 -i 0.05 gateway");
    assert.match(out, /3 packets transmitted, 3 received, 0% packet loss/, out);
    assert.match(out, /bytes from .*: icmp_seq=1 time=/);
  });

  it("sends UDP to a service on the host's loopback and gets its answer", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", present)) return;
    assert.equal(await sh(`nc -u -w 3 gateway ${udpPort} hello over udp`), "hello over udp\n");
  });

  it("talks TCP to a service on the host's loopback: connect, send, receive, close", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", present)) return;
    assert.equal(await sh(`nc -w 5 gateway ${tcpPort} hello over tcp`), "hello over tcp\n");
  });

  it("says why, in one line, when it cannot", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", present)) return;
    assert.equal(
      await sh("ping example.org"),
      "ping: example.org: Name or service not known (give an IPv4 address)\n",
    );
    assert.equal(await sh("nc gateway 99999"), "nc: port number invalid: 99999\n");
    assert.equal(
      await sh("ip neigh"),
      'Object "neigh" is unknown, try "ip addr", "ip link" or "ip route".\n',
    );
    // A closed port on the host: passt resets the connection.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    assert.match(
      await sh(`nc -w 3 gateway ${port} x`),
      /^nc: connect to .* port \d+ \(tcp\) failed: Connection refused\n$/,
    );
  });
});
