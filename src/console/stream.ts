/**
 * `xenlab console` over the host's control socket: the one control request that turns the
 * connection into a byte stream. After the request line
 *
 *   → {"op":"console","domid":1}        (or {"op":"console","name":"domU"})
 *   ← {"ok":true,"value":{"domid":1,"name":"domU"}}
 *
 * the connection carries raw bytes both ways: from the host, the guest's console output (first
 * what the console daemon kept while nobody was attached); to the host, the keystrokes, for the
 * guest's in ring. Either side ends it by closing: the client to detach (Ctrl-]), the host when
 * the domain is destroyed or the host stops. An error is one reply line, then the host closes.
 *
 * `serveConsole` is the host's side; `openConsole` is the client's.
 */
import { connect, type Socket } from "node:net";
import { controlSocketError } from "../lib/errors.ts";
import type { ConsoleBackend } from "./xenconsoled.ts";

export interface ConsoleRequest {
  readonly op: "console";
  readonly domid?: number;
  readonly name?: string;
}

/** The console request a control request line holds, if it is one. */
export function parseConsoleRequest(line: string): ConsoleRequest | undefined {
  let r: unknown;
  try {
    r = JSON.parse(line);
  } catch {
    return undefined;
  }
  return typeof r === "object" && r !== null && (r as { op?: unknown }).op === "console"
    ? (r as ConsoleRequest)
    : undefined;
}

/** Which domain a request names: by domid, or by name as `xl console NAME` finds it. */
function resolveDomain(
  domains: readonly { domid: number; name: string }[],
  r: ConsoleRequest,
): { domid: number; name: string } {
  if (typeof r.domid === "number") {
    const d = domains.find((x) => x.domid === r.domid);
    if (d === undefined) throw new Error(`No domain ${r.domid}`);
    return d;
  }
  if (typeof r.name === "string") {
    const d = domains.find((x) => x.name === r.name);
    if (d === undefined) throw new Error(`No domain named '${r.name}'`);
    return d;
  }
  throw new Error("A console request names a domain: domid or name");
}

/**
 * Serves a console stream on `socket` after its request line; `rest` holds bytes the client sent
 * after that line (already typed keystrokes).
 */
export async function serveConsole(
  backend: ConsoleBackend,
  domains: readonly { domid: number; name: string }[],
  socket: Socket,
  req: ConsoleRequest,
  rest: Uint8Array,
): Promise<void> {
  let session: ReturnType<ConsoleBackend["attach"]>;
  try {
    const d = resolveDomain(domains, req);
    if (d.domid === 0) throw new Error("Domain 0's console is the host's log: see 'xenlab dmesg -d 0'");
    // A guest being created: its console connects once the toolstack wrote its keys.
    await backend.whenConnected(d.domid, 10_000);
    if (socket.destroyed) return;
    // The reply line goes out before any console byte.
    socket.write(`${JSON.stringify({ ok: true, value: d })}\n`);
    session = backend.attach(d.domid, {
      write: (b) => {
        if (!socket.destroyed) socket.write(b);
      },
      get queued() {
        return socket.writableLength;
      },
      close: () => socket.end(),
    });
  } catch (e) {
    if (!socket.destroyed) socket.end(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
    return;
  }
  if (rest.length > 0) session.input(rest);
  socket.on("data", (b: Buffer) => session.input(b));
  // The client's end (detach) comes after its last keystrokes: the guest's answer to them, still
  // to come, is kept for the next client rather than written to a closing socket.
  socket.on("end", () => session.detach());
  socket.on("close", () => session.detach());
  socket.on("error", () => session.detach());
}

export interface ConsoleConnection {
  readonly domid: number;
  readonly name: string;
  /** The stream: guest output comes out, keystrokes go in. */
  readonly socket: Socket;
}

/** Connects to a host's control socket and asks for a console stream. */
export function openConsole(
  controlPath: string,
  target: { domid: number } | { name: string },
): Promise<ConsoleConnection> {
  return new Promise((resolve, reject) => {
    const s = connect(controlPath);
    let head = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) return;
      s.off("data", onData);
      s.pause();
      let r: { ok: boolean; value?: { domid: number; name: string }; error?: string };
      try {
        r = JSON.parse(head.subarray(0, nl).toString("utf8"));
      } catch {
        s.destroy();
        reject(new Error("The host answered the console request with garbage"));
        return;
      }
      if (!r.ok || r.value === undefined) {
        s.destroy();
        reject(new Error(r.error ?? "console request failed"));
        return;
      }
      // Console bytes that came with the reply go back in front of the stream.
      const more = head.subarray(nl + 1);
      if (more.length > 0) s.unshift(more);
      resolve({ domid: r.value.domid, name: r.value.name, socket: s });
    };
    s.on("data", onData);
    s.once("connect", () => s.write(`${JSON.stringify({ op: "console", ...target })}\n`));
    s.once("error", (e: NodeJS.ErrnoException) => {
      reject(controlSocketError(controlPath, e));
    });
  });
}
