/**
 * `xenlab console DOMAIN`: attaches the terminal to a guest's PV console on a running `xenlab up`,
 * as `xl console` does through xenconsole: the guest's output on stdout, stdin to the guest,
 * Ctrl-] (0x1d) detaches with exit 0. DOMAIN is a domid or a name (`xl console` takes either).
 *
 * When stdin is a terminal it goes into raw mode (so keys reach the guest as typed, and the
 * guest's tty does the echo and line editing), restored on every way out. A pipe works too: its
 * bytes go to the guest as they come, and a 0x1d anywhere in them detaches (xenconsole only
 * honours one arriving alone, which a pipe cannot promise). End of input does not cut the guest
 * short: xenconsole itself never detaches on it, and `echo 'uname -n' | xenlab console carol`
 * wants the answer. So after the end, the guest's output is still relayed until it has been
 * quiet for QUIET_MS (1 s: a shell's answer comes in milliseconds, and a command that thinks
 * longer keeps it going by printing), then the console detaches with exit 0.
 *
 * The stream goes through the host's control socket, `<socket>.ctl` (src/console/stream.ts).
 */

import { openConsole } from "../console/stream.ts";
import { controlPath } from "../host/control-client.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";

const USAGE = `usage: xenlab console [options] DOMAIN

Attaches to DOMAIN's PV console (a domid or a name). Ctrl-] detaches. From a pipe,
the end of input detaches once the guest's output has been quiet for 1 s.

  -t TYPE            console type: pv (the only one xenlab has)
  -n NUM             console number: 0 (the only one xenlab has)
  --socket PATH      xenstored's socket of the host (as for 'xenlab up'); the
                     control socket is PATH.ctl
`;

/** The escape character, ^] (xenconsole's ESCAPE_CHARACTER). */
const ESCAPE = 0x1d;

/** After the end of a piped input, how long the guest's output may pause before we detach. */
const QUIET_MS = 1000;

export async function run(argv: string[]): Promise<number> {
  const args = commandArgs(
    "xenlab console",
    USAGE,
    argv,
    { socket: { type: "string" }, type: { type: "string", short: "t" }, num: { type: "string", short: "n" } },
    true,
  );
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  const fail = (msg: string): number => {
    process.stderr.write(`xenlab console: ${msg}\n${USAGE}`);
    return 2;
  };
  if (positionals.length !== 1) return fail("one DOMAIN is required");
  if (values.type !== undefined && values.type !== "pv") return fail(`no console of type '${values.type}'`);
  if (values.num !== undefined && values.num !== "0") return fail(`no console number ${values.num}`);
  const dom = positionals[0]!;
  const target = /^\d+$/.test(dom) ? { domid: Number(dom) } : { name: dom };

  let conn: Awaited<ReturnType<typeof openConsole>>;
  try {
    conn = await openConsole(controlPath(socketPath(values.socket as string | undefined)), target);
  } catch (e) {
    process.stderr.write(`xenlab console: ${(e as Error).message}\n`);
    return 1;
  }
  return attach(conn.socket);
}

/**
 * Joins stdin and stdout to the stream until Ctrl-], the host closes, or (after the end of
 * input) the guest's output has been quiet for QUIET_MS.
 */
function attach(socket: import("node:net").Socket): Promise<number> {
  const stdin = process.stdin;
  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  return new Promise((resolve) => {
    let done = false;
    // Armed at the end of input; each chunk of output starts the quiet period again.
    let quiet: NodeJS.Timeout | undefined;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      if (raw) stdin.setRawMode(false);
      stdin.off("data", onInput);
      stdin.pause();
      // Stop reading a pipe too, so nothing holds the process.
      if (!raw) stdin.destroy();
      process.off("SIGTERM", onSignal);
      process.off("SIGHUP", onSignal);
      // Half-close: keystrokes already written (those before a ^] in the same read) still reach
      // the host, and output it sent before it saw our end is still printed; the host then
      // closes. (Should it not, we go anyway after a while.)
      if (socket.destroyed) {
        resolve(code);
        return;
      }
      const timer = setTimeout(() => socket.destroy(), 2000);
      socket.once("close", () => {
        clearTimeout(timer);
        resolve(code);
      });
      socket.end();
    };
    const onInput = (b: Buffer): void => {
      const esc = b.indexOf(ESCAPE);
      if (esc < 0) {
        socket.write(b);
        return;
      }
      if (esc > 0) socket.write(b.subarray(0, esc));
      finish(0);
    };
    const onSignal = (): void => finish(0);
    const lingerUntilQuiet = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(() => finish(0), QUIET_MS);
    };
    socket.on("data", (b: Buffer) => {
      process.stdout.write(b);
      if (quiet !== undefined && !done) lingerUntilQuiet();
    });
    socket.on("close", () => finish(0));
    socket.on("error", () => finish(1));
    stdin.on("data", onInput);
    stdin.on("end", () => {
      if (!done) lingerUntilQuiet();
    });
    process.on("SIGTERM", onSignal);
    process.on("SIGHUP", onSignal);
    socket.resume();
    stdin.resume();
  });
}
