/**
 * The XenbusState table of io/xenbus.h, both ways (Linux `xenbus_strstate`), and how a `state`
 * key's text reads.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseXenbusState, XenbusState, xenbusStateName, xenbusStateOf } from "../../src/xenbus/xenbus.ts";

describe("XenbusState", () => {
  it("has io/xenbus.h's values", () => {
    assert.deepEqual(Object.entries(XenbusState), [
      ["Unknown", 0],
      ["Initialising", 1],
      ["InitWait", 2],
      ["Initialised", 3],
      ["Connected", 4],
      ["Closing", 5],
      ["Closed", 6],
      ["Reconfiguring", 7],
      ["Reconfigured", 8],
    ]);
  });

  it("names each state and finds each name back", () => {
    for (const [name, value] of Object.entries(XenbusState)) {
      assert.equal(xenbusStateName(value), name);
      assert.equal(xenbusStateOf(name), value);
    }
  });

  it("names a number outside the table INVALID, as xenbus_strstate does", () => {
    for (const s of [-1, 9, 1.5, Number.NaN]) assert.equal(xenbusStateName(s), "INVALID");
  });

  it("finds no state for an unknown name", () => {
    for (const n of ["closed", "INVALID", "toString", ""]) assert.equal(xenbusStateOf(n), undefined);
  });
});

describe("parseXenbusState()", () => {
  it("reads the decimal text of the state key", () => {
    assert.equal(parseXenbusState("4"), XenbusState.Connected);
  });

  it("reads a missing key as Unknown", () => {
    assert.equal(parseXenbusState(undefined), XenbusState.Unknown);
  });

  it("reads text that is no number as NaN, a state no driver expects", () => {
    assert.ok(Number.isNaN(parseXenbusState("up")));
  });
});
