/**
 * `xenlab bench net`: a guest's network through netfront, netback and passt against a plain Node
 * client talking to passt over the same kind of socket, in the same run.
 *
 *   xenlab    a host with one guest (--guest-kib, default 8192) and a vif attached as
 *             `network-attach` does (its own passt); the guest's IPv4 stack (inet) makes the
 *             measurements itself: its frames cross the TX/RX rings, grant copies and event
 *             channels to dom0's netback, then passt's Unix socket.
 *   node      the same IPv4 stack and the same measurement code (stack/probe.ts) in this process,
 *             its Ethernet frames written straight to another passt's Unix socket in QEMU's
 *             stream framing (the same passt binary and options, one per client as netback runs
 *             them): everything but the PV path.
 *
 * Cases: TCP throughput, --mib MiB sent to a sink on the host's loopback (reached through the
 * gateway address, which passt maps to 127.0.0.1) that answers once it has them all (MB/s =
 * 10^6 bytes over connect-to-answer); UDP round trips, --rtts sequential 64-byte echoes from a UDP
 * echo server on the host's loopback (round trips/s = 1 / the median). Both sides first get the
 * same untimed warm-up (a 1 MiB transfer and WARM_RTTS round trips: JIT, ARP, passt's flows); then
 * each run measures both sides, odd runs in reverse order; figures are medians over --runs and the
 * ratio is the median of each run's xenlab / node. With --busy N, N CPU-bound threads spin from the
 * warm-up to the last measurement, beside both sides alike.
 */
import { createSocket } from "node:dgram";
import { createServer, type Server } from "node:net";
import type { NetDevice } from "../drivers/net/netdev.ts";
import { NO_FRONT_STATS } from "../drivers/net/netif-front.ts";
import { PasstUplink } from "../drivers/net/passt.ts";
import { tcpSend, udpRtt } from "../drivers/net/stack/probe.ts";
import { NetStack } from "../drivers/net/stack/stack.ts";
import { Host } from "../host/host.ts";
import { attachNic } from "../host/nic.ts";
import { createLogger } from "../lib/log.ts";
import {
  alignColumns,
  BUSY_HELP,
  BUSY_OPTION,
  type BusyOption,
  busyHeader,
  eachRun,
  fmtRate,
  median,
  type OptionTable,
  pairedRatio,
  parseOptions,
  rateLine,
  runBench,
  withBusy,
} from "./common.ts";

export interface Options extends BusyOption {
  json: boolean;
  runs: number;
  mib: number;
  rtts: number;
  guestKib: number;
  /** The host's halt-polling window, µs (undefined: the host's default). */
  haltPollUs?: number;
}

const DEFAULTS: Options = { json: false, runs: 3, mib: 16, rtts: 1000, guestKib: 8192, busy: 0 };
/** Untimed UDP round trips each side makes before the first run. */
const WARM_RTTS = 50;
const QUICK: Partial<Options> = { runs: 1, mib: 2, rtts: 50 };

const OPTIONS: OptionTable<Options> = {
  ...BUSY_OPTION,
  "--runs": (o, a) => {
    o.runs = a.int(1);
  },
  "--mib": (o, a) => {
    o.mib = a.int(1);
  },
  "--rtts": (o, a) => {
    o.rtts = a.int(1);
  },
  "--guest-kib": (o, a) => {
    o.guestKib = a.int(1);
  },
  "--halt-poll-us": (o, a) => {
    o.haltPollUs = a.int(0);
  },
};

const HELP = `usage: xenlab bench net [--json] [--runs N] [--mib N] [--rtts N] [--guest-kib KIB] [--busy N] [--quick]

A guest's TCP throughput and UDP round trips through netfront, netback and passt, against the same
IPv4 stack in this process writing its frames straight to a passt socket (docs/net.md).

  --runs N         runs, each measuring both sides (default ${DEFAULTS.runs})
  --mib N          MiB each TCP transfer sends (default ${DEFAULTS.mib})
  --rtts N         UDP round trips per run (default ${DEFAULTS.rtts})
  --guest-kib KIB  the guest's memory (default ${DEFAULTS.guestKib})
  --halt-poll-us N each domain's halt-polling window, µs (default the host's, 1000; 0: off)
${BUSY_HELP}  --quick          one short run (${QUICK.mib} MiB, ${QUICK.rtts} round trips)
  --json           one JSON line per case
`;

export function run(argv: string[]): Promise<number> {
  return runBench("net", argv, (a) => parseOptions("net", a, DEFAULTS, QUICK, OPTIONS), HELP, bench);
}

/** The host's loopback services: a TCP sink that answers "ok" once it has `expect` bytes, a UDP echo. */
async function services(expect: () => number): Promise<{ tcpPort: number; udpPort: number; close(): void }> {
  const tcp: Server = createServer((s) => {
    let got = 0;
    s.on("data", (d) => {
      got += d.length;
      if (got >= expect()) s.end("ok");
    });
    s.on("error", () => {});
  });
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", () => r()));
  const udp = createSocket("udp4");
  udp.on("message", (m, r) => udp.send(m, r.port, r.address));
  await new Promise<void>((r) => udp.bind(0, "127.0.0.1", () => r()));
  return {
    tcpPort: (tcp.address() as { port: number }).port,
    udpPort: udp.address().port,
    close() {
      tcp.close();
      udp.close();
    },
  };
}

/** The baseline: our stack in this process on a device whose frames go straight to passt. */
async function nodeClient(): Promise<{ stack: NetStack; gateway: number; close(): Promise<void> }> {
  let dev: NetDevice | null = null;
  const uplink = await PasstUplink.start({
    name: "bench",
    onFrame: (f) => dev?.onReceive?.(f),
    onClose: () => {},
  });
  const d: NetDevice = {
    name: "eth0",
    mac: new Uint8Array([0x00, 0x16, 0x3e, 0x7e, 0x57, 0x01]),
    mtu: 1500,
    onReceive: null,
    send: (f) => {
      uplink.send(f);
      return true;
    },
    stats: () => NO_FRONT_STATS, // the baseline counts nothing
  };
  dev = d;
  const stack = new NetStack({ log: () => {}, hostname: "bench" });
  const iface = stack.attach(d, false);
  await stack.dhcp(iface);
  return { stack, gateway: iface.gateway, close: () => uplink.close() };
}

async function bench(o: Options): Promise<number> {
  const bytes = o.mib * 1024 * 1024;
  const svc = await services(() => bytes);
  const host = await Host.start({
    log: createLogger("bench-net", "silent"),
    ...(o.haltPollUs === undefined ? {} : { haltPollUs: o.haltPollUs }),
  });
  const node = await nodeClient();
  try {
    const domU = (await host.createDomain({ name: "netbench", maxPages: Math.ceil(o.guestKib / 4) })).domid;
    await attachNic(host, domU, { mac: "00:16:3e:7e:57:02" });
    const guest = (cmd: string, arg: unknown) => host.hv.call(domU, "inet", cmd, arg);
    const leased = async () =>
      ((await guest("ifaces", undefined)) as { gateway: string | null }[])[0]?.gateway != null;
    for (let i = 0; i < 100 && !(await leased()); i++) await new Promise((r) => setTimeout(r, 50));
    if (!(await leased())) throw new Error("the guest got no DHCP lease from passt");

    const tput: Record<"xenlab" | "node", number[]> = { xenlab: [], node: [] };
    const rtt: Record<"xenlab" | "node", number[]> = { xenlab: [], node: [] };
    const sides = ["xenlab", "node"] as const;
    /** `f` for `side`, its error named after the side that failed. */
    const as = async <T>(side: (typeof sides)[number], f: () => Promise<T>): Promise<T> => {
      try {
        return await f();
      } catch (e) {
        throw new Error(`${side === "xenlab" ? "the guest" : "the Node client"}: ${(e as Error).message}`);
      }
    };
    await withBusy(o.busy, async () => {
      // The same untimed warm-up for both sides: JIT, ARP, passt's TCP and UDP flows.
      for (const side of sides) {
        await as(side, async () => {
          await transfer(side, Math.min(bytes, 1 << 20));
          await roundTrips(side, WARM_RTTS);
        });
      }
      await eachRun(o, sides, (side) =>
        as(side, async () => {
          tput[side].push(bytes / 1e6 / ((await transfer(side, bytes)) / 1000));
          const us = await roundTrips(side, o.rtts);
          rtt[side].push(1e6 / median(us.filter((x) => !Number.isNaN(x))));
        }),
      );
    });
    /** One TCP transfer of `n` bytes; its milliseconds. */
    async function transfer(side: (typeof sides)[number], n: number): Promise<number> {
      if (side === "node") return tcpSend(node.stack, node.gateway, svc.tcpPort, n);
      return (await guest("tcp-send", { host: "gateway", port: svc.tcpPort, bytes: n })) as number;
    }
    /** `count` UDP round trips; each one's µs (NaN: lost). */
    async function roundTrips(side: (typeof sides)[number], count: number): Promise<number[]> {
      if (side === "node") return udpRtt(node.stack, node.gateway, svc.udpPort, count);
      return (await guest("udp-rtt", { host: "gateway", port: svc.udpPort, count })) as number[];
    }
    const cases = [
      { name: `tcp-${o.mib}MiB`, unit: "MB/s", x: tput.xenlab, b: tput.node },
      { name: "udp-rtt-64B", unit: "rt/s", x: rtt.xenlab, b: rtt.node },
    ];
    if (o.json) {
      for (const c of cases) {
        process.stdout.write(
          `${rateLine("net", c.name, c.unit, median(c.x), median(c.b), "node-passt", pairedRatio(c.x, c.b), o.busy)}\n`,
        );
      }
    } else {
      for (const l of busyHeader(o.busy)) process.stdout.write(`${l}\n`);
      const rows = [["case", "xenlab", "node→passt", "ratio", "unit"]];
      for (const c of cases) {
        const f = (v: number) => (c.unit === "MB/s" ? v.toFixed(1) : fmtRate(v));
        rows.push([c.name, f(median(c.x)), f(median(c.b)), pairedRatio(c.x, c.b).toFixed(2), c.unit]);
      }
      process.stdout.write(`${alignColumns(rows, (i) => i === 0 || i === 4).join("\n")}\n`);
      const us = (rates: number[]) => rates.map((r) => (1e6 / r).toFixed(0)).join(" ");
      const mbs = (rates: number[]) => rates.map((r) => r.toFixed(1)).join(" ");
      process.stdout.write(
        `tcp MB/s per run: xenlab ${mbs(tput.xenlab)}; node ${mbs(tput.node)}\n` +
          `udp round trip, median µs per run: xenlab ${us(rtt.xenlab)}; node ${us(rtt.node)}\n`,
      );
    }
    return 0;
  } catch (e) {
    // What the kernels said is the clue: netback's and the guest's last lines.
    if (process.env.XENLAB_DEBUG) {
      for (const d of [0, 1]) process.stderr.write(`${host.hv.dmesg(d).slice(-15).join("\n")}\n`);
    }
    throw e;
  } finally {
    await node.close();
    await host.stop();
    svc.close();
  }
}
