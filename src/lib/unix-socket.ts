/**
 * Serving on a Unix socket path, the way every daemon of xenlab does it.
 *
 * - A path a live daemon serves is never taken: listening fails with `SocketInUseError`, and the
 *   daemon there runs on untouched. "Live" means a connect to the path succeeds.
 * - A stale socket file (left by a crashed run: connect fails with ECONNREFUSED) is replaced.
 *   Anything else at the path (a regular file, a directory) is left alone and listening fails.
 * - On close, the daemon removes the path only if it still names the socket it created (same
 *   device and inode): a file someone else put there since is not ours to delete.
 *
 * libuv unlinks the path a pipe server was bound to when the server closes, whatever is there by
 * then. So the server binds a fresh name beside the path, which nobody else knows, and that name
 * is then linked to the path: link(2) fails with EEXIST rather than replace anything, so two
 * daemons starting at once cannot both win. On close libuv unlinks only the private name, long
 * gone, and the path is ours to check.
 */
import { randomBytes } from "node:crypto";
import { linkSync, lstatSync, type Stats, unlinkSync } from "node:fs";
import { connect, type Server } from "node:net";
import { dirname, join } from "node:path";
import { SocketInUseError } from "./errors.ts";

/** A path a server listens on, with the identity of the socket file it created there. */
export interface UnixListener {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

/** How a connect to `path` ends: "live" when a daemon answers, else the connect's error code. */
function probe(path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve("live");
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

/** Makes room at `path`: nothing there, or a stale socket removed; refuses a live one. */
async function clear(path: string): Promise<void> {
  const st = lstatOrNull(path);
  if (st === null) return;
  if (!st.isSocket()) throw new Error(`Cannot listen on ${path}: it exists and is not a socket`);
  const state = await probe(path);
  if (state === "live") throw new SocketInUseError(path);
  if (state === "ENOENT") return;
  if (state !== "ECONNREFUSED") throw new Error(`Cannot listen on ${path}: connect gives ${state}`);
  // Stale: remove it, unless another daemon replaced it while we probed.
  const now = lstatOrNull(path);
  if (now !== null && now.ino === st.ino && now.dev === st.dev) unlinkSync(path);
}

/**
 * Rejects with `SocketInUseError` if a daemon answers on `path`: a daemon checks this before it
 * builds anything that a refusal would have to tear down. `listenUnix` checks again.
 */
export async function refuseIfServed(path: string): Promise<void> {
  if (lstatOrNull(path)?.isSocket() === true && (await probe(path)) === "live")
    throw new SocketInUseError(path);
}

function unlinkIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

function bind(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/**
 * Listens on `path`, replacing a stale socket file; rejects with `SocketInUseError` when a
 * daemon answers there. The result is what `closeUnix` needs to remove only our own file.
 */
export async function listenUnix(server: Server, path: string): Promise<UnixListener> {
  // The private name: in the same directory, so that link(2) stays within one file system, and
  // no longer than most names (".Ab3_"), since a socket path has at most 107 bytes.
  const own = join(dirname(path), `.${randomBytes(3).toString("base64url")}`);
  await bind(server, own);
  try {
    for (let tries = 0; ; tries++) {
      await clear(path);
      try {
        linkSync(own, path);
        break;
      } catch (e) {
        // Another daemon took the path between our check and our link: check again (it may
        // be live, or already dead and stale).
        if ((e as NodeJS.ErrnoException).code !== "EEXIST" || tries >= 3) throw e;
      }
    }
  } catch (e) {
    unlinkIfPresent(own);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw e;
  }
  unlinkSync(own);
  const st = lstatSync(path);
  return { path, dev: st.dev, ino: st.ino };
}

/** Stops accepting and, once the server has closed, removes its socket file if still its own. */
export function closeUnix(server: Server, listener: UnixListener | null): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      if (listener !== null) {
        const st = lstatOrNull(listener.path);
        if (st !== null && st.ino === listener.ino && st.dev === listener.dev) unlinkSync(listener.path);
      }
      resolve();
    });
  });
}
