/**
 * `xenlab save`, `xenlab restore` and `xenlab migrate`, as xl has them (tools/xl/xl_saverestore.c,
 * xl_migrate.c), over a running host's control socket (src/host/save-file.ts and migrate.ts do
 * the work; docs/save-restore.md tells the sequence):
 *
 *   xenlab save [-c] DOMAIN FILE     the guest suspends and is written to FILE, then destroyed;
 *                                    -c (checkpoint) leaves it running
 *   xenlab restore FILE              builds it again (a new domid), its devices reconnecting
 *   xenlab migrate DOMAIN HOST       sends it to another `xenlab up`: HOST is that host's socket
 *                                    (as its --socket) or HOST:PORT (its --migrate-listen)
 *
 * DOMAIN is a domid or a name. Each takes `--socket PATH` (this host's xenstored socket). Exit
 * codes as xl: 0, 1 on any error (its cause on one line), 2 for a usage error.
 */
import { statSync } from "node:fs";
import { controlCall, controlPath } from "../host/control-client.ts";
import type { MigrateResult } from "../host/migrate.ts";
import type { SaveResult } from "../host/save-file.ts";
import { errorMessage } from "../lib/errors.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";
import { domainIdOrSay } from "./domain-id.ts";

const USAGES = {
  save: "xenlab save [-c] <Domain> <CheckpointFile> [--socket PATH]",
  restore: "xenlab restore <CheckpointFile> [--socket PATH]",
  migrate: "xenlab migrate <Domain> <Host> [--socket PATH]",
} as const;
type Cmd = keyof typeof USAGES;
const ARITY: Record<Cmd, number> = { save: 2, restore: 1, migrate: 2 };

/** Why FILE cannot be a checkpoint to restore, in a user's words with the fix, else null. */
function checkpointProblem(file: string): string | null {
  try {
    if (statSync(file).isDirectory()) return `${file} is a directory; give the file 'xenlab save' wrote`;
    return null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return `${file}: no such file; give the file 'xenlab save' wrote`;
    return `cannot read ${file}: ${errorMessage(e)}`;
  }
}

async function main(cmd: Cmd, argv: string[]): Promise<number> {
  const usage = `usage: ${USAGES[cmd]}\n`;
  const args = commandArgs(
    `xenlab ${cmd}`,
    usage,
    argv,
    {
      socket: { type: "string" },
      ...(cmd === "save" ? { checkpoint: { type: "boolean", short: "c" } } : {}),
    },
    true,
  );
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  if (positionals.length !== ARITY[cmd]) {
    process.stderr.write(`xenlab ${cmd}: wrong number of arguments\n${usage}`);
    return 2;
  }
  // As xl restore: the file first, then the host (a missing file is the mistake to name).
  const unreadable = cmd === "restore" ? checkpointProblem(positionals[0]!) : null;
  if (unreadable !== null) {
    process.stderr.write(`xenlab restore: ${unreadable}\n`);
    return 1;
  }
  const ctl = controlPath(socketPath(values.socket as string | undefined));
  try {
    if (cmd === "restore") {
      const r = (await controlCall(ctl, { op: "restore", file: positionals[0]!, cwd: process.cwd() })) as {
        domid: number;
        name: string;
      };
      process.stdout.write(`Restored ${r.name} as domain ${r.domid}; its devices are Connected\n`);
      return 0;
    }
    const domid = await domainIdOrSay(ctl, positionals[0]!);
    if (domid === undefined) return 1;
    if (cmd === "save") {
      const checkpoint = values.checkpoint === true;
      const r = (await controlCall(ctl, {
        op: "save",
        domid,
        file: positionals[1]!,
        checkpoint,
        cwd: process.cwd(),
      })) as SaveResult;
      process.stdout.write(
        `Saved ${r.name} (${r.domid}) to ${r.file}: ${r.bytes} bytes; ${checkpoint ? `paused ${r.pausedMs.toFixed(1)} ms, still running` : "destroyed"}\n`,
      );
      return 0;
    }
    const r = (await controlCall(ctl, { op: "migrate", domid, to: positionals[1]! })) as MigrateResult;
    process.stdout.write(
      `Migrated ${r.name} to ${positionals[1]} as domain ${r.domid}: ${r.bytes} bytes, downtime ${r.downtimeMs.toFixed(1)} ms\n`,
    );
    return 0;
  } catch (e) {
    process.stderr.write(`xenlab ${cmd}: ${errorMessage(e)}\n`);
    return 1;
  }
}

export const save = (argv: string[]): Promise<number> => main("save", argv);
export const restore = (argv: string[]): Promise<number> => main("restore", argv);
export const migrate = (argv: string[]): Promise<number> => main("migrate", argv);
