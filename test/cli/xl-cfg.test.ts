/**
 * xl's config syntax (src/host/xl-cfg.ts): whole files and their corners against the messages
 * libxlutil prints, then a differential run against Xen's libxlutil itself (Debian libxen-dev,
 * test/cli/c/xlu-probe.c) on the same cases and on seeded random token soup.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseXlConfig, XlConfigError } from "../../src/host/xl-cfg.ts";
import { hasCommand, REPO, requirePeer, tempDir } from "../helpers/peers.ts";
import { mulberry32 } from "../helpers/prng.ts";

/** What our parser makes of `text`, in the probe's words (see xlu-probe.c). */
function ours(text: string, keys: readonly string[]): string {
  const out: string[] = [];
  try {
    const cfg = parseXlConfig(Buffer.from(text, "utf8"), "guest.cfg");
    out.push("rc=0");
    for (const k of keys) {
      const s = cfg.find(k);
      if (s === undefined) out.push(`${k} absent`);
      else if (typeof s.value === "string") out.push(`${k} string ${s.value}`);
      else {
        const items = s.value.map((v) => `[${typeof v === "string" ? v : "(null)"}]`);
        out.push(`${k} list ${items.length}${items.map((i) => ` ${i}`).join("")}`);
      }
      const before = cfg.warnings.length;
      const n = cfg.long(k);
      out.push(...cfg.warnings.slice(before));
      if (n !== undefined) out.push(`${k} long ${n}`);
    }
  } catch (e) {
    if (!(e instanceof XlConfigError)) throw e;
    const python = e.messages.filter((m) => m.startsWith("warning:"));
    out.push(...e.messages.filter((m) => !m.startsWith("warning:")), ...python, "rc=22");
  }
  return `${out.join("\n")}\n`;
}

/** Every statement kind and corner the grammar has; each is also run against libxlutil. */
const CASES: readonly [text: string, expected: string][] = [
  [
    'name = "a"\nmemory = 128\n',
    "rc=0\nname string a\nguest.cfg:1: warning: parameter `name' is not a valid number",
  ],
  [
    "x = 1 2\n",
    "guest.cfg:1: config parsing error near `2': syntax error, unexpected NUMBER, expecting $end\nrc=22",
  ],
  [
    "x = \n",
    "guest.cfg:0: config parsing error near <newline>: syntax error, unexpected NEWLINE, expecting STRING or NUMBER or '['\nrc=22",
  ],
  [
    '"a" = 1\n',
    "guest.cfg:1: config parsing error near `\"a\"': syntax error, unexpected STRING, expecting $end or IDENT or NEWLINE or ';'\nrc=22",
  ],
  [
    'x = [ "a" "b" ]\n',
    "guest.cfg:1: config parsing error near `\"b\"': syntax error, unexpected STRING, expecting ']'\nrc=22",
  ],
  ['x = [\n "a",\n "b",\n]\n', "rc=0\nx list 2 [a] [b]"],
  [
    "x = [ , ]\n",
    "guest.cfg:1: config parsing error near `,': syntax error, unexpected ',', expecting ']'\nrc=22",
  ],
  ["x = 1;; y=2\n", "rc=0\nx string 1"],
  [
    "x = 1 y = 2\n",
    "guest.cfg:1: config parsing error near `y': syntax error, unexpected IDENT, expecting $end\nrc=22",
  ],
  ["x = 1", "rc=0\nx string 1"],
  ['x = "a"\ny += "b"\nx += "c"\n', "rc=0\nx string ac"],
  [
    "x = 1.5\n",
    "guest.cfg:1: config parsing error near `.5': lexical error\nwarning: Config file looks like",
  ],
  ["X = 1\n", "guest.cfg:1: config parsing error near `X': lexical error\nrc=22"],
  ['x = "unterminated\n', "guest.cfg:1: config parsing error near `\"unterminated': lexical error\nrc=22"],
  ['x = [ [ "a" ], "b" ]\n', "rc=0\nx list 2 [(null)] [b]"],
  ["x = 0x10\n", "rc=0\nx string 0x10\nx long 16"],
  ["x = 1 # c\n# only\n\n", "rc=0\nx string 1\nx long 1"],
  [
    'x = "\\x41"\n',
    'near `"\\x41"\': invalid digit after backslash hexnumerical character escape in quoted string',
  ],
  ['x = "\\q"\n', "invalid character after backlash in quoted string"],
  ['x = "\\101z\\t"\n', "rc=0\nx string z\t"],
  ["x = 1\nx = 2\n", "rc=0\nx string 2\nx long 2"],
  [
    'x = [1]\nx += "a"\n',
    'guest.cfg:2: config parsing error near `"a"\': can\'t add [list] to "string" or vice versa\nrc=22',
  ],
  [
    "x = 1\n\x01 = 2\ny = @\n",
    "guest.cfg:2: config parsing error near `\x01': lexical error\nguest.cfg:3: config parsing error near `@': lexical error\nrc=22",
  ],
  [
    "x\n",
    "guest.cfg:0: config parsing error near <newline>: syntax error, unexpected NEWLINE, expecting += or '='\nrc=22",
  ],
  [
    "x = [\n",
    "guest.cfg:1: config parsing error near `': syntax error, unexpected $end, expecting ']'\nrc=22",
  ],
  [
    "x y\nz w\n",
    "guest.cfg:1: config parsing error near `y': syntax error, unexpected IDENT, expecting += or '='\nrc=22",
  ],
  ["x y\na = 1\nz w\n", "guest.cfg:3: config parsing error near `w'"],
  [
    "x y",
    "guest.cfg:1: config parsing error near `y': syntax error, unexpected IDENT, expecting += or '='\nrc=22",
  ],
  ["x = 1\n@", "rc=0\nx string 1"],
  ["# c\nx = 1 # trailing\n2\n", "guest.cfg:3: config parsing error near `2'"],
  ['x = "a" ; y = 1\n', "rc=0\nx string a"],
  ["x = 08\n", "x string 08\nguest.cfg:1: warning: parameter `x' is not a valid number"],
  [
    "x = 99999999999999999999\n",
    "x string 99999999999999999999\nguest.cfg:1: warning: parameter `x' could not be parsed as a number: Numerical result out of range",
  ],
  ["x += 1\n", "guest.cfg:1: warning: can't use += with numbers for parameter `x'"],
  ["x = 'it''s'\n", "unexpected STRING, expecting $end"],
  ["x = 'a\\'b'\n", "rc=0\nx string a'b"],
  ["a.b_c = -1\n", "near `-1': lexical error"],
  ["x = [ 'a', [ 'b', [ ] ], ]\n", "rc=0\nx list 2 [a] [(null)]"],
  ["x = = 1\n", "unexpected '=', expecting STRING or NUMBER or '['"],
  ["x = [ 'a' ] ]\n", "unexpected ']', expecting $end"],
  // `#` starts a comment only with a newline to end it.
  ["x = 1 # no newline at the end", "guest.cfg:1: config parsing error near `#': lexical error\nrc=22"],
  ["x = 1 # c\ny z\n", "guest.cfg:2: config parsing error near `z'"],
  ["x = 1\n+= 2\n", "unexpected +=, expecting $end or IDENT or NEWLINE or ';'"],
  ["x = 'é'\n", "rc=0\nx string é"],
];

const KEYS = ["name", "x", "y", "a.b_c"];

describe("parseXlConfig()", () => {
  for (const [text, expected] of CASES) {
    it(`reads ${JSON.stringify(text)} as libxlutil does`, () => {
      // The keys the expectation speaks of, in KEYS' order.
      const got = ours(
        text,
        KEYS.filter((k) => new RegExp(`(^|\n)${k} |\`${k}'`).test(expected)),
      );
      assert.ok(got.includes(expected), `${got}\n  should include\n${expected}`);
    });
  }

  it("keeps the value's line and `+=` for the getters, the newest setting first", () => {
    const cfg = parseXlConfig('name = "a"\n\ndisk = [\n "x" ]\nname = "b"\n', "g.cfg");
    assert.equal(cfg.string("name"), "b");
    assert.deepEqual(cfg.list("disk"), ["x"]);
    assert.equal(cfg.find("disk")?.line, 3);
    assert.equal(cfg.list("name"), undefined);
    assert.deepEqual(cfg.warnings, [
      "g.cfg:5: warning: parameter `name' is a single value but should be a list",
    ]);
  });
});

/** Seeded token soup: the grammar's tokens, newlines, comments and bad characters. */
function soup(seed: number): string {
  const rnd = mulberry32(seed);
  const pieces = [
    "x",
    "y",
    "name",
    "=",
    "+=",
    "[",
    "]",
    ",",
    ";",
    "\n",
    "\n",
    "\n",
    '"s"',
    "'t'",
    "1",
    "0x1f",
    "# c\n",
    " ",
    "@",
    ".",
    "X",
    '"\\q"',
    '"u',
  ];
  const n = 1 + Math.floor(rnd() * 14);
  let s = "";
  for (let i = 0; i < n; i++) s += pieces[Math.floor(rnd() * pieces.length)]!;
  return s;
}

describe("parseXlConfig() against Xen's libxlutil", () => {
  const lib = "/usr/include/libxlutil.h";
  let probe: string | undefined;
  const theirs = (text: string): string =>
    spawnSync(probe!, ["guest.cfg", ...KEYS], { input: Buffer.from(text, "utf8") }).stdout.toString("utf8");

  it("prints the same messages and reads the same values on every case", (t) => {
    if (!requirePeer(t, "gcc and Xen's libxlutil (Debian libxen-dev)", hasCommand("gcc") && existsSync(lib)))
      return;
    const dir = tempDir("xenlab-xlu-");
    probe = join(dir, "xlu-probe");
    execFileSync("gcc", [
      "-std=gnu11",
      "-O2",
      "-Wall",
      "-Wextra",
      "-Werror",
      "-o",
      probe,
      join(REPO, "test/cli/c/xlu-probe.c"),
      "-lxlutil",
    ]);
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    for (const [text] of CASES) {
      assert.equal(ours(text, KEYS), theirs(text), JSON.stringify(text));
    }
  });

  it("and on 400 seeded random token soups", (t) => {
    if (probe === undefined) return void t.skip("no libxlutil probe");
    for (let seed = 1; seed <= 400; seed++) {
      const text = soup(seed);
      assert.equal(ours(text, KEYS), theirs(text), `seed ${seed}: ${JSON.stringify(text)}`);
    }
  });
});
