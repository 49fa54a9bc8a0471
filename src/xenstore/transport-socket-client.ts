/**
 * XsClient over xenstored's Unix socket. The socket is found as libxenstore 4.17 finds it
 * (`xs_daemon_socket()`): an explicit path, else `$XENSTORED_PATH`, else
 * `$XENSTORED_RUNDIR/socket`, else `/var/run/xenstored/socket`.
 */
import { connect, type Socket } from "node:net";
import { type XsChannel, type XsChannelSink, XsClient } from "./client.ts";

export const DEFAULT_XENSTORED_RUNDIR = "/var/run/xenstored";

/** The socket path libxenstore would use, given an explicit path and the environment. */
export function xenstoredSocketPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit !== undefined) return explicit;
  const path = env.XENSTORED_PATH;
  if (path !== undefined) return path;
  return `${env.XENSTORED_RUNDIR ?? DEFAULT_XENSTORED_RUNDIR}/socket`;
}

/** An `XsChannel` over a connected stream socket. */
export class SocketChannel implements XsChannel {
  readonly #socket: Socket;
  #sink: XsChannelSink | null = null;
  #closed = false;
  #error: Error | undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.#sink?.data(chunk));
    socket.on("error", (e: Error) => {
      this.#error = e; // reported by "close", which follows
    });
    socket.on("close", () => {
      this.#closed = true;
      this.#sink?.closed(this.#error);
    });
  }

  attach(sink: XsChannelSink): void {
    this.#sink = sink;
    if (this.#closed) sink.closed(this.#error);
  }

  write(bytes: Uint8Array): void {
    if (!this.#closed) this.#socket.write(bytes);
  }

  close(): void {
    if (this.#closed) return;
    // Flush what is queued, then close both directions.
    this.#socket.end(() => this.#socket.destroy());
  }

  /** Lets the process exit while only this connection is open (for watchers, see unref()). */
  unref(): void {
    this.#socket.unref();
  }
}

/**
 * Connects to xenstored. Rejects with the socket's error (a Node `ErrnoException` with
 * `code` such as ENOENT or ECONNREFUSED) if nothing answers at the path.
 */
export function connectXenstore(path?: string): Promise<XsClient> {
  const where = xenstoredSocketPath(path);
  return new Promise((resolve, reject) => {
    const socket = connect(where);
    const onError = (e: Error) => reject(e);
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(new XsClient(new SocketChannel(socket)));
    });
  });
}
