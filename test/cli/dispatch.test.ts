/**
 * The subcommand dispatch of `xenlab` and `xenlab bench` (src/cli/dispatch.ts): a table of its
 * own, then both real programs from source.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, openSync } from "node:fs";
import { describe, it } from "node:test";
import { type CommandTable, command, dispatch, usage } from "../../src/cli/dispatch.ts";
import { runTool } from "../helpers/tools.ts";
import { MAIN } from "../helpers/up.ts";

/** The rows of a usage's table: name and summary, and the column the summary starts at. */
function rows(text: string): { name: string; summary: string; column: number }[] {
  const lines = text.split("\n");
  const table = lines.slice(lines.findIndex((l) => /^\w+s:$/.test(l)) + 1).filter((l) => l !== "");
  return table.map((l) => {
    const m = /^ {2}(\S+) +(\S.*)$/.exec(l);
    assert.ok(m, `a row of the table: ${JSON.stringify(l)}`);
    return { name: m[1]!, summary: m[2]!, column: l.indexOf(m[2]!) };
  });
}

describe("dispatch()", () => {
  const calls: [string, string[]][] = [];
  /** A command that records how it was called and exits `code`. */
  const recording =
    (code: number) =>
    async (name: string, argv: string[]): Promise<number> => {
      calls.push([name, argv]);
      return code;
    };
  const table: CommandTable = {
    prog: "prog",
    args: "<command> [args]",
    noun: "command",
    commands: {
      a: { summary: "the first", run: recording(0) },
      "long-name": { summary: "the second", run: recording(3) },
      loaded: command("loaded on use", async () => ({ run: async (argv) => argv.length })),
    },
  };
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) } };
  };

  it("runs the named command on the rest of the arguments, telling it its name", async () => {
    calls.length = 0;
    const t = io();
    assert.equal(await dispatch(table, ["long-name", "-x", "y"], t.io), 3);
    assert.equal(await dispatch(table, ["loaded", "1", "2"], t.io), 2);
    assert.deepEqual(calls, [["long-name", ["-x", "y"]]]);
    assert.deepEqual([t.out, t.err], [[], []]);
  });

  it("names an unknown command in one line on stderr, then the usage, and exits 2", async () => {
    for (const name of ["nope", "constructor"]) {
      const t = io();
      assert.equal(await dispatch(table, [name], t.io), 2);
      const [first, ...rest] = t.err.join("").split("\n");
      assert.equal(first, `prog: unknown command '${name}'`);
      assert.equal(rest.join("\n"), usage(table));
      assert.deepEqual(t.out, []);
    }
  });

  it("prints the usage on stdout for -h, --help and help (exit 0), and without a command (exit 2)", async () => {
    for (const [argv, code] of [
      [["-h"], 0],
      [["--help"], 0],
      [["help"], 0],
      [[], 2],
    ] as const) {
      const t = io();
      assert.equal(await dispatch(table, argv, t.io), code, argv.join(" "));
      assert.equal(t.out.join(""), usage(table));
      assert.deepEqual(t.err, []);
    }
  });

  it("lists every command with its summary, the summaries in one column", () => {
    const text = usage(table);
    assert.match(text, /^usage: prog <command> \[args\]\n\ncommands:\n/);
    const r = rows(text);
    assert.deepEqual(
      r.map((x) => [x.name, x.summary]),
      [
        ["a", "the first"],
        ["long-name", "the second"],
        ["loaded", "loaded on use"],
      ],
    );
    assert.equal(new Set(r.map((x) => x.column)).size, 1);
  });
});

describe("xenlab and xenlab bench", () => {
  const xenlab = (args: string[]) =>
    runTool(process.execPath, ["--import", "tsx", MAIN, ...args], { timeoutMs: 60_000 });

  it("xenlab --help lists every command, the summaries in one column", async () => {
    const r = await xenlab(["--help"]);
    assert.equal(r.code, 0, r.stderr);
    const names = rows(r.stdout).map((x) => x.name);
    for (const n of [
      "xenstored",
      "xs",
      "up",
      "create",
      "dmesg",
      "block-attach",
      "block-list",
      "blk-cp",
      "save",
      "restore",
      "migrate",
      "vchan",
      "network-attach",
      "network-list",
      "network-detach",
      "bench",
    ]) {
      assert.ok(names.includes(n), `${n} in:\n${r.stdout}`);
    }
    assert.equal(new Set(rows(r.stdout).map((x) => x.column)).size, 1, r.stdout);
  });

  it("xenlab with an unknown command says so in its first line and exits 2", async () => {
    const r = await xenlab(["no-such-command"]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split("\n")[0], "xenlab: unknown command 'no-such-command'");
    assert.equal(r.stdout, "");
  });

  it("xenlab bench --help lists the benchmarks; an unknown one exits 2", async () => {
    const help = await xenlab(["bench", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^usage: xenlab bench <name> \[--help \| args\]\n\nbenchmarks:\n/);
    assert.deepEqual(
      rows(help.stdout).map((x) => x.name),
      [
        "xenstore",
        "evtchn",
        "ring",
        "vchan",
        "journal",
        "migration",
        "domains",
        "blk",
        "guest-migrate",
        "blk-cp",
        "net",
      ],
    );
    const bad = await xenlab(["bench", "nope"]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.split("\n")[0], "xenlab bench: unknown benchmark 'nope'");
  });

  it("says in one line, without a stack trace, that a full disk took no output", async () => {
    // stdout on a file writes synchronously: /dev/full fails each write with ENOSPC.
    const full = openSync("/dev/full", "w");
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, "xenstored", "--help"], {
      stdio: ["ignore", full, "pipe"],
    });
    closeSync(full);
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const [code] = (await once(child, "close")) as [number | null];
    assert.equal(code, 1);
    assert.equal(
      stderr,
      "xenlab: cannot write standard output: ENOSPC: no space left on device, write; write it elsewhere\n",
    );
  });

  it("passes a domain command its own name (xenlab list --help prints list's usage)", async () => {
    const r = await xenlab(["list", "--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage: xenlab list /);
  });
});
