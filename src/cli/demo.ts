/**
 * `xenlab demo` (what `npm start` runs): the split-driver model end to end on the embedded
 * defaults, in one process, then exit 0.
 *
 *   1. a host: hypervisor, xenstored (its socket open to dom0's tools), dom0 and a guest;
 *   2. the alice_dev modules loaded: the frontend in the guest, the backend in dom0 (each logs
 *      its `inited!` line);
 *   3. the device attached as libxl attaches one (both probes run), the XenBus handshake to
 *      Connected with a granted ring and an event channel, and pings over the ring;
 *   4. each domain's dmesg and the XenStore tree as `xenstore-ls -f` prints it.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Host } from "../host/host.ts";
import { LiveListener, type LiveServer, parseListen } from "../host/live-server.ts";
import { errorMessage } from "../lib/errors.ts";
import { createLogger } from "../lib/log.ts";
import { XsClient } from "../xenstore/client.ts";
import { LocalChannel } from "../xenstore/transport-local.ts";
import { commandArgs } from "./args.ts";
import { run as xs } from "./xs.ts";

const USAGE = `usage: xenlab demo [--pings N] [--socket PATH] [--http [HOST:]PORT]

Runs the alice_dev driver pair end to end (host, dom0, a guest, attach, handshake, pings) and
prints each domain's dmesg and the XenStore tree. --socket also opens xenstored's socket there
while the demo runs. --http serves the live view (docs/live-view.md) on HOST (default
127.0.0.1), prints its URL and keeps the host up after the demo until Ctrl-C.
`;

const EXAMPLES = join(fileURLToPath(new URL("../..", import.meta.url)), "examples/alice-connected");

export async function run(argv: string[]): Promise<number> {
  const args = commandArgs("xenlab demo", USAGE, argv, {
    pings: { type: "string" },
    socket: { type: "string" },
    http: { type: "string" },
  });
  if (typeof args === "number") return args;
  const { values } = args;
  const pings = Number(values.pings ?? 8);
  if (!Number.isInteger(pings) || pings < 1) {
    process.stderr.write(`xenlab demo: --pings needs a positive whole number\n${USAGE}`);
    return 2;
  }
  let http: { host: string; port: number } | undefined;
  try {
    if (typeof values.http === "string") http = parseListen(values.http);
  } catch (e) {
    process.stderr.write(`xenlab demo: ${errorMessage(e)}\n`);
    return 2;
  }
  const out = (s: string): void => void process.stdout.write(s);
  // The port before the host: a taken port is one line, with nothing booted.
  let listener: LiveListener | null = null;
  try {
    if (http !== undefined) listener = await LiveListener.bind(http);
  } catch (e) {
    process.stderr.write(`xenlab demo: ${errorMessage(e)}\n`);
    return 1;
  }
  const host = await Host.start({ log: createLogger("xenlab-demo", process.env.XENLAB_LOG_LEVEL ?? "warn") });
  let live: LiveServer | null = null;
  try {
    if (listener !== null) {
      live = listener.serve(host, typeof values.socket === "string" ? { socket: values.socket } : {});
      out(`live view on ${live.url}\n`);
    }
    if (typeof values.socket === "string") {
      try {
        await host.listen(values.socket);
      } catch (e) {
        process.stderr.write(`xenlab demo: ${errorMessage(e)}\n`);
        return 1;
      }
    }
    const { domid } = await host.createDomain({ name: "domU" });
    out(`host up: Domain-0 (0) and domU (${domid})\n`);
    await host.hv.insmod(domid, join(EXAMPLES, "alice_front.ts"), [`pings=${pings}`]);
    await host.hv.insmod(0, join(EXAMPLES, "alice_back.ts"));
    out("modules loaded: alice_front in domU, alice_back in dom0\n");
    await host.attachDevice("alice_dev", domid);
    out(`alice_dev 0 attached to domU (${domid})\n`);
    const answered = new RegExp(`DomU: ${pings} pings answered\\.$`);
    await waitFor(() => host.hv.dmesg(domid).some((l) => answered.test(l)), 15_000);
    out(`connected; ${pings} pings answered over the ring\n`);
    for (const d of [0, domid]) {
      out(`\n# dmesg of ${host.hv.info(d)!.name} (${d})\n`);
      for (const l of host.hv.dmesg(d)) out(`${l}\n`);
    }
    out("\n# xenstore-ls -f\n");
    const rc = await xs(["ls", "-f"], {
      connect: async () => new XsClient(new LocalChannel(host.core)),
      stdout: (b) => void process.stdout.write(b),
      columns: undefined,
    });
    if (live !== null) {
      out(`\nthe host stays up for the live view on ${live.url} (Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => {
        process.once("SIGTERM", () => resolve());
        process.once("SIGINT", () => resolve());
      });
    }
    return rc;
  } finally {
    await live?.close();
    await host.stop();
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`xenlab demo: timed out after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
