/**
 * `xenlab up`: a host in the foreground: the hypervisor, xenstored on its Unix socket (for dom0's
 * tools: Debian's xenstore-*, libxenstore, pyxs), dom0, and by default one guest (domid 1), until
 * SIGTERM or SIGINT. `xenlab create|list|destroy|insmod|rmmod|lsmod|dmesg` talk to it through its
 * control socket, `<socket>.ctl`. Each domain's kernel log goes to stdout as `(dN) [stamp] line`.
 */
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { captureDirectory, XENSTORE_CAPTURE_FILE, XENSTORE_DISSECTOR } from "../host/capture.ts";
import { ControlServer } from "../host/control.ts";
import { controlPath } from "../host/control-client.ts";
import { honourShutdownActions } from "../host/guest.ts";
import { Host } from "../host/host.ts";
import { LiveListener, type LiveServer, parseListen } from "../host/live-server.ts";
import { bindMigration, parseMigrateListen } from "../host/migrate.ts";
import { errorMessage } from "../lib/errors.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { refuseIfServed } from "../lib/unix-socket.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";

const USAGE = `usage: xenlab up [options]

  --socket PATH       xenstored's socket (default: $XENSTORED_PATH, else
                      $XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket);
                      the control socket is PATH.ctl
  --no-domu           start dom0 only (no guest)
  --domu-name NAME    the guest's name (default domU)
  -K, --keep-orphans  xenstored keeps a destroyed domain's nodes (given to dom0)
  --log-level LEVEL   pino level on stderr (default info)
  --log-format pretty|json
                      log lines on stderr: pretty on a terminal, JSON lines otherwise
                      (default: $XENLAB_LOG_FORMAT, else by whether stderr is a terminal)
  --console-log-dir DIR
                      where each guest's console is logged as guest-NAME.log
                      (default: the socket's directory/console)
  --halt-poll-us N    each domain polls up to N µs for an event before it sleeps,
                      adapting as KVM's halt_poll_ns (default 1000; 0: never)
  --migrate-listen [HOST:]PORT
                      also take guests sent with 'xenlab migrate DOMAIN HOST:PORT' on
                      this TCP port (HOST default 127.0.0.1); the control socket takes
                      them from 'xenlab migrate DOMAIN SOCKET' always
  --http [HOST:]PORT  serve the live view (docs/live-view.md) on HOST (default
                      127.0.0.1), read-only; prints its URL with its access token
  --pcap DIR          capture into DIR (made if missing; earlier captures replaced):
                      xenstore.pcapng, every XenStore request and reply, and
                      vifD.H.pcapng, each vif's Ethernet frames; open them with
                      wireshark -X lua_script:wireshark/xenstore.lua (README)
`;

export async function run(argv: string[]): Promise<number> {
  const args = commandArgs("xenlab up", USAGE, argv, {
    socket: { type: "string" },
    "no-domu": { type: "boolean" },
    "domu-name": { type: "string" },
    "keep-orphans": { type: "boolean", short: "K" },
    "log-level": { type: "string" },
    "log-format": { type: "string" },
    "console-log-dir": { type: "string" },
    "halt-poll-us": { type: "string" },
    "migrate-listen": { type: "string" },
    http: { type: "string" },
    pcap: { type: "string" },
  });
  if (typeof args === "number") return args;
  const { values } = args;
  let log: Logger;
  try {
    log = createLogger(
      "xenlab-up",
      values["log-level"] as string | undefined,
      values["log-format"] as string | undefined,
    );
  } catch (e) {
    process.stderr.write(`xenlab up: ${errorMessage(e)}\n`);
    return 2;
  }
  const socket = socketPath(values.socket as string | undefined);
  const pollText = values["halt-poll-us"] as string | undefined;
  const haltPollUs = pollText === undefined ? undefined : Number(pollText);
  if (haltPollUs !== undefined && !(pollText !== "" && Number.isInteger(haltPollUs) && haltPollUs >= 0)) {
    process.stderr.write(`xenlab up: --halt-poll-us wants a whole number of µs >= 0, not '${pollText}'\n`);
    return 2;
  }
  let http: { host: string; port: number } | undefined;
  const migrateAt = values["migrate-listen"] as string | undefined;
  let migrateListen: { host: string; port: number } | undefined;
  try {
    if (values.http !== undefined) http = parseListen(values.http as string);
    if (migrateAt !== undefined) migrateListen = parseMigrateListen(migrateAt);
  } catch (e) {
    process.stderr.write(`xenlab up: ${errorMessage(e)}\n`);
    return 2;
  }
  mkdirSync(dirname(socket), { recursive: true });
  const ctl = controlPath(socket);
  try {
    // Before anything starts: a host already serving here is left alone.
    await refuseIfServed(socket);
    await refuseIfServed(ctl);
  } catch (e) {
    process.stderr.write(`xenlab up: ${errorMessage(e)}\n`);
    return 1;
  }
  let pcapDir = values.pcap as string | undefined;
  if (pcapDir === "") {
    process.stderr.write("xenlab up: --pcap wants a directory to capture into, e.g. --pcap ./pcap\n");
    return 2;
  }
  try {
    // Before anything starts: a bad directory is one line, not a host started and stopped.
    if (pcapDir !== undefined) pcapDir = captureDirectory(pcapDir);
  } catch (e) {
    process.stderr.write(`xenlab up: ${errorMessage(e)}\n`);
    return 1;
  }
  // The TCP ports before the host: a taken port is one line, with nothing booted and stopped.
  let liveListener: LiveListener | null = null;
  let migration: Awaited<ReturnType<typeof bindMigration>> | null = null;
  const unbind = async (): Promise<void> => {
    migration?.server.close();
    await liveListener?.close();
  };
  try {
    if (migrateListen !== undefined) migration = await bindMigration(migrateListen);
    if (http !== undefined) liveListener = await LiveListener.bind(http);
  } catch (e) {
    await unbind();
    process.stderr.write(`xenlab up: ${errorMessage(e)}\n`);
    return 1;
  }
  let host: Host;
  try {
    host = await Host.start({
      log,
      xenstored: { keepOrphans: values["keep-orphans"] === true },
      onKernelLog: (domid, line) => process.stdout.write(`(d${domid}) ${line}\n`),
      consoleLogDir: (values["console-log-dir"] as string | undefined) ?? join(dirname(socket), "console"),
      ...(haltPollUs === undefined ? {} : { haltPollUs }),
      ...(pcapDir === undefined ? {} : { pcapDir }),
    });
  } catch (e) {
    await unbind();
    process.stderr.write(`xenlab up: ${errorMessage(e)}\n`);
    return 1;
  }
  honourShutdownActions(host, (msg) => log.warn(msg));
  const control = new ControlServer(host);
  let live: LiveServer | null = null;
  try {
    await host.listen(socket);
    await control.listen(ctl);
    migration?.serve(host);
    live = liveListener?.serve(host, { socket }) ?? null;
  } catch (e) {
    // Another daemon won the path since the check: stop, removing only our own socket.
    await unbind();
    await control.close();
    await host.stop();
    process.stderr.write(`xenlab up: ${errorMessage(e)}\n`);
    return 1;
  }
  if (values["no-domu"] !== true) {
    await host.createDomain({ name: (values["domu-name"] as string | undefined) ?? "domU" });
  }
  if (host.capture !== null)
    process.stdout.write(
      `xenlab up: capturing into ${host.capture.dir}; open with: wireshark -X lua_script:${XENSTORE_DISSECTOR} ` +
        `${join(host.capture.dir, XENSTORE_CAPTURE_FILE)}\n`,
    );
  process.stdout.write(
    `xenlab up: xenstored on ${socket}, control on ${ctl}; ` +
      `${host.hv
        .list()
        .map((d) => `${d.name} (${d.domid})`)
        .join(", ")} running (pid ${process.pid})\n`,
  );
  if (migration !== null) process.stdout.write(`xenlab up: taking migrations on ${migrateAt}\n`);
  if (live !== null) process.stdout.write(`xenlab up: live view on ${live.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  migration?.server.close();
  await live?.close();
  await control.close();
  await host.stop();
  return 0;
}
