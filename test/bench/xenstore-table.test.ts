/**
 * `bench xenstore`'s table: a goal is met or MISSED where both daemons have a figure, and says which
 * side has none where one stopped short (case f: C xenstored runs out of memory before 1M nodes).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Results, table } from "../../src/bench/xenstore-harness.ts";

describe("bench xenstore's table", () => {
  it("says met, MISSED, or which side has no figure", () => {
    const res = new Results();
    res.add("f/rss per node at 100k", "B", "lower", "xenlab", 96);
    res.add("f/rss per node at 100k", "B", "lower", "baseline", 111);
    res.add("f/rss per node at 1M", "B", "lower", "xenlab", 75);
    res.add("a/test-xenstore", "ops/s", "higher", "xenlab", 900);
    res.add("a/test-xenstore", "ops/s", "higher", "baseline", 1000);
    const goals = [
      { name: "f/rss per node at 100k", min: 1 },
      { name: "f/rss per node at 1M", min: 1 },
      { name: "a/test-xenstore", min: 1 },
    ];
    const lines = table(res, goals, "xenlab", "C").split("\n");
    const line = (name: string) => lines.find((l) => l.startsWith(name)) ?? "";
    assert.match(line("f/rss per node at 100k"), /1\.16\s+≥1 met$/);
    assert.match(line("f/rss per node at 1M"), /≥1: no baseline figure$/);
    assert.doesNotMatch(line("f/rss per node at 1M"), /MISSED/);
    assert.match(line("a/test-xenstore"), /0\.90\s+≥1 MISSED$/);
  });
});
