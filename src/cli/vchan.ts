/**
 * `xenlab vchan server|client read|write PEER PATH`: one end of a libxenvchan byte stream in a
 * domain of a running host, as Xen's vchan-node1 (`[client|server] [read|write] domid nodepath`):
 * `write` sends stdin and closes the vchan at its end, `read` copies the vchan to stdout until the
 * peer closes. Two of them, one a server and one a client, carry a stream between two guests or
 * a guest and dom0; the bytes go through the control socket (src/host/vchan-stream.ts) to the
 * `xen_vchan` module of the domain the end runs in.
 */
import { controlPath } from "../host/control-client.ts";
import type { VchanStreamRequest } from "../host/vchan-stream.ts";
import { isValidNodename } from "../xenstore/paths.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";
import { domainId, invalidDomain } from "./domain-id.ts";
import { receiveFrames, sendFrames } from "./frame-stream.ts";

const DEFAULT_SIZE = 65536;
const DEFAULT_TIMEOUT_S = 10;
/** Node's longest timer (2^31 - 1 ms); a longer one fires at once. */
const MAX_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

const USAGE = `usage: xenlab vchan server|client read|write PEER PATH [options]

One end of a libxenvchan byte stream, as Xen's vchan-node tools. write: stdin into the vchan, which
is closed at the end of input; read: the vchan to stdout until the peer closes. The end runs in
domain --in (default 0, dom0); PEER is the domain at the other end. PATH is the XenStore directory
the server publishes ring-ref and event-channel in; a relative PATH is under the server's
/local/domain/<id>/ (libxenvchan's convention is data/vchan/<client>/<port>).

  --in DOMAIN        the domain this end runs in (default 0)
  --size LEFT,RIGHT  server: bytes of the ring it reads (left) and writes (right), each rounded up
                     to libxenvchan's sizes: 0 = inside the control page, at most 1048576
                     (default ${DEFAULT_SIZE},${DEFAULT_SIZE})
  --timeout SECONDS  how long a client waits for the server's keys and a server for its client
                     (default ${DEFAULT_TIMEOUT_S})
  --socket PATH      the host's xenstored socket (default: as the xenstore-* tools)

  xenlab vchan server read 2 data/vchan/2/5 --in 1 > out    # in domain 1, for domain 2
  xenlab vchan client write 1 data/vchan/2/5 --in 2 < in    # in domain 2, to domain 1
`;

export async function run(argv: string[]): Promise<number> {
  const args = commandArgs(
    "xenlab vchan",
    USAGE,
    argv,
    {
      in: { type: "string" },
      size: { type: "string" },
      timeout: { type: "string" },
      socket: { type: "string" },
    },
    true,
  );
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  const fail = (msg: string, code = 1): number => {
    process.stderr.write(`xenlab vchan: ${msg}\n${code === 2 ? USAGE : ""}`);
    return code;
  };
  if (positionals.length !== 4) return fail("needs server|client, read|write, PEER and PATH", 2);
  const [role, mode, peerArg, pathArg] = positionals as [string, string, string, string];
  if (role !== "server" && role !== "client") return fail(`'${role}' is neither server nor client`, 2);
  if (mode !== "read" && mode !== "write") return fail(`'${mode}' is neither read nor write`, 2);
  // The length is the daemon's to check (its -M); the form is XenStore's everywhere. A relative
  // PATH's trailing / is dropped.
  const absolute = pathArg.startsWith("/");
  const rel = pathArg.replace(/\/+$/, "");
  if (
    absolute
      ? pathArg === "/" || !isValidNodename(pathArg, Infinity)
      : !isValidNodename(`/${rel}`, Infinity) || rel === ""
  )
    return fail(
      `PATH '${pathArg}' is not a XenStore path: letters, digits and / _ @ - only, no trailing or double /, e.g. data/vchan/1/5`,
      2,
    );
  let sizes = [DEFAULT_SIZE, DEFAULT_SIZE];
  if (values.size !== undefined) {
    if (role !== "server") return fail("--size is for the server, which picks the ring sizes", 2);
    const m = /^(\d+),(\d+)$/.exec(values.size as string);
    if (m === null) return fail("--size needs LEFT,RIGHT in bytes, e.g. 65536,65536", 2);
    sizes = [Number(m[1]), Number(m[2])];
    if (sizes.some((n) => n > 1 << 20)) return fail("--size: a vchan ring holds at most 1048576 bytes", 2);
  }
  const timeoutS = values.timeout === undefined ? DEFAULT_TIMEOUT_S : Number(values.timeout);
  if (!(timeoutS > 0 && timeoutS <= MAX_TIMEOUT_S))
    return fail(`--timeout needs a number of seconds above 0 and at most ${MAX_TIMEOUT_S}`, 2);
  const ctl = controlPath(socketPath(values.socket as string | undefined));
  const inArg = (values.in as string | undefined) ?? "0";
  try {
    const domid = await domainId(ctl, inArg);
    if (domid === undefined) return fail(invalidDomain(inArg));
    const peer = await domainId(ctl, peerArg);
    if (peer === undefined) return fail(invalidDomain(peerArg));
    if (peer === domid)
      return fail(`PEER ${peerArg} is the domain the end runs in: a vchan joins two domains`, 2);
    const server = role === "server" ? domid : peer;
    const path = absolute ? pathArg : `/local/domain/${server}/${rel}`;
    const req: VchanStreamRequest = {
      op: "vchan",
      domid,
      role,
      mode,
      peer,
      path,
      leftMin: sizes[0]!,
      rightMin: sizes[1]!,
      timeoutMs: Math.round(timeoutS * 1000),
    };
    const none = { add: () => {} };
    if (mode === "write") await sendFrames(ctl, req, process.stdin, "-", none);
    else await receiveFrames(ctl, req, process.stdout, "-", none);
    return 0;
  } catch (e) {
    return fail((e as Error).message.replace(/^Error: /, ""));
  }
}
