/**
 * Binding a TCP server for a command-line flag (`--http`, `--migrate-listen`), with one line
 * naming the cause and the fix when it cannot be bound. Commands bind before they boot
 * anything, so a taken port is the first and only line a user sees.
 */
import type { Server } from "node:net";
import { errorMessage } from "./errors.ts";

/**
 * Listens on `port` at `host`. Rejects with `Cannot <what> on HOST:PORT: <cause>; <fix>`,
 * where `flag` is the option that picks another port (e.g. `--http PORT`).
 */
export function listenTcp(
  server: Server,
  host: string,
  port: number,
  what: string,
  flag: string,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
      const cause =
        e.code === "EADDRINUSE"
          ? `the port is in use; pick another with ${flag}`
          : e.code === "ENOTFOUND" || e.code === "EAI_AGAIN"
            ? `no host '${host}' is known; use 127.0.0.1 or 0.0.0.0`
            : e.code === "EADDRNOTAVAIL"
              ? "no such local address; use 127.0.0.1 or 0.0.0.0"
              : e.code === "EACCES"
                ? "permission denied; use a port above 1023"
                : errorMessage(e);
      reject(new Error(`Cannot ${what} on ${where}: ${cause}`));
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
