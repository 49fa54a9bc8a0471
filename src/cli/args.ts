/**
 * The command-line start every subcommand shares: node:util parseArgs with `-h/--help` added; a
 * parse error prints `<prog>: <message>` and the usage on stderr (exit 2), `--help` prints the
 * usage on stdout (exit 0).
 */
import { type ParseArgsConfig, parseArgs } from "node:util";

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** The parsed arguments, or the exit code when the command should stop here. */
export function commandArgs(
  prog: string,
  usage: string,
  argv: readonly string[],
  options: NonNullable<ParseArgsConfig["options"]>,
  allowPositionals = false,
): ParsedArgs | number {
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals,
      options: { ...options, help: { type: "boolean", short: "h" } },
    }) as ParsedArgs;
  } catch (e) {
    process.stderr.write(`${prog}: ${(e as Error).message}\n${usage}`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(usage);
    return 0;
  }
  return parsed;
}
