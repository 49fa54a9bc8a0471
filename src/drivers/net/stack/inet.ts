/**
 * `inet`: the guest's IPv4 stack as a kernel module (Linux builds it in; here it is loaded with
 * xen_netfront by `network-attach`). It gives every Ethernet device that comes up an interface and
 * asks DHCP for its address, and adds the shell's network commands (commands.ts).
 *
 * Host calls: `sh {line}` runs one of those commands and returns what it prints (what the console
 * shows); `ifaces` the interfaces and their addresses; `tcp-send {host, port, bytes}` and
 * `udp-rtt {host, port, count}` the measurements of probe.ts (`xenlab bench net`); udp-rtt holds
 * the guest's vCPU, blocked between each send and its echo, for the whole series.
 */
import type { Kernel } from "../../../kernel/kernel.ts";
import { shellCommands, splitWords } from "../../../kernel/shell.ts";
import { watchNetDevices } from "../netdev.ts";
import { networkCommands } from "./commands.ts";
import { tcpSend, udpRttBlocking } from "./probe.ts";
import { NetStack } from "./stack.ts";
import { formatIp4, parseIp4 } from "./wire.ts";

export const name = "inet";

const stacks = new WeakMap<Kernel, { stack: NetStack; stop: () => void; names: string[] }>();

/** The domain's stack (inet loaded), or undefined. */
export function netStack(k: Kernel): NetStack | undefined {
  return stacks.get(k)?.stack;
}

export function init(k: Kernel, args: readonly string[]): void {
  const dhcp = !args.includes("dhcp=0");
  const stack = new NetStack({ log: (l) => k.printk(`inet: ${l}`), hostname: k.name });
  const stop = watchNetDevices(k, (dev, up) => {
    if (up) stack.attach(dev, dhcp);
    else stack.detach(dev);
  });
  const cmds = networkCommands(stack);
  const table = shellCommands(k);
  for (const [n, c] of cmds) table.set(n, c);
  stacks.set(k, { stack, stop, names: [...cmds.keys()] });
  k.printk("inet: IPv4 stack up");
}

export function exit(k: Kernel): void {
  const s = stacks.get(k);
  if (s === undefined) return;
  s.stop();
  for (const i of [...s.stack.ifaces.values()]) s.stack.detach(i.dev);
  const table = shellCommands(k);
  for (const n of s.names) table.delete(n);
  stacks.delete(k);
}

export async function call(k: Kernel, cmd: string, arg: unknown): Promise<unknown> {
  const s = stacks.get(k);
  if (s === undefined) throw new Error("inet is not loaded");
  if (cmd === "sh") {
    const [c, ...rest] = splitWords(String((arg as { line?: string })?.line ?? ""));
    const command = c === undefined ? undefined : shellCommands(k).get(c);
    if (command === undefined) return `${c ?? ""}: command not found\n`;
    return command.run(rest);
  }
  if (cmd === "ifaces") {
    return [...s.stack.ifaces.values()].map((i) => ({
      name: i.dev.name,
      addr: i.addr === 0 ? null : formatIp4(i.addr),
      mask: formatIp4(i.mask),
      gateway: i.gateway === 0 ? null : formatIp4(i.gateway),
      mtu: i.mtu,
      dhcp: i.dhcp,
    }));
  }
  if (cmd === "tcp-send" || cmd === "udp-rtt") {
    const a = arg as { host: string; port: number; bytes?: number; count?: number };
    const dst =
      a.host === "gateway"
        ? [...s.stack.ifaces.values()].find((i) => i.gateway !== 0)?.gateway
        : parseIp4(a.host);
    if (dst === undefined) throw new Error(`inet: no address for ${a.host}`);
    return cmd === "tcp-send"
      ? tcpSend(s.stack, dst, a.port, a.bytes ?? 0)
      : // The guest's vCPU blocks between a send and its echo, as a blocking recvfrom() would
        // (xen_vchan's pump and drain block the same way): other calls to the guest wait.
        udpRttBlocking(s.stack, dst, a.port, a.count ?? 1, (ms) => k.events.block(ms));
  }
  throw new Error(`inet: unknown call ${cmd}`);
}
