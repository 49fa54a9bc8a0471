/**
 * Logging: pino on stderr, in one of two formats.
 *
 * - `pretty`: one readable line per record (pino-pretty, on one line, colours on a terminal):
 *   `[14:02:07.123] INFO (xenlab-up): domain 1 (domU) created {"domid":1,"domain":"domU"}`.
 * - `json`: pino's JSON lines, one object per record, for a program to read.
 *
 * The format is the caller's (`--log-format`), else `XENLAB_LOG_FORMAT`, else pretty when stderr is
 * a terminal and JSON when it is not (a pipe, a file: whoever reads it is likely a program).
 * The level is the caller's, else `XENLAB_LOG_LEVEL`, else info. A record's keys never repeat the
 * logger's own `name` (a domain's name goes under `domain`).
 */
import { pino } from "pino";
import { PinoPretty } from "pino-pretty";

export type Logger = pino.Logger;

export const LOG_FORMATS = ["pretty", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Which format the logs take: the explicit choice, else the environment's, else by the terminal. */
export function logFormat(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  isTTY: boolean = process.stderr.isTTY === true,
): LogFormat {
  const chosen = explicit ?? (env.XENLAB_LOG_FORMAT || undefined);
  if (chosen === undefined) return isTTY ? "pretty" : "json";
  if ((LOG_FORMATS as readonly string[]).includes(chosen)) return chosen as LogFormat;
  throw new RangeError(
    `Unknown log format '${chosen}'${explicit === undefined ? " in XENLAB_LOG_FORMAT" : ""}: use pretty or json`,
  );
}

/**
 * A logger named `name` on stderr; `format` as `logFormat()` picks it. An unknown level or format
 * is a RangeError naming the ones there are.
 */
export function createLogger(name: string, level?: string, format?: string): Logger {
  const chosen = level ?? (process.env.XENLAB_LOG_LEVEL || "info");
  if (chosen !== "silent" && !Object.hasOwn(pino.levels.values, chosen)) {
    const known = [...Object.keys(pino.levels.values), "silent"].join(", ");
    throw new RangeError(`Unknown log level '${chosen}': use one of ${known}`);
  }
  const options = { name, level: chosen, base: { name } };
  if (logFormat(format) === "json") return pino(options, pino.destination({ fd: 2, sync: false }));
  return pino(
    options,
    PinoPretty({
      destination: 2,
      sync: true,
      singleLine: true,
      colorize: process.stderr.isTTY === true,
      translateTime: "SYS:HH:MM:ss.l",
      ignore: "pid,hostname",
    }),
  );
}
