/**
 * The guest shell's network commands, as iproute2, iputils' ping, netcat and dhclient print them
 * (trimmed to what the stack has):
 *
 *   ip addr | ip link | ip route     the interfaces, their addresses, the routes
 *   ping [-c N] [-i SECS] [-W SECS] [-s BYTES] HOST     echo requests (default 4, one a second)
 *   nc [-u] [-w SECS] HOST PORT [TEXT...]     sends TEXT and a newline, prints what comes back
 *                                    until the peer closes (TCP) or SECS pass without data
 *                                    (default 2 s), then closes
 *   dhclient [IFACE]                 asks DHCP again
 *
 * HOST is an IPv4 address, or `gateway` (the default route's). There is no DNS.
 */
import type { ShellCommand } from "../../../kernel/shell.ts";
import type { Iface, NetStack } from "./stack.ts";
import { formatIp4, type Ip4, parseIp4, prefixLength } from "./wire.ts";

const dec = new TextDecoder();

function macOf(i: Iface): string {
  return Array.from(i.dev.mac, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** Parses `-x VALUE` options; the rest stays positional. */
function opts(
  args: readonly string[],
  withValue: string,
  flags = "",
): { o: Map<string, string>; rest: string[] } {
  const o = new Map<string, string>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.length === 2 && a[0] === "-" && withValue.includes(a[1]!)) {
      const v = args[++i];
      if (v === undefined) throw new Error(`option requires an argument -- '${a[1]}'`);
      o.set(a[1]!, v);
    } else if (a.length === 2 && a[0] === "-" && flags.includes(a[1]!)) o.set(a[1]!, "");
    else if (a.startsWith("-") && a.length > 1) throw new Error(`invalid option -- '${a.slice(1)}'`);
    else rest.push(a);
  }
  return { o, rest };
}

function host(stack: NetStack, name: string, cmd: string): Ip4 {
  if (name === "gateway") {
    for (const i of stack.ifaces.values()) if (i.gateway !== 0) return i.gateway;
    throw new Error(`${cmd}: no default gateway (no DHCP lease yet: try 'dhclient')`);
  }
  const ip = parseIp4(name);
  if (ip === undefined) throw new Error(`${cmd}: ${name}: Name or service not known (give an IPv4 address)`);
  return ip;
}

function seconds(v: string | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`bad ${what} '${v}'`);
  return n;
}

function ipCommand(stack: NetStack, args: readonly string[]): string {
  const what = args[0] ?? "addr";
  let out = "";
  let n = 1;
  if ("address".startsWith(what) || "link".startsWith(what)) {
    out +=
      "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n";
    if ("address".startsWith(what)) out += "    inet 127.0.0.1/8 scope host lo\n";
    for (const i of stack.ifaces.values()) {
      out += `${++n}: ${i.dev.name}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu ${i.mtu}\n`;
      out += `    link/ether ${macOf(i)} brd ff:ff:ff:ff:ff:ff\n`;
      if ("address".startsWith(what) && i.addr !== 0) {
        out += `    inet ${formatIp4(i.addr)}/${prefixLength(i.mask)} brd ${formatIp4((i.addr | ~i.mask) >>> 0)} scope global dynamic ${i.dev.name}\n`;
      }
    }
    return out;
  }
  if ("route".startsWith(what)) {
    for (const i of stack.ifaces.values()) {
      if (i.gateway !== 0) out += `default via ${formatIp4(i.gateway)} dev ${i.dev.name} proto dhcp\n`;
    }
    for (const i of stack.ifaces.values()) {
      if (i.addr !== 0) {
        out += `${formatIp4((i.addr & i.mask) >>> 0)}/${prefixLength(i.mask)} dev ${i.dev.name} proto kernel scope link src ${formatIp4(i.addr)}\n`;
      }
    }
    return out;
  }
  return `Object "${what}" is unknown, try "ip addr", "ip link" or "ip route".\n`;
}

async function ping(stack: NetStack, args: readonly string[]): Promise<string> {
  const { o, rest } = opts(args, "ciWs");
  if (rest.length !== 1) return "usage: ping [-c COUNT] [-i SECS] [-W SECS] [-s BYTES] HOST\n";
  const dst = host(stack, rest[0]!, "ping");
  const count = Math.floor(seconds(o.get("c"), 4, "count"));
  const interval = seconds(o.get("i"), 1, "interval");
  const wait = seconds(o.get("W"), 1, "timeout");
  const size = Math.floor(seconds(o.get("s"), 56, "packet size"));
  const d = formatIp4(dst);
  let out = `PING ${d} (${d}) ${size}(${size + 28}) bytes of data.\n`;
  const rtts: number[] = [];
  for (let seq = 1; seq <= count; seq++) {
    if (seq > 1) await new Promise((r) => setTimeout(r, interval * 1000));
    const ms = await stack.ping(dst, seq, wait * 1000, size);
    if (ms !== null) {
      rtts.push(ms);
      out += `${size + 8} bytes from ${d}: icmp_seq=${seq} time=${ms.toFixed(3)} ms\n`;
    }
  }
  const loss = count === 0 ? 0 : Math.round(((count - rtts.length) / count) * 100);
  out += `\n--- ${d} ping statistics ---\n${count} packets transmitted, ${rtts.length} received, ${loss}% packet loss\n`;
  if (rtts.length > 0) {
    const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
    out += `rtt min/avg/max = ${Math.min(...rtts).toFixed(3)}/${avg.toFixed(3)}/${Math.max(...rtts).toFixed(3)} ms\n`;
  }
  return out;
}

async function nc(stack: NetStack, args: readonly string[]): Promise<string> {
  const { o, rest } = opts(args, "w", "u");
  if (rest.length < 2) return "usage: nc [-u] [-w SECS] HOST PORT [TEXT...]\n";
  const dst = host(stack, rest[0]!, "nc");
  const port = Number(rest[1]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `nc: port number invalid: ${rest[1]}\n`;
  const text = rest.length > 2 ? `${rest.slice(2).join(" ")}\n` : "";
  const idleMs = seconds(o.get("w"), 2, "timeout") * 1000;
  const data = new TextEncoder().encode(text);
  let got = "";
  if (o.has("u")) {
    const sock = stack.udpBind();
    try {
      await new Promise<void>((resolve) => {
        let timer = setTimeout(resolve, idleMs);
        sock.onMessage = (d) => {
          got += dec.decode(d);
          clearTimeout(timer);
          timer = setTimeout(resolve, Math.min(idleMs, 200));
        };
        sock.send(dst, port, data);
      });
    } finally {
      sock.close();
    }
    return got;
  }
  let sock: Awaited<ReturnType<NetStack["tcpConnect"]>>;
  try {
    sock = await stack.tcpConnect(dst, port);
  } catch (e) {
    return `nc: connect to ${formatIp4(dst)} port ${port} (tcp) failed: ${(e as Error).message}\n`;
  }
  const c = sock.conn;
  await new Promise<void>((resolve) => {
    let timer = setTimeout(resolve, idleMs);
    const idle = () => {
      clearTimeout(timer);
      timer = setTimeout(resolve, idleMs);
    };
    c.onData = (d) => {
      got += dec.decode(d, { stream: true });
      idle();
    };
    c.onEnd = () => {
      clearTimeout(timer);
      resolve();
    };
    if (data.length > 0) c.write(data);
  });
  c.end();
  // Our FIN answered (or not: the connection goes either way after a moment).
  await Promise.race([c.closed, new Promise((r) => setTimeout(r, 500))]);
  if (c.state !== "CLOSED") c.abort();
  return got;
}

async function dhclient(stack: NetStack, args: readonly string[]): Promise<string> {
  const names = args.length > 0 ? args : [...stack.ifaces.keys()];
  let out = "";
  for (const n of names) {
    const i = stack.ifaces.get(n);
    if (i === undefined) {
      out += `dhclient: ${n}: no such interface\n`;
      continue;
    }
    try {
      await stack.dhcp(i);
      out += `${n}: bound to ${formatIp4(i.addr)}/${prefixLength(i.mask)}, gateway ${formatIp4(i.gateway)}\n`;
    } catch (e) {
      out += `dhclient: ${n}: ${(e as Error).message}\n`;
    }
  }
  return out;
}

/** The commands, bound to `stack`. */
export function networkCommands(stack: NetStack): Map<string, ShellCommand> {
  const guard =
    (cmd: string, f: (args: readonly string[]) => Promise<string> | string) =>
    async (args: readonly string[]): Promise<string> => {
      try {
        return await f(args);
      } catch (e) {
        const m = (e as Error).message;
        return `${m.startsWith(`${cmd}:`) ? m : `${cmd}: ${m}`}\n`;
      }
    };
  return new Map<string, ShellCommand>([
    [
      "ip",
      {
        help: "ip addr|link|route        the network interfaces and routes",
        run: guard("ip", (a) => ipCommand(stack, a)),
      },
    ],
    [
      "ping",
      {
        help: "ping [-c N] [-i S] HOST   ICMP echo (HOST: an IPv4 address or 'gateway')",
        run: guard("ping", (a) => ping(stack, a)),
      },
    ],
    [
      "nc",
      {
        help: "nc [-u] [-w S] HOST PORT [TEXT...]   send TEXT over TCP (or UDP), print the answer",
        run: guard("nc", (a) => nc(stack, a)),
      },
    ],
    [
      "dhclient",
      {
        help: "dhclient [IFACE]          ask DHCP for an address again",
        run: guard("dhclient", (a) => dhclient(stack, a)),
      },
    ],
  ]);
}
