/** The message of anything thrown: an Error's message, else the value as a string. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A Unix socket path a live daemon serves: listening there would take it over. */
export class SocketInUseError extends Error {
  readonly path: string;
  constructor(path: string) {
    super(`A daemon already answers on ${path}: stop it, or pass another --socket`);
    this.name = "SocketInUseError";
    this.path = path;
  }
}

/** A save file (`xenlab save`) that cannot be restored: truncated, corrupted, or of another format. */
export class SaveFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SaveFileError";
  }
}

/**
 * A failed connection to a xenlab host's control socket (`<xenstored socket>.ctl`) as the user's
 * line: nothing listening there is "no host" with the fix, and a path ending `.ctl.ctl` means
 * --socket named the control socket itself; any other failure is returned as it is.
 */
export function controlSocketError(ctl: string, e: NodeJS.ErrnoException): Error {
  if (e.code !== "ENOENT" && e.code !== "ECONNREFUSED") return e;
  const twice = /\.ctl\.ctl$/.test(ctl);
  return new Error(
    twice
      ? `No xenlab host at ${ctl}: --socket is xenstored's socket, not the control socket; pass --socket ${ctl.slice(0, -8)}`
      : `No xenlab host at ${ctl}: start one with 'xenlab up'`,
  );
}
