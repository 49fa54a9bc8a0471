/**
 * `xenlab up` stops on SIGTERM while its control socket still carries streams (`dmesg -f`,
 * `console`): it ends them rather than wait for their clients, and each client exits.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { REPO, tempDir } from "../helpers/peers.ts";
import { until } from "../helpers/until.ts";
import { MAIN, startUp } from "../helpers/up.ts";

const TSX = join(REPO, "node_modules/tsx/dist/esm/index.mjs");

describe("xenlab up with streams attached", () => {
  it("stops on SIGTERM and ends its dmesg -f and console clients", { timeout: 90_000 }, async () => {
    const socket = join(tempDir("xenlab-stop-"), "socket");
    const up = await startUp(socket);
    const client = (
      ...args: string[]
    ): { child: ChildProcess; exited: Promise<number | null>; out: () => string } => {
      const child = spawn(process.execPath, ["--import", TSX, MAIN, ...args, "--socket", socket], {
        stdio: ["pipe", "pipe", "pipe"],
      });
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
      });
      child.stderr!.resume();
      return { child, exited: new Promise((r) => child.once("exit", (code) => r(code))), out: () => out };
    };
    const follow = client("dmesg", "-f", "-d", "domU");
    const console = client("console", "domU");
    await until("dmesg -f to print the log", () => follow.out().includes("Booting domain 1"), { ms: 30_000 });
    await until("the console to attach", () => console.out().length > 0, { ms: 30_000 });
    await up.stop();
    const [f, c] = await Promise.all([follow.exited, console.exited]);
    assert.equal(typeof f, "number", "dmesg -f exits");
    assert.equal(typeof c, "number", "the console exits");
  });
});
