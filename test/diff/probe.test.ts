/**
 * ../shared/refxs/probe.py's dom0 sequence (test/diff/probe-steps.ts) against the reference
 * C xenstored and xenlab: every reply and watch event must be equal.
 */
import { after, before, describe, it } from "node:test";
import { DiffPair } from "../helpers/diff-pair.ts";
import { PROBE_SECTIONS } from "./probe-steps.ts";

describe("probe.py's dom0 requests, against the reference C xenstored", () => {
  const pair = new DiffPair();
  before(() => pair.start());
  after(() => pair.stop());

  for (const [name, steps] of PROBE_SECTIONS) {
    it(`gives the reference's replies and events: ${name}`, async (t) => {
      if (!pair.require(t)) return;
      await pair.check(steps);
    });
  }
});
