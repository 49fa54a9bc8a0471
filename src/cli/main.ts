#!/usr/bin/env node
/**
 * `xenlab <command> [args]`: one file per command under src/cli/, each exporting
 * `run(argv): Promise<number>` (the exit code); src/cli/dispatch.ts picks the command.
 */
import { errorMessage } from "../lib/errors.ts";
import { type CommandTable, command, dispatch, type Subcommand } from "./dispatch.ts";

/** A command that talks to a running host (src/cli/domctl.ts); the name picks the request. */
function domctl(summary: string): Subcommand {
  return { summary, run: async (name, argv) => (await import("./domctl.ts")).run(name, argv) };
}

/** A disk command: src/cli/block.ts exports one function a command. */
function block(summary: string, fn: "attach" | "detach" | "list"): Subcommand {
  return { summary, run: async (_name, argv) => (await import("./block.ts"))[fn](argv) };
}

/** A NIC command: src/cli/network.ts exports one function a command. */
function network(summary: string, fn: "attach" | "detach" | "list"): Subcommand {
  return { summary, run: async (_name, argv) => (await import("./network.ts"))[fn](argv) };
}

/** A save, restore or migrate command: src/cli/save.ts exports one function a command. */
function saveCmd(summary: string, fn: "save" | "restore" | "migrate"): Subcommand {
  return { summary, run: async (_name, argv) => (await import("./save.ts"))[fn](argv) };
}

const XENLAB: CommandTable = {
  prog: "xenlab",
  args: "<command> [args]",
  noun: "command",
  commands: {
    xenstored: command("run the XenStore daemon on a Unix socket", () => import("./xenstored.ts")),
    xs: command("xenstore-* tools: read write ls rm chmod list exists watch mkdir", () => import("./xs.ts")),
    demo: command("the alice_dev driver pair end to end (what npm start runs)", () => import("./demo.ts")),
    up: command("run a host: hypervisor, xenstored, dom0 and a guest", () => import("./up.ts")),
    create: domctl("create a guest (as xl create): create [-f] FILE [KEY=VALUE...] | create NAME"),
    list: domctl("list the domains (as xl list): list [DOMAIN]"),
    destroy: domctl("destroy a guest: destroy DOMAIN"),
    insmod: domctl("load a driver module into a domain: insmod -d DOMAIN FILE [ARG...]"),
    rmmod: domctl("unload a driver module: rmmod -d DOMAIN NAME"),
    lsmod: domctl("a domain's loaded modules: lsmod -d DOMAIN"),
    dmesg: domctl("a domain's kernel log: dmesg -d DOMAIN [-n N] [-f]"),
    "block-attach": block("attach a disk (as xl block-attach): block-attach DOMAIN DISK-SPEC...", "attach"),
    "block-detach": block("detach a disk: block-detach DOMAIN VDEV", "detach"),
    "block-list": block("a guest's disks: block-list DOMAIN...", "list"),
    "network-attach": network(
      "attach a PV NIC (as xl network-attach): network-attach DOMAIN [mac=…,bridge=…]",
      "attach",
    ),
    "network-detach": network("detach a NIC: network-detach DOMAIN DEVID|MAC", "detach"),
    "network-list": network("a guest's NICs: network-list DOMAIN...", "list"),
    "blk-cp": command(
      "copy a file into or out of a guest's disk: blk-cp FILE DOMAIN:VDEV[:SECTOR] | DOMAIN:VDEV[:S[+N]] FILE",
      () => import("./blk-cp.ts"),
    ),
    vchan: command(
      "a libxenvchan stream end in a domain (as vchan-node): vchan server|client read|write PEER PATH",
      () => import("./vchan.ts"),
    ),
    console: command(
      "attach to a guest's PV console: console DOMAIN (Ctrl-] detaches)",
      () => import("./console.ts"),
    ),
    save: saveCmd("save a guest to a file (as xl save): save [-c] DOMAIN FILE", "save"),
    restore: saveCmd("restore a saved guest (as xl restore): restore FILE", "restore"),
    migrate: saveCmd("send a guest to another xenlab host (as xl migrate): migrate DOMAIN HOST", "migrate"),
    devices: command(
      "every XenBus device, both ends' states and why it is stuck: devices [DOMAIN]",
      () => import("./devices.ts"),
    ),
    bench: command("benchmarks against a baseline measured in the same run", () => import("./bench.ts")),
  },
};

// A reader that closed its end (`xenlab demo | head -5`): a C program dies of SIGPIPE, which Node
// ignores, and a write then fails with EPIPE in an 'error' event. Leave quietly with the status a
// shell shows for SIGPIPE, as `yes | head` does, whichever command was writing.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(128 + 13);
    // A command that listens too (receiveFrames: vchan, blk-cp) says it in one line itself.
    if (stream.listenerCount("error") > 1) return;
    // Another failure (ENOSPC on a full disk): one line on stderr, if stderr is not the one failing.
    if (stream === process.stdout)
      process.stderr.write(`xenlab: cannot write standard output: ${e.message}; write it elsewhere\n`);
    process.exit(1);
  });
}

dispatch(XENLAB, process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // A command reports the errors a user can fix itself; what reaches here is unexpected. One
    // line still, the stack only when asked for.
    const stack = process.env.XENLAB_DEBUG ? (err as Error).stack : undefined;
    process.stderr.write(`xenlab: ${stack ?? errorMessage(err)}\n`);
    process.exitCode = 1;
  },
);
