/**
 * Logging: pino, JSON lines on stderr. `XENLAB_LOG_LEVEL` or the caller picks the level.
 */
import { pino } from "pino";

export type Logger = pino.Logger;

export function createLogger(name: string, level?: string): Logger {
  return pino(
    { name, level: level ?? process.env.XENLAB_LOG_LEVEL ?? "info", base: { name } },
    pino.destination({ fd: 2, sync: false }),
  );
}
