/**
 * `<prog> <name> [args]`: the dispatch both `xenlab` and `xenlab bench` do. A table names each
 * subcommand with a one-line summary and a runner that loads the command's module only when it
 * runs. No name prints the usage and fails (exit 2); `-h`, `--help` and `help` print it (exit 0);
 * an unknown name is one line on stderr, `<prog>: unknown <noun> '<name>'`, then the usage
 * (exit 2). The runner gets the name it was called by, so one module can serve several names.
 */

/** What a command module exports: `run(argv)`, resolving to the exit code. */
export interface CommandModule {
  run(argv: string[]): Promise<number>;
}

export interface Subcommand {
  /** The command's line in the usage. */
  readonly summary: string;
  /** Runs the command on its arguments; `name` is the word it was called by. */
  readonly run: (name: string, argv: string[]) => Promise<number>;
}

export interface CommandTable {
  /** How the usage calls the program: `xenlab`, `xenlab bench`. */
  readonly prog: string;
  /** The usage line after `prog`: `<command> [args]`. */
  readonly args: string;
  /** What the table lists, singular: `command`, `benchmark`. */
  readonly noun: string;
  readonly commands: Readonly<Record<string, Subcommand>>;
}

/** Where dispatch writes (process.stdout and process.stderr unless a test gives others). */
export interface DispatchIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
}

const PROCESS_IO: DispatchIo = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

/** A subcommand whose module, loaded when it runs, exports `run(argv)`. */
export function command(summary: string, load: () => Promise<CommandModule>): Subcommand {
  return { summary, run: async (_name, argv) => (await load()).run(argv) };
}

/** The usage: the line, then one row a subcommand, the summaries in one column. */
export function usage(t: CommandTable): string {
  const names = Object.keys(t.commands);
  const width = Math.max(...names.map((n) => n.length));
  const rows = Object.entries(t.commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: ${t.prog} ${t.args}\n\n${t.noun}s:\n${rows.join("\n")}\n`;
}

/** Runs the subcommand `argv[0]` names on the rest of `argv`; resolves to the exit code. */
export async function dispatch(
  t: CommandTable,
  argv: readonly string[],
  io: DispatchIo = PROCESS_IO,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    io.out(usage(t));
    return name === undefined ? 2 : 0;
  }
  const cmd = Object.hasOwn(t.commands, name) ? t.commands[name] : undefined;
  if (cmd === undefined) {
    io.err(`${t.prog}: unknown ${t.noun} '${name}'\n${usage(t)}`);
    return 2;
  }
  return cmd.run(name, rest);
}
