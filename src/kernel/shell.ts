/**
 * The guest's getty and shell on hvc0: what a learner attached with `xenlab console ID` talks to,
 * and what the tests use to check that input reaches the guest and its answer comes back.
 *
 * It is a tty's canonical line discipline (echo, backspace, ^C, ^U; CR or LF ends a line, a CR LF
 * pair counts once) in front of a few commands that show the live domain: `help`, `uname`,
 * `echo`, `dmesg`, `uptime`, `lsmod`, and XenStore through the guest's own ring with the
 * guest's own permissions (`xenstore-read`, `xenstore-write`, `xenstore-ls`, `ls`). Relative
 * XenStore paths are relative to the domain's home, /local/domain/<domid>, as xenstored resolves
 * them. Commands run one after another; lines typed meanwhile wait their turn.
 *
 *   root@domU:~# xenstore-read name
 *   domU
 */

import { errorMessage } from "../lib/errors.ts";
import type { ConsoleFront } from "./hvc.ts";
import type { Kernel } from "./kernel.ts";

/** What the shell uses of the kernel. */
export type ShellKernel = Pick<Kernel, "domid" | "name" | "xs" | "uptime" | "modules"> & {
  readonly console: ConsoleFront | null;
  dmesg(): readonly string[];
  /** Where modules' commands are found (shellCommands); a kernel without it has the built-ins only. */
  subsystem?: Kernel["subsystem"];
};

/** A command a module adds to the shell: its arguments in, what it prints out. */
export interface ShellCommand {
  /** One line for `help`: the usage and what it does. */
  readonly help: string;
  run(args: readonly string[]): Promise<string> | string;
}

/** The commands modules added (the network's `ip`, `ping`, `nc`...), by name. */
export class ShellCommands extends Map<string, ShellCommand> {}

/** The kernel's table of module commands: a module adds its own at init and removes them at exit. */
export function shellCommands(k: Pick<Kernel, "subsystem">): ShellCommands {
  return k.subsystem(ShellCommands, () => new ShellCommands());
}

const BS = 0x08;
const DEL = 0x7f;
const CTRL_C = 0x03;
const CTRL_U = 0x15;
const CR = 0x0d;
const LF = 0x0a;

const HELP = `commands:
  help                      this list
  uname [-a|-s|-n|-r|-m]    the system's name
  echo [ARG...]             prints its arguments
  dmesg                     the kernel log
  uptime                    seconds since the domain was built
  lsmod                     loaded driver modules
  xenstore-read PATH...     values (relative paths start at /local/domain/<domid>)
  xenstore-write PATH VALUE [PATH VALUE...]
  xenstore-ls [PATH]        the subtree, as xenstore-ls prints it
  ls [PATH]                 children of PATH (xenstore-list)
`;

export class GuestShell {
  readonly #k: ShellKernel;
  readonly #con: ConsoleFront;
  #line: number[] = [];
  #lastCr = false;
  /** Commands run one at a time, in order. */
  #queue: Promise<void> = Promise.resolve();
  readonly #decoder = new TextDecoder();

  constructor(kernel: ShellKernel) {
    if (kernel.console === null) throw new TypeError("Cannot start a shell: the domain has no PV console");
    this.#k = kernel;
    this.#con = kernel.console;
  }

  get prompt(): string {
    return `root@${this.#k.name}:~# `;
  }

  /** The getty's banner and the first prompt; from now on the console's input comes here. */
  start(): void {
    this.#con.print(`\nxenlab ${this.#k.name} hvc0 (domain ${this.#k.domid})\nType 'help' for commands.\n\n`);
    this.#con.print(this.prompt);
    this.#con.setInput((b) => this.input(b));
  }

  /** Bytes typed at the console. */
  input(bytes: Uint8Array): void {
    let echo = "";
    for (const b of bytes) {
      const afterCr = this.#lastCr;
      this.#lastCr = b === CR;
      if (b === CR || b === LF) {
        if (b === LF && afterCr) continue;
        echo += "\n";
        const line = this.#decoder.decode(Uint8Array.from(this.#line));
        this.#line = [];
        this.#con.print(echo);
        echo = "";
        this.#queue = this.#queue.then(() => this.#run(line));
      } else if (b === DEL || b === BS) {
        if (this.#line.length > 0) {
          this.#line.pop();
          echo += "\b \b";
        }
      } else if (b === CTRL_C) {
        this.#line = [];
        echo += `^C\n${this.prompt}`;
      } else if (b === CTRL_U) {
        echo += "\b \b".repeat(this.#line.length);
        this.#line = [];
      } else if (b >= 0x20 || b === 0x09) {
        this.#line.push(b);
        echo += String.fromCharCode(b < 0x80 ? b : 0x3f);
      }
    }
    if (echo !== "") this.#con.print(echo);
  }

  async #run(line: string): Promise<void> {
    let out: string;
    try {
      out = await this.execute(line);
    } catch (e) {
      out = `${errorMessage(e)}\n`;
    }
    this.#con.print(`${out}${this.prompt}`);
  }

  /** Runs one command line and returns what it prints. */
  async execute(line: string): Promise<string> {
    const argv = splitWords(line);
    const [cmd, ...args] = argv;
    if (cmd === undefined) return "";
    const k = this.#k;
    switch (cmd) {
      case "help":
        return HELP + [...this.#extra().values()].map((c) => `  ${c.help}\n`).join("");
      case "echo":
        return `${args.join(" ")}\n`;
      case "uname": {
        const f = {
          s: "xenlab",
          n: k.name,
          r: "0.1.0-xen-pv",
          m: process.arch === "x64" ? "x86_64" : process.arch,
        };
        const flag = args[0] ?? "-s";
        if (flag === "-a") return `${f.s} ${f.n} ${f.r} ${f.m}\n`;
        const one = { "-s": f.s, "-n": f.n, "-r": f.r, "-m": f.m }[flag];
        return one === undefined ? `uname: invalid option '${flag}'\n` : `${one}\n`;
      }
      case "dmesg":
        return k
          .dmesg()
          .map((l) => `${l}\n`)
          .join("");
      case "uptime":
        return `up ${k.uptime().toFixed(2)} s\n`;
      case "lsmod":
        return k.modules.map((m) => `${m}\n`).join("");
      case "xenstore-read": {
        if (args.length === 0) return "usage: xenstore-read PATH...\n";
        let out = "";
        for (const p of args) {
          try {
            out += `${await k.xs.read(p)}\n`;
          } catch {
            return `${out}xenstore-read: couldn't read path ${p}\n`;
          }
        }
        return out;
      }
      case "xenstore-write": {
        if (args.length === 0 || args.length % 2 !== 0) return "usage: xenstore-write PATH VALUE...\n";
        for (let i = 0; i < args.length; i += 2) {
          try {
            await k.xs.write(args[i]!, args[i + 1]!);
          } catch {
            return `xenstore-write: could not write path ${args[i]}\n`;
          }
        }
        return "";
      }
      case "ls":
      case "xenstore-list": {
        const p = args[0] ?? `/local/domain/${k.domid}`;
        try {
          return (await k.xs.directory(p)).map((c) => `${c}\n`).join("");
        } catch {
          return `${cmd}: couldn't list path ${p}\n`;
        }
      }
      case "xenstore-ls": {
        const p = args[0] ?? `/local/domain/${k.domid}`;
        try {
          return await this.#tree(p, 0);
        } catch {
          return `xenstore-ls: couldn't list path ${p}\n`;
        }
      }
      default: {
        const c = this.#extra().get(cmd);
        return c === undefined ? `${cmd}: command not found\n` : await c.run(args);
      }
    }
  }

  #extra(): ReadonlyMap<string, ShellCommand> {
    const k = this.#k;
    return k.subsystem === undefined ? new Map() : shellCommands({ subsystem: k.subsystem.bind(k) });
  }

  /** xenstore-ls's layout: one space of indent per level, `name = "value"`. */
  async #tree(path: string, depth: number): Promise<string> {
    let out = "";
    for (const name of await this.#k.xs.directory(path)) {
      const child = path.endsWith("/") ? `${path}${name}` : `${path}/${name}`;
      const value = (await this.#k.xs.tryRead(child)) ?? "";
      out += `${" ".repeat(depth)}${name} = "${value}"\n`;
      out += await this.#tree(child, depth + 1).catch(() => "");
    }
    return out;
  }
}

/** Words split on blanks; single or double quotes group, without escapes. */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}
