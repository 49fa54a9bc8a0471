/**
 * The command line at its edges, as a user meets it: every command's `--help`, a reader that
 * closes the pipe early, and the log lines on a terminal and off one.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runTool } from "../helpers/tools.ts";
import { MAIN } from "../helpers/up.ts";

function xenlab(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runTool(process.execPath, ["--import", "tsx", MAIN, ...args], { env, timeoutMs: 60_000 });
}

/** A shell line with `xenlab` standing for the command from source. */
function sh(line: string, env: NodeJS.ProcessEnv = {}) {
  const xenlab = `'${process.execPath}' --import tsx '${MAIN}'`;
  return runTool("bash", ["-c", line.replaceAll("xenlab ", `${xenlab} `)], { env, timeoutMs: 90_000 });
}

describe("xenlab <command> --help", () => {
  it("prints each command's usage on stdout and exits 0", { timeout: 120_000 }, async () => {
    const top = await xenlab(["--help"]);
    assert.equal(top.code, 0);
    const names = [...top.stdout.matchAll(/^ {2}(\S+) {2,}/gm)].map((m) => m[1]!);
    assert.ok(names.includes("xs") && names.includes("console"), top.stdout);
    for (const name of names) {
      const r = await xenlab([name, "--help"]);
      assert.equal(r.code, 0, `xenlab ${name} --help: ${r.stderr}`);
      assert.equal(r.stderr, "", `xenlab ${name} --help`);
      assert.match(r.stdout, new RegExp(`^usage: xenlab ${name} `), `xenlab ${name} --help`);
    }
  });

  it("xs --help lists the modes; a mode's -h stays the Xen tool's", async () => {
    const r = await xenlab(["xs", "--help"]);
    assert.equal(r.code, 0);
    for (const mode of ["read", "write", "ls", "rm", "chmod", "list", "exists", "watch", "mkdir"])
      assert.match(r.stdout, new RegExp(`^ {2}${mode} +\\[-h\\]`, "m"));
    const h = await xenlab(["xs", "read", "-h"]);
    assert.equal(h.code, 1);
    assert.match(h.stderr, /^xenstore-read: Usage: /);
  });
});

describe("a reader that closes the pipe", () => {
  it("xenlab demo | head -5 ends with 141 (SIGPIPE's status), quietly", { timeout: 90_000 }, async () => {
    const r = await sh(`xenlab demo | head -5; echo "status \${PIPESTATUS[0]}" >&2`);
    assert.equal(r.stdout.split("\n").length, 6, r.stdout);
    assert.equal(r.stderr, "status 141\n");
  });
});
