/**
 * A seeded generator of random, well-formed request sequences over a small set of paths:
 * three connections, watches and transactions interleaved. The same seed gives the same
 * sequence.
 */

import { mulberry32 } from "../helpers/prng.ts";
import type { OpName, Step } from "../helpers/xs-script.ts";

const CONNS = ["a", "b", "c"];
const PATHS = ["/f", "/f/a", "/f/a/b", "/f/c", "/f/c/d", "/f/e", "r", "r/x", "/f/a/b/z"];
const WATCHES = ["/f", "/f/a", "/f/c/d", "r", "/f/zz", "@releaseDomain"];
const PERMS = [["n0"], ["r0"], ["n0", "r1"], ["b0", "w2", "n3"], ["n5", "r0"]];

export function randomSteps(seed: number, n: number): Step[] {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const open = new Map<string, string[]>(CONNS.map((c) => [c, []]));
  const watching = new Map<string, [string, string][]>(CONNS.map((c) => [c, []]));
  let txCount = 0;
  const steps: Step[] = [];
  for (let i = 0; i < n; i++) {
    const on = pick(CONNS);
    const txs = open.get(on)!;
    const tx = txs.length > 0 && rnd() < 0.5 ? pick(txs) : undefined;
    const inTx = tx === undefined ? {} : { tx };
    const r = rnd();
    const path = pick(PATHS);
    if (r < 0.22) {
      steps.push({ on, op: "WRITE", args: [path], value: `v${i}`, ...inTx });
    } else if (r < 0.4) {
      const op: OpName = pick(["READ", "DIRECTORY", "GET_PERMS"] as const);
      steps.push({ on, op, args: [path], ...inTx });
    } else if (r < 0.46) {
      steps.push({ on, op: "DIRECTORY_PART", args: [path, "0"], ...inTx });
    } else if (r < 0.53) {
      steps.push({ on, op: "MKDIR", args: [path], ...inTx });
    } else if (r < 0.6) {
      steps.push({ on, op: "RM", args: [path], ...inTx });
    } else if (r < 0.66) {
      steps.push({ on, op: "SET_PERMS", args: [path, ...pick(PERMS)], ...inTx });
    } else if (r < 0.74) {
      const w: [string, string] = [pick(WATCHES), `tok${Math.floor(rnd() * 3)}`];
      watching.get(on)!.push(w);
      steps.push({ on, op: "WATCH", args: w });
    } else if (r < 0.78) {
      const ws = watching.get(on)!;
      const w = ws.length > 0 ? ws.splice(Math.floor(rnd() * ws.length), 1)[0]! : [pick(WATCHES), "tok0"];
      steps.push({ on, op: "UNWATCH", args: w });
    } else if (r < 0.87) {
      if (txs.length < 3) {
        const name = `t${++txCount}`;
        txs.push(name);
        steps.push({ on, op: "TRANSACTION_START", args: [""], bind: name });
      }
    } else if (txs.length > 0) {
      const name = txs.splice(Math.floor(rnd() * txs.length), 1)[0]!;
      steps.push({ on, op: "TRANSACTION_END", args: [rnd() < 0.8 ? "T" : "F"], tx: name });
    }
  }
  for (const [on, txs] of open)
    for (const tx of txs) steps.push({ on, op: "TRANSACTION_END", args: ["T"], tx });
  steps.push({ on: "a", op: "DIRECTORY", args: ["/f"] }, { on: "a", op: "RM", args: ["/f"] });
  steps.push({ on: "a", op: "RM", args: ["r"] });
  for (const on of CONNS) steps.push({ on, op: "RESET_WATCHES", raw: "" });
  return steps;
}
