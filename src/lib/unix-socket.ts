/**
 * Serving on a Unix socket path, the way every daemon of xenlab does it: a stale socket file
 * left by a crashed run is replaced, and the file goes when the server closes.
 */
import { existsSync, unlinkSync } from "node:fs";
import type { Server } from "node:net";

/** Listens on `path`, replacing a stale socket file. */
export function listenUnix(server: Server, path: string): Promise<void> {
  if (existsSync(path)) unlinkSync(path);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Stops accepting and removes the socket file once the server has closed. */
export function closeUnix(server: Server, path: string | null): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      if (path !== null && existsSync(path)) unlinkSync(path);
      resolve();
    });
  });
}
