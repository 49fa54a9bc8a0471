#!/usr/bin/env node
/**
 * `xenlab <command> [args]`: one file per command under src/cli/, each exporting
 * `run(argv): Promise<number>` (the exit code).
 */
type Command = { summary: string; load: () => Promise<{ run(argv: string[]): Promise<number> }> };

/** A command that talks to a running host (src/cli/domctl.ts); the name picks the request. */
function domctl(summary: string): Command {
  return {
    summary,
    load: async () => {
      const m = await import("./domctl.ts");
      return { run: (argv: string[]) => m.run(currentCommand, argv) };
    },
  };
}
let currentCommand = "";

const COMMANDS: Record<string, Command> = {
  xenstored: { summary: "run the XenStore daemon on a Unix socket", load: () => import("./xenstored.ts") },
  xs: {
    summary: "xenstore-* tools: read write ls rm chmod list exists watch mkdir",
    load: () => import("./xs.ts"),
  },
  demo: {
    summary: "the alice_dev driver pair end to end (what npm start runs)",
    load: () => import("./demo.ts"),
  },
  up: { summary: "run a host: hypervisor, xenstored, dom0 and a guest", load: () => import("./up.ts") },
  create: domctl("create a guest (as xl create)"),
  list: domctl("list the domains (as xl list)"),
  destroy: domctl("destroy a guest"),
  insmod: domctl("load a driver module into a domain: insmod -d ID FILE"),
  rmmod: domctl("unload a driver module: rmmod -d ID NAME"),
  dmesg: domctl("a domain's kernel log: dmesg -d ID [-n N]"),
  "block-attach": {
    summary: "attach a disk (as xl block-attach): block-attach ID DISK-SPEC...",
    load: async () => ({ run: (await import("./block.ts")).attach }),
  },
  "block-detach": {
    summary: "detach a disk: block-detach ID VDEV",
    load: async () => ({ run: (await import("./block.ts")).detach }),
  },
  "block-list": {
    summary: "a guest's disks: block-list ID...",
    load: async () => ({ run: (await import("./block.ts")).list }),
  },
  "blk-cp": {
    summary: "copy a file into or out of a guest's disk: blk-cp FILE ID:VDEV[:SECTOR] | ID:VDEV[:S[+N]] FILE",
    load: () => import("./blk-cp.ts"),
  },
  console: {
    summary: "attach to a guest's PV console: console DOMAIN (Ctrl-] detaches)",
    load: () => import("./console.ts"),
  },
  bench: {
    summary: "benchmarks against a baseline measured in the same run",
    load: () => import("./bench.ts"),
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: xenlab <command> [args]\n\ncommands:\n${lines.join("\n")}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    process.stderr.write(`xenlab: unknown command '${name}'\n${usage()}`);
    return 2;
  }
  currentCommand = name;
  const mod = await cmd.load();
  return mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`xenlab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
