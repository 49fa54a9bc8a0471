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
