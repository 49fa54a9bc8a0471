/**
 * DIRECTORY_PART against the reference C xenstored and xenlab. Its generation count is an
 * implementation value, normalised per path by order of appearance (<gen /dp #1>, #2, ...):
 * the transcripts compare when both daemons keep the count where the list is unchanged and
 * change it where the list changed; the tests also check that directly on xenlab's replies.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DiffPair } from "../helpers/diff-pair.ts";
import type { Step, StepRecord } from "../helpers/xs-script.ts";

const D = "/dp";
const BIG = "/dpbig";

/** 240 children named like "child-with-a-long-name-007": about 6.5 KB of names, over 4096. */
const BIG_CHILDREN = Array.from(
  { length: 240 },
  (_, i) => `child-with-a-long-name-${String(i).padStart(3, "0")}`,
);

const dp = (offset: string, note: string, path = D): Step => ({
  on: "a",
  op: "DIRECTORY_PART",
  args: [path, offset],
  note,
});

const SMALL: readonly Step[] = [
  { on: "a", op: "WRITE", args: [`${D}/alpha`], value: "1" },
  { on: "a", op: "WRITE", args: [`${D}/beta`], value: "2" },
  { on: "a", op: "WRITE", args: [`${D}/gamma`], value: "3" },
  dp("0", "first listing"), // 3
  dp("0", "unchanged"), // 4
  dp("3", "offset inside a name"),
  dp("6", "offset at a name"),
  dp("17", "offset at the end"),
  dp("18", "offset past the end"),
  dp("999999", "far past the end"),
  { on: "a", op: "WRITE", args: [`${D}/beta`], value: "changed", note: "child value changes" },
  dp("0", "after a child's value changed"), // 11
  { on: "a", op: "SET_PERMS", args: [D, "n0", "r1"], note: "perms of the node change" },
  dp("0", "after a perms change"), // 13
  { on: "a", op: "WRITE", args: [`${D}/delta`], value: "4", note: "child added" },
  dp("0", "after a child was added"), // 15
  { on: "a", op: "WRITE", args: [`${D}/delta/sub`], value: "5", note: "grandchild added" },
  dp("0", "after a grandchild was added"), // 17
  { on: "a", op: "RM", args: [`${D}/alpha`], note: "child removed" },
  dp("0", "after a child was removed"), // 19
  dp("x", "non-numeric offset"),
  dp("-1", "negative offset"),
  dp("", "empty offset"),
  { on: "a", op: "DIRECTORY_PART", args: [D], note: "no offset" },
  { on: "a", op: "DIRECTORY_PART", args: [D, "0", "extra"], note: "extra argument" },
  { on: "a", op: "DIRECTORY_PART", raw: `${D}\x000`, note: "offset without NUL" },
  dp("0", "missing node", `${D}/missing`),
  dp("0", "leaf", `${D}/beta`),
  dp("0", "relative path", "dp-rel"),
  { on: "a", op: "TRANSACTION_START", args: [""], bind: "t" },
  { on: "a", op: "DIRECTORY_PART", args: [D, "0"], tx: "t", note: "in a transaction" },
  { on: "a", op: "WRITE", args: [`${D}/epsilon`], value: "6", tx: "t" },
  { on: "a", op: "DIRECTORY_PART", args: [D, "0"], tx: "t", note: "own change in a transaction" },
  { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t" },
  dp("0", "after the commit"),
];

const LARGE: readonly Step[] = [
  ...BIG_CHILDREN.map((c): Step => ({ on: "a", op: "WRITE", args: [`${BIG}/${c}`], value: "" })),
  { on: "a", op: "DIRECTORY", args: [BIG], note: "over 4096 bytes: E2BIG" },
  dp("0", "first part", BIG),
  dp("0", "first part again", BIG),
  dp("4000", "second part", BIG),
  dp("6000", "last part", BIG),
  dp(String(BIG_CHILDREN.join("\0").length + 1), "at the end", BIG),
  { on: "a", op: "RM", args: [`${BIG}/${BIG_CHILDREN[100]}`] },
  dp("4000", "after a removal", BIG),
  { on: "a", op: "RM", args: [BIG] },
];

/** The normalised generation token in step `i`'s reply ("<gen /dp #2>"). */
function gen(records: readonly StepRecord[], i: number): string {
  const m = /<gen [^>]+>/.exec(records[i]?.got[0] ?? "");
  assert.ok(m, `step ${i + 1} has no generation count: ${records[i]?.got.join(" | ")}`);
  return m[0];
}

describe("DIRECTORY_PART, against the reference C xenstored", () => {
  const pair = new DiffPair();
  before(() => pair.start());
  after(() => pair.stop());

  it("gives the reference's replies, generation counts normalised: small directory", async (t) => {
    if (!pair.require(t)) return;
    const { sub } = await pair.check(SMALL);
    assert.equal(gen(sub, 4), gen(sub, 3), "unchanged list, same generation");
    assert.notEqual(gen(sub, 15), gen(sub, 13), "child added, new generation");
    assert.notEqual(gen(sub, 19), gen(sub, 17), "child removed, new generation");
  });

  it("gives the reference's replies, generation counts normalised: directory over 4096 bytes", async (t) => {
    if (!pair.require(t)) return;
    const n = BIG_CHILDREN.length;
    const { sub } = await pair.check(LARGE);
    assert.equal(gen(sub, n + 2), gen(sub, n + 1), "unchanged list, same generation");
    assert.notEqual(gen(sub, n + 7), gen(sub, n + 1), "child removed, new generation");
  });
});
