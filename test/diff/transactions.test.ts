/**
 * Transactions against the reference C xenstored and xenlab: conflicts caused by a second
 * connection (c) while the first (a) holds a transaction, what a transaction sees, events at
 * commit only (watcher w), transaction ids (normalised by order of appearance) and the error
 * cases. Each table runs on both daemons and every reply and event must be equal.
 */
import { after, before, describe, it } from "node:test";
import { DiffPair } from "../helpers/diff-pair.ts";
import type { Step } from "../helpers/xs-script.ts";

const T = "/txt";

const TABLES: ReadonlyArray<readonly [string, readonly Step[]]> = [
  [
    "conflicts with a writer on a second connection",
    [
      { on: "a", op: "WRITE", args: [`${T}/n`], value: "0" },
      { on: "a", op: "WRITE", args: [`${T}/m`], value: "0" },
      // read in tx, changed outside → EAGAIN
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t1" },
      { on: "a", op: "READ", args: [`${T}/n`], tx: "t1" },
      { on: "c", op: "WRITE", args: [`${T}/n`], value: "1" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t1", note: "read node changed outside" },
      // written (not read) in tx, changed outside
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t2" },
      { on: "a", op: "WRITE", args: [`${T}/n`], value: "2", tx: "t2" },
      { on: "c", op: "WRITE", args: [`${T}/n`], value: "3" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t2", note: "written node changed outside" },
      { on: "a", op: "READ", args: [`${T}/n`] },
      // unrelated node changed outside → commits
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t3" },
      { on: "a", op: "READ", args: [`${T}/n`], tx: "t3" },
      { on: "a", op: "WRITE", args: [`${T}/n`], value: "4", tx: "t3" },
      { on: "c", op: "WRITE", args: [`${T}/m`], value: "1" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t3", note: "unrelated change outside" },
      { on: "a", op: "READ", args: [`${T}/n`] },
      // read node removed outside
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t4" },
      { on: "a", op: "READ", args: [`${T}/m`], tx: "t4" },
      { on: "c", op: "RM", args: [`${T}/m`] },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t4", note: "read node removed outside" },
      // perms of a read node changed outside
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t5" },
      { on: "a", op: "GET_PERMS", args: [`${T}/n`], tx: "t5" },
      { on: "c", op: "SET_PERMS", args: [`${T}/n`, "n0", "r2"] },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t5", note: "perms changed outside" },
      // child created under a directory listed in tx
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t6" },
      { on: "a", op: "DIRECTORY", args: [T], tx: "t6" },
      { on: "c", op: "WRITE", args: [`${T}/new`], value: "x" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t6", note: "listed directory changed outside" },
      // a child's value changed under a listed directory
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t7" },
      { on: "a", op: "DIRECTORY", args: [T], tx: "t7" },
      { on: "c", op: "WRITE", args: [`${T}/new`], value: "y" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t7", note: "child value changed, list unchanged" },
      // same value written outside
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t8" },
      { on: "a", op: "READ", args: [`${T}/new`], tx: "t8" },
      { on: "c", op: "WRITE", args: [`${T}/new`], value: "y" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t8", note: "same value rewritten outside" },
      // conflicting transaction on the second connection commits first
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t9" },
      { on: "c", op: "TRANSACTION_START", args: [""], bind: "u1" },
      { on: "a", op: "READ", args: [`${T}/n`], tx: "t9" },
      { on: "c", op: "READ", args: [`${T}/n`], tx: "u1" },
      { on: "a", op: "WRITE", args: [`${T}/n`], value: "a", tx: "t9" },
      { on: "c", op: "WRITE", args: [`${T}/n`], value: "c", tx: "u1" },
      { on: "c", op: "TRANSACTION_END", args: ["T"], tx: "u1", note: "first committer wins" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t9", note: "second committer conflicts" },
      { on: "a", op: "READ", args: [`${T}/n`] },
      // aborting after a conflict is fine
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t10" },
      { on: "a", op: "READ", args: [`${T}/n`], tx: "t10" },
      { on: "c", op: "WRITE", args: [`${T}/n`], value: "z" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "t10", note: "abort after conflict" },
      // created in tx, created outside too
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t11" },
      { on: "a", op: "WRITE", args: [`${T}/both`], value: "in", tx: "t11" },
      { on: "c", op: "WRITE", args: [`${T}/both`], value: "out" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t11", note: "both created the node" },
      { on: "a", op: "READ", args: [`${T}/both`] },
      // rm in tx of a subtree changed outside
      { on: "a", op: "WRITE", args: [`${T}/sub/x`], value: "1" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "t12" },
      { on: "a", op: "RM", args: [`${T}/sub`], tx: "t12" },
      { on: "c", op: "WRITE", args: [`${T}/sub/y`], value: "2" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t12", note: "removed subtree grew outside" },
      { on: "a", op: "DIRECTORY", args: [`${T}/sub`] },
    ],
  ],
  [
    "a transaction's copy of a parent it wrote, when a child appears outside",
    [
      { on: "a", op: "WRITE", args: [`${T}/f`], value: "x" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "p1" },
      { on: "a", op: "WRITE", args: [`${T}/f`], value: "v", tx: "p1", note: "tx copies /f, no children" },
      { on: "c", op: "WRITE", args: [`${T}/f/e`], value: "1", note: "child created outside" },
      { on: "a", op: "RM", args: [`${T}/f/e`], tx: "p1", note: "C: EIO (child missing from tx's /f)" },
      { on: "a", op: "DIRECTORY", args: [`${T}/f`], tx: "p1" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "p1" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "p2" },
      { on: "a", op: "WRITE", args: [`${T}/g`], value: "v", tx: "p2" },
      { on: "c", op: "WRITE", args: [`${T}/g/e`], value: "1" },
      { on: "a", op: "WRITE", args: [`${T}/g/e`], value: "2", tx: "p2" },
      { on: "a", op: "DIRECTORY", args: [`${T}/g`], tx: "p2" },
      { on: "a", op: "READ", args: [`${T}/g/e`], tx: "p2" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "p2" },
    ],
  ],
  [
    "what a transaction sees and does",
    [
      { on: "a", op: "WRITE", args: [`${T}/v/x`], value: "1" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "s1" },
      { on: "a", op: "WRITE", args: [`${T}/v/y/z`], value: "2", tx: "s1", note: "implicit parent in tx" },
      { on: "a", op: "DIRECTORY", args: [`${T}/v`], tx: "s1" },
      { on: "a", op: "DIRECTORY", args: [`${T}/v`], note: "outside: unchanged" },
      { on: "a", op: "READ", args: [`${T}/v/y`], tx: "s1" },
      { on: "a", op: "MKDIR", args: [`${T}/v/d`], tx: "s1" },
      { on: "a", op: "SET_PERMS", args: [`${T}/v/d`, "n4", "r0"], tx: "s1" },
      { on: "a", op: "GET_PERMS", args: [`${T}/v/d`], tx: "s1" },
      { on: "a", op: "GET_PERMS", args: [`${T}/v/d`], note: "outside: missing" },
      { on: "a", op: "RM", args: [`${T}/v/x`], tx: "s1" },
      { on: "a", op: "READ", args: [`${T}/v/x`], tx: "s1", note: "removed in tx" },
      { on: "a", op: "READ", args: [`${T}/v/x`], note: "outside: still there" },
      { on: "a", op: "DIRECTORY_PART", args: [`${T}/v`, "0"], tx: "s1" },
      { on: "a", op: "WRITE", args: ["relative/in/tx"], value: "r", tx: "s1" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "s1" },
      { on: "a", op: "DIRECTORY", args: [`${T}/v`] },
      { on: "a", op: "GET_PERMS", args: [`${T}/v/d`] },
      { on: "a", op: "READ", args: ["/local/domain/0/relative/in/tx"] },
      { on: "a", op: "READ", args: [`${T}/v/x`] },
    ],
  ],
  [
    "events fire at commit only, and not at all on abort",
    [
      { on: "w", op: "WATCH", args: [T, "tw"] },
      { on: "w", op: "WATCH", args: [`${T}/e/deep`, "td"] },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "e1" },
      { on: "a", op: "WRITE", args: [`${T}/e/one`], value: "1", tx: "e1" },
      { on: "a", op: "WRITE", args: [`${T}/e/deep/two`], value: "2", tx: "e1" },
      { on: "a", op: "MKDIR", args: [`${T}/e/three`], tx: "e1" },
      { on: "a", op: "SET_PERMS", args: [`${T}/e/one`, "n0", "r1"], tx: "e1" },
      { on: "a", op: "WRITE", args: [`${T}/e/one`], value: "again", tx: "e1", note: "same node twice" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "e1", note: "all events now" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "e2" },
      { on: "a", op: "RM", args: [`${T}/e`], tx: "e2" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "e2", note: "subtree removed in tx" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "e3" },
      { on: "a", op: "WRITE", args: [`${T}/aborted`], value: "1", tx: "e3" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "e3", note: "abort: no event" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "e4" },
      { on: "a", op: "READ", args: [`${T}/n`], tx: "e4" },
      { on: "a", op: "WRITE", args: [`${T}/failed`], value: "1", tx: "e4" },
      { on: "c", op: "WRITE", args: [`${T}/n`], value: "conflict" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "e4", note: "EAGAIN: no event for /failed" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "e5" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "e5", note: "empty transaction" },
      { on: "w", op: "WATCH", args: [T, "tw2"], tx: "e5", note: "WATCH ignores tx_id? (ended tx)" },
      { on: "w", op: "RESET_WATCHES", raw: "" },
    ],
  ],
  [
    "transaction ids and error cases",
    [
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "i1" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "i2" },
      { on: "c", op: "TRANSACTION_START", args: [""], bind: "j1", note: "ids per connection" },
      { on: "c", op: "READ", args: [`${T}/n`], tx: "i1", note: "another connection's id" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "i1" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "i3", note: "id after an ended one" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "i2" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "i3" },
      { on: "c", op: "TRANSACTION_END", args: ["T"], tx: "j1" },
      { on: "a", op: "TRANSACTION_START", args: ["junk"], bind: "i4", note: "non-empty argument" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "i4" },
      { on: "a", op: "TRANSACTION_START", raw: "", bind: "i5", note: "empty payload" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "i5" },
      { on: "a", op: "TRANSACTION_END", args: ["T"], note: "end without tx" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], note: "abort without tx" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "i6" },
      { on: "a", op: "TRANSACTION_END", args: ["T", "extra"], tx: "i6", note: "extra argument" },
      { on: "a", op: "TRANSACTION_END", args: ["t"], tx: "i6", note: "lower-case t" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "i6" },
      { on: "a", op: "TRANSACTION_START", args: [""], bind: "i7" },
      { on: "a", op: "RESET_WATCHES", raw: "", tx: "i7", note: "also ends transactions?" },
      { on: "a", op: "READ", args: [`${T}/n`], tx: "i7" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "i7" },
      { on: "a", op: "READ", args: [`${T}/n`], tx: 0xffffffff, note: "tx 0xffffffff" },
      { on: "a", op: "GET_DOMAIN_PATH", args: ["0"], tx: 77, note: "domain op with unknown tx" },
      { on: "a", op: "WATCH", args: [T, "tt"], tx: 77, note: "watch with unknown tx" },
      { on: "a", op: "UNWATCH", args: [T, "tt"], tx: 78 },
    ],
  ],
  [
    "many open transactions on one connection",
    [
      ...Array.from(
        { length: 12 },
        (_, i): Step => ({ on: "q", op: "TRANSACTION_START", args: [""], bind: `q${i}` }),
      ),
      ...Array.from(
        { length: 12 },
        (_, i): Step => ({ on: "q", op: "TRANSACTION_END", args: ["F"], tx: `q${i}` }),
      ),
      { on: "a", op: "RM", args: [T] },
    ],
  ],
];

describe("transactions, against the reference C xenstored", () => {
  const pair = new DiffPair();
  before(() => pair.start());
  after(() => pair.stop());

  for (const [name, steps] of TABLES) {
    it(`gives the reference's replies and events: ${name}`, async (t) => {
      if (!pair.require(t)) return;
      await pair.check(steps);
    });
  }
});
