/**
 * Random request sequences against the reference C xenstored and xenlab: well-formed
 * requests over a small set of paths, three connections, watches and transactions
 * interleaved, so that the two daemons meet orders no table thought of. The generator is
 * seeded: a failure names its seed, and the same seed replays the same sequence.
 * XENLAB_RANDOM_SEEDS=4-100 tries other seeds.
 */
import { after, before, describe, it } from "node:test";
import { DiffPair } from "../helpers/diff-pair.ts";
import { randomSteps } from "./random-steps.ts";

/** XENLAB_RANDOM_SEEDS="FIRST-LAST" explores more seeds than CI runs. */
function seeds(): number[] {
  const m = /^(\d+)-(\d+)$/.exec(process.env.XENLAB_RANDOM_SEEDS ?? "");
  if (m === null) return [1, 2, 3];
  const first = Number(m[1]);
  return Array.from({ length: Number(m[2]) - first + 1 }, (_, i) => first + i);
}

const SEEDS = seeds();
const STEPS = 250;

describe("random request sequences, against the reference C xenstored", () => {
  const pair = new DiffPair();
  before(() => pair.start());
  after(() => pair.stop());

  for (const seed of SEEDS) {
    it(`gives the reference's replies and events for ${STEPS} requests from seed ${seed}`, async (t) => {
      if (!pair.require(t)) return;
      await pair.check(randomSteps(seed, STEPS));
    });
  }
});
