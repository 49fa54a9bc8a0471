/**
 * `xl migrate DOMAIN HOST` between two `xenlab up` hosts (tools/xl/xl_migrate.c), over one
 * connection to the receiver: its control socket (a Unix path: its xenstored socket as `--socket`
 * names it, or the `.ctl` beside it) or the TCP port `xenlab up --migrate-listen` opened. The
 * sender's first line is `{"op":"migrate-receive"}`; then, as xl does, each side's messages are
 * xl's, one JSON line each (`{"msg": …}`, or `{"error": …}` when the receiver gives up):
 *
 *   receiver  "xl migration receiver ready, send binary domain data."
 *   sender    suspends the guest (save.ts), then a u64 length and the save file (save-format.ts)
 *   receiver  checks it, builds the guest paused as `NAME--incoming` with its devices:
 *             "domain received, ready to unpause"
 *   sender    renames its copy `NAME--migratedaway`: "domain is yours, you are cleared to unpause"
 *   receiver  renames it NAME, unpauses it, waits for its devices to connect:
 *             "my copy unpause results are as follows" with `status` 0 (and its domid)
 *   sender    status 0: destroys its copy. Anything else, or the connection failing at any step
 *             before it: renames its copy back and resumes it in place (the suspend cancelled),
 *             and says why. The receiver destroys an incoming copy it was not cleared to run.
 *
 * The downtime the sender reports runs from the guest's suspend to the receiver's status: the
 * time the guest runs nowhere.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { errorMessage } from "../lib/errors.ts";
import { listenTcp } from "../lib/tcp-listen.ts";
import { domainPath } from "../xenbus/keys.ts";
import type { Host } from "./host.ts";
import {
  imageGuest,
  requireGuest,
  restoreGuest,
  resumeGuest,
  suspendGuest,
  waitDevicesConnected,
} from "./save.ts";
import { decodeSaveFile, encodeSaveFile } from "./save-format.ts";

export const MIGRATE = {
  banner: "xl migration receiver ready, send binary domain data.",
  received: "domain received, ready to unpause",
  cleared: "domain is yours, you are cleared to unpause",
  result: "my copy unpause results are as follows",
} as const;

/** The largest save stream a receiver takes (a guest's memory is far less). */
const MAX_STREAM = 1 << 30;

interface Msg {
  readonly msg?: string;
  readonly error?: string;
  readonly status?: number;
  readonly domid?: number;
}

/** Reads lines and byte counts off a socket, in order; a closed socket fails the read. */
class StreamReader {
  #buf: Buffer = Buffer.alloc(0);
  #closed: string | null = null;
  #wake: (() => void) | null = null;
  /** How long a read waits for the peer, ms; past it the read fails. */
  readonly timeoutMs: number;

  constructor(s: Socket, timeoutMs: number, initial: Buffer = Buffer.alloc(0)) {
    this.timeoutMs = timeoutMs;
    this.#buf = initial;
    s.on("data", (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#wake?.();
    });
    const close = (why: string) => {
      this.#closed ??= why;
      this.#wake?.();
    };
    s.on("end", () => close("the connection closed"));
    s.on("close", () => close("the connection closed"));
    s.on("error", (e) => close(errorMessage(e)));
  }

  async #until(ready: () => boolean): Promise<void> {
    const deadline = performance.now() + this.timeoutMs;
    while (!ready()) {
      if (this.#closed !== null) throw new Error(this.#closed);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no answer in ${this.timeoutMs / 1000} s`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#wake = r;
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
      this.#wake = null;
    }
  }

  async line(): Promise<string> {
    await this.#until(() => this.#buf.includes(10));
    const nl = this.#buf.indexOf(10);
    const l = this.#buf.subarray(0, nl).toString("utf8");
    this.#buf = this.#buf.subarray(nl + 1);
    return l;
  }

  async msg(): Promise<Msg> {
    const l = await this.line();
    try {
      return JSON.parse(l) as Msg;
    } catch {
      throw new Error(`unexpected reply ${JSON.stringify(l.slice(0, 80))}`);
    }
  }

  async bytes(n: number): Promise<Buffer> {
    await this.#until(() => this.#buf.length >= n);
    const b = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return b;
  }
}

function send(s: Socket, m: Msg): void {
  if (!s.destroyed) s.write(`${JSON.stringify(m)}\n`);
}

/** Where HOST points: a Unix socket path, or `host:port`. */
export function migrationTarget(to: string): { path: string } | { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(to);
  if (m !== null && !to.includes("/")) return { host: m[1] === "" ? "127.0.0.1" : m[1]!, port: Number(m[2]) };
  return { path: to.endsWith(".ctl") ? to : `${to}.ctl` };
}

function dial(to: string): Promise<Socket> {
  const target = migrationTarget(to);
  return new Promise((resolve, reject) => {
    const s = connect(target);
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      reject(
        new Error(
          e.code === "ENOENT" || e.code === "ECONNREFUSED"
            ? `no xenlab host answers at ${"path" in target ? target.path : `${target.host}:${target.port}`} (start one there with 'xenlab up${"path" in target ? "" : " --migrate-listen PORT"}')`
            : errorMessage(e),
        ),
      );
    });
  });
}

export interface MigrateResult {
  readonly name: string;
  /** The guest's domid on the receiver. */
  readonly domid: number;
  readonly bytes: number;
  /** ms the guest ran nowhere: from its suspend here to its unpause there. */
  readonly downtimeMs: number;
}

/** libxl_domain_rename: the name must be no other domain's. */
async function rename(host: Host, domid: number, name: string): Promise<void> {
  if (host.hv.list().some((d) => d.name === name && d.domid !== domid))
    throw new Error(`Domain with name "${name}" already exists.`);
  host.hv.rename(domid, name);
  await host.xs.write(`${domainPath(domid)}/name`, name);
}

/** The sender's side (see the module comment). */
/** How long each side waits for the other's next message (libxl waits 60 s for a suspend). */
export const MIGRATE_TIMEOUT_MS = 60_000;

export async function migrateGuest(
  host: Host,
  domid: number,
  to: string,
  opts: { readonly timeoutMs?: number } = {},
): Promise<MigrateResult> {
  const { name } = requireGuest(host, domid, "migrate");
  const fail = (why: string) => new Error(`Cannot migrate ${name} (${domid}) to ${to}: ${why}`);
  let s: Socket;
  try {
    s = await dial(to);
  } catch (e) {
    throw fail(errorMessage(e));
  }
  const r = new StreamReader(s, opts.timeoutMs ?? MIGRATE_TIMEOUT_MS);
  try {
    s.write(`${JSON.stringify({ op: "migrate-receive" })}\n`);
    const banner = await r.msg().catch((e: unknown) => ({ error: errorMessage(e) }) as Msg);
    if (banner.msg !== MIGRATE.banner) throw fail(`the receiver is not ready: ${banner.error ?? banner.msg}`);
    await suspendGuest(host, domid);
    const t0 = performance.now();
    let renamed = false;
    let bytes = 0;
    let result: Msg;
    try {
      const file = encodeSaveFile(await imageGuest(host, domid));
      bytes = file.byteLength;
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(bytes));
      s.write(len);
      s.write(file);
      const got = await r.msg();
      if (got.msg !== MIGRATE.received) throw new Error(`the receiver failed: ${got.error ?? got.msg}`);
      await rename(host, domid, `${name}--migratedaway`);
      renamed = true;
      send(s, { msg: MIGRATE.cleared });
      result = await r.msg().catch((e: unknown) => {
        throw new Error(`${errorMessage(e)} after it was cleared (it may run the guest too: check there)`);
      });
      if (result.msg !== MIGRATE.result || result.status !== 0)
        throw new Error(`the receiver could not run it: ${result.error ?? `status ${result.status}`}`);
    } catch (e) {
      if (renamed) await rename(host, domid, name).catch(() => {});
      await resumeGuest(host, domid);
      throw fail(`${errorMessage(e)}; ${name} goes on here`);
    }
    const downtimeMs = performance.now() - t0;
    await host.destroyDomain(domid);
    return { name, domid: result.domid ?? -1, bytes, downtimeMs };
  } finally {
    s.end();
  }
}

/**
 * The receiver's side, on a connection whose first line asked for it (`rest`: what came after
 * that line). Resolves when the migration is over, whichever way.
 */
export function receiveMigration(host: Host, s: Socket, rest: Buffer = Buffer.alloc(0)): Promise<void> {
  return receive(host, s, new StreamReader(s, MIGRATE_TIMEOUT_MS, rest));
}

async function receive(host: Host, s: Socket, r: StreamReader): Promise<void> {
  send(s, { msg: MIGRATE.banner });
  let domid: number | null = null;
  try {
    const len = Number((await r.bytes(8)).readBigUInt64LE());
    if (len > MAX_STREAM) throw new Error(`a save stream of ${len} bytes is more than ${MAX_STREAM}`);
    const saved = decodeSaveFile(await r.bytes(len));
    const name = saved.domain.name;
    const info = await restoreGuest(host, saved, { name: `${name}--incoming`, paused: true });
    domid = info.domid;
    send(s, { msg: MIGRATE.received });
    const go = await r.msg();
    if (go.msg !== MIGRATE.cleared) throw new Error(`the sender did not clear it: ${go.error ?? go.msg}`);
    await rename(host, domid, name);
    host.hv.unpause(domid);
    await host.hv.ready(domid);
    await waitDevicesConnected(host, domid);
    send(s, { msg: MIGRATE.result, status: 0, domid });
    domid = null;
  } catch (e) {
    // Its copy gone first, so that a sender told so may take its own back at once.
    if (domid !== null) await host.destroyDomain(domid).catch(() => {});
    send(s, { msg: MIGRATE.result, status: 1, error: errorMessage(e) });
  } finally {
    s.end();
  }
}

/** `--migrate-listen [HOST:]PORT` parsed; RangeError with the fix when it is not one. */
export function parseMigrateListen(addr: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(addr);
  if (m === null || Number(m[2]) > 65535)
    throw new RangeError(`Invalid --migrate-listen '${addr}': give [HOST:]PORT, e.g. 8002`);
  return { host: m[1] ?? "127.0.0.1", port: Number(m[2]) };
}

/**
 * `xenlab up --migrate-listen [HOST:]PORT`: a TCP port that takes migrations and nothing else,
 * bound before the host boots (a taken port is one line, nothing started); `serve(host)` then
 * takes them. A sender that connects in between is told the host is starting.
 */
export async function bindMigration(at: {
  host: string;
  port: number;
}): Promise<{ server: Server; serve: (host: Host) => void }> {
  let target: Host | null = null;
  const server = createServer((s) => {
    s.on("error", () => {});
    const r = new StreamReader(s, MIGRATE_TIMEOUT_MS);
    void r
      .line()
      .then(async (l) => {
        const req = JSON.parse(l) as { op?: unknown };
        if (req.op !== "migrate-receive") throw new Error("this port takes migrations only");
        if (target === null) throw new Error("the receiving host is still starting; try again");
        await receive(target, s, r);
      })
      .catch((e: unknown) => {
        send(s, { error: errorMessage(e) });
        s.end();
      });
  });
  await listenTcp(server, at.host, at.port, "take migrations", "--migrate-listen PORT");
  return {
    server,
    serve: (host) => {
      target = host;
    },
  };
}
