/**
 * A C reference program built with gcc against Xen's headers (Debian libxen-dev), for the
 * differential tests (ring, blkif, console): built once per process on first use, removed at
 * exit, driven by a script of lines on stdin, answering with lines on stdout. Missing gcc or a
 * header skips the test on a developer's machine and fails it under CI (requirePeer).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import type { TestContext } from "node:test";
import { hasCommand, requirePeer, tempDir } from "./peers.ts";

export interface CReference {
  /** The built program, for a test that drives it interactively. */
  readonly bin: string;
  /** Runs the program on `script` (one line each) and returns its output lines. */
  run(script: readonly string[]): string[];
}

export interface CReferenceSpec {
  /** The C source (absolute path). */
  readonly source: string;
  /** The Xen headers it includes, checked before building. */
  readonly headers: readonly string[];
  /** Extra gcc arguments after the source (libraries to link), checked files first. */
  readonly link?: readonly string[];
  /** Files the link needs (a static library), checked before building. */
  readonly libraries?: readonly string[];
}

const built = new Map<string, string>();

/** The built program, or undefined when the test was skipped for lack of gcc or the headers. */
export function cReference(t: TestContext, spec: CReferenceSpec): CReference | undefined {
  let bin = built.get(spec.source);
  if (bin === undefined) {
    const files = [...spec.headers, ...(spec.libraries ?? [])];
    const present = hasCommand("gcc") && files.every((h) => existsSync(h));
    const names = files.map((h) => h.replace(/^.*\/include\/(xen\/)?/, "")).join(", ");
    if (!requirePeer(t, `gcc and Xen's ${names} (Debian libxen-dev)`, present)) return undefined;
    const name = basename(spec.source, ".c");
    const dir = tempDir(`xenlab-${name}-`);
    bin = join(dir, name);
    execFileSync(
      "gcc",
      ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, spec.source, ...(spec.link ?? [])],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    built.set(spec.source, bin);
  }
  const program = bin;
  return {
    bin: program,
    run(script) {
      const r = spawnSync(program, [], {
        input: `${script.join("\n")}\n`,
        maxBuffer: 1 << 30,
        encoding: "utf8",
      });
      if (r.status !== 0) throw new Error(`${basename(program)} exited with ${r.status}: ${r.stderr}`);
      return r.stdout.split("\n").slice(0, -1);
    },
  };
}
