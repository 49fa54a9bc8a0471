/**
 * docs/writing-a-driver.md, run as a newcomer would follow it: every fenced block in order, in
 * a temporary directory holding the `ping` folder and a `xenlab` link to this checkout.
 *
 *   ```<lang> file=NAME    written to ping/NAME
 *   ```sh in=xenlab        run by sh in the checkout
 *   ```sh                  run by sh in ping/
 *   ```text output         lines the last run must have printed (timestamps aside)
 *
 * The one thing the test adds: before `npm install` it seeds ping's lockfile from the
 * repository's (test/helpers/pack.ts says why), so that the install works offline from the
 * npm cache. The host the page starts is the installed package's own `xenlab up`.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { seedLockfile } from "../helpers/pack.ts";
import { REPO, tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";

interface Block {
  readonly lang: string;
  readonly attrs: Readonly<Record<string, string | true>>;
  readonly body: string;
  readonly line: number;
}

/** The fenced blocks of a markdown page, with their info strings' `key=value` words. */
function blocks(markdown: string): Block[] {
  const out: Block[] = [];
  const re = /^```(\S+)([^\n]*)\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(markdown); m !== null; m = re.exec(markdown)) {
    const attrs: Record<string, string | true> = {};
    for (const word of m[2]!.trim().split(/\s+/).filter(Boolean)) {
      const eq = word.indexOf("=");
      attrs[eq === -1 ? word : word.slice(0, eq)] = eq === -1 ? true : word.slice(eq + 1);
    }
    const line = markdown.slice(0, m.index).split("\n").length;
    out.push({ lang: m[1]!, attrs, body: m[3]!, line });
  }
  return out;
}

const PAGE = join(REPO, "docs/writing-a-driver.md");
const TARBALL = join(REPO, "xenlab-0.1.0.tgz");
const stamp = (line: string) => line.replace(/^\[ *\d+\.\d{6}\] /, "");

describe("docs/writing-a-driver.md", () => {
  const dir = tempDir("xenlab-doc-");
  const ping = join(dir, "ping");
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(TARBALL, { force: true });
  });

  it("runs every block: pack, install, typecheck, and a ping answered over the ring", {
    timeout: 300_000,
  }, async () => {
    symlinkSync(REPO, join(dir, "xenlab"));
    mkdirSync(ping);
    const page = blocks(readFileSync(PAGE, "utf8"));
    assert.ok(page.length >= 8, "the page lost its blocks");
    let lastOutput = "";
    let checked = 0;
    for (const b of page) {
      const where = `block at line ${b.line} (${b.lang})`;
      if (typeof b.attrs.file === "string") {
        writeFileSync(join(ping, b.attrs.file), b.body);
      } else if (b.lang === "sh") {
        const cwd = b.attrs.in === "xenlab" ? join(dir, "xenlab") : ping;
        if (/\bnpm install\b/.test(b.body)) seedLockfile(ping);
        const r = await runTool("sh", ["-e", "-c", b.body], {
          cwd,
          env: { npm_config_offline: "true" },
          timeoutMs: 240_000,
        });
        assert.equal(r.code, 0, `${where} failed:\n${b.body}\n${r.stdout}\n${r.stderr}`);
        lastOutput = r.stdout;
      } else if (b.lang === "text" && b.attrs.output === true) {
        const printed = lastOutput.split("\n").map(stamp);
        for (const line of b.body.trim().split("\n")) {
          assert.ok(printed.includes(stamp(line)), `${where}: '${line}' not printed:\n${lastOutput}`);
        }
        checked++;
      } else {
        assert.fail(`${where}: the test does not know how to run it`);
      }
    }
    assert.equal(checked, 1, "the page shows the run's output once");
  });
});
