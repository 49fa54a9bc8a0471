/**
 * Quotas against the reference C xenstored and xenlab, both started with the same quota
 * flags (xenlab takes the C daemon's): what CONTROL quota and quota-soft show, which quotas
 * bind dom0 over the socket, and changing them with CONTROL quota set.
 */
import { type DiffTables, describeDiff } from "../helpers/diff-pair.ts";
import type { Step } from "../helpers/xs-script.ts";

const FLAGS = [
  ...["-E", "50", "-S", "300", "-W", "4", "-t", "2", "-A", "2", "-M", "40"],
  ...["-Q", "transaction-nodes=6", "-Q", "memory=100000", "-Q", "outstanding=5"],
  ...["-q", "memory=50000", "-w", "watch-event=10"],
];

const Q = "/qt";

const TABLES: DiffTables = [
  [
    "CONTROL quota and quota-soft after the flags",
    [
      { on: "a", op: "CONTROL", args: ["quota"] },
      { on: "a", op: "CONTROL", args: ["quota-soft"] },
    ],
  ],
  [
    "which quotas bind dom0",
    [
      ...Array.from(
        { length: 6 },
        (_, i): Step => ({ on: "a", op: "WRITE", args: [`${Q}/w${i}`], value: "v" }),
      ),
      { on: "a", op: "WRITE", args: [`${Q}/big`], value: "x".repeat(400), note: "node over -S 300" },
      { on: "a", op: "WRITE", args: [`${Q}/${"p".repeat(40)}`], value: "1", note: "path over -M 40" },
      { on: "a", op: "WRITE", args: [`p${"q".repeat(39)}`], value: "1", note: "relative path of 40" },
      { on: "a", op: "WRITE", args: [`p${"r".repeat(40)}`], value: "1", note: "relative path of 41" },
      { on: "a", op: "SET_PERMS", args: [`${Q}/w0`, "n0", "r1", "r2", "r3"], note: "entries over -A 2" },
      ...Array.from({ length: 5 }, (_, i): Step => ({ on: "a", op: "WATCH", args: [`${Q}/w${i}`, "q"] })),
      ...Array.from(
        { length: 3 },
        (_, i): Step => ({ on: "a", op: "TRANSACTION_START", args: [""], bind: `t${i}` }),
      ),
      ...Array.from({ length: 8 }, (_, i): Step => ({ on: "a", op: "READ", args: [`${Q}/w${i}`], tx: "t0" })),
      { on: "a", op: "TRANSACTION_END", args: ["T"], tx: "t0", note: "over -Q transaction-nodes=6" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "t1" },
      { on: "a", op: "TRANSACTION_END", args: ["F"], tx: "t2" },
      {
        on: "a",
        pipeline: Array.from({ length: 8 }, (_, i) => ({ op: "READ" as const, args: [`${Q}/w${i}`] })),
      },
      { on: "a", op: "RESET_WATCHES", raw: "" },
    ],
  ],
  [
    "CONTROL quota set",
    [
      { on: "a", op: "CONTROL", args: ["quota", "set", "nodes", "77"] },
      { on: "a", op: "CONTROL", args: ["quota", "set", "memory", "123456"] },
      { on: "a", op: "CONTROL", args: ["quota", "set", "bogus", "1"] },
      { on: "a", op: "CONTROL", args: ["quota", "set", "nodes"], note: "no value" },
      { on: "a", op: "CONTROL", args: ["quota", "set", "nodes", "x"], note: "non-numeric" },
      { on: "a", op: "CONTROL", args: ["quota-soft", "set", "memory", "99999"] },
      { on: "a", op: "CONTROL", args: ["quota-soft", "set", "nodes", "1"], note: "not a soft quota" },
      { on: "a", op: "CONTROL", args: ["quota"] },
      { on: "a", op: "CONTROL", args: ["quota-soft"] },
      { on: "a", op: "CONTROL", args: ["quota", "5"], note: "a domain never introduced" },
      { on: "a", op: "RM", args: [Q] },
    ],
  ],
];

describeDiff("quotas set by the C daemon's flags, against the reference C xenstored", TABLES, {
  args: FLAGS,
});
