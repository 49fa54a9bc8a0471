/**
 * The console daemon's log files (xenconsoled --log=guest): one per guest, `<dir>/guest-<name>.log`,
 * opened for appending (O_WRONLY|O_CREAT|O_APPEND, 0644) so a guest re-created under the same
 * name continues its file. Bytes go in as the guest wrote them (xenconsoled without timestamps:
 * lines end in CR LF, as the guest's tty sent them).
 *
 * The only file of the console that touches the file system; the backend gets `openLogFile` as
 * its `openLog` collaborator.
 */
import { createWriteStream, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ConsoleLogSink } from "./xenconsoled.ts";

/** An opener of log files in `dir` (created if missing). */
export function logFilesIn(dir: string): (fileName: string) => ConsoleLogSink {
  mkdirSync(dir, { recursive: true });
  return (fileName) => openLogFile(join(dir, fileName));
}

export function openLogFile(path: string): ConsoleLogSink {
  const s = createWriteStream(path, { flags: "a", mode: 0o644 });
  let failed = false;
  s.on("error", () => {
    failed = true;
  });
  return {
    write(bytes) {
      if (!failed) s.write(bytes);
    },
    close() {
      return new Promise((resolve) => {
        if (failed || s.destroyed) resolve();
        else s.end(resolve);
      });
    },
  };
}
