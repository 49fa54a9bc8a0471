/** The console's tail for the live view (src/console/output-tail.ts): the newest bytes, as text. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { consoleText, OutputTail } from "../../src/console/output-tail.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe("OutputTail", () => {
  it("keeps the newest max bytes across wraps, fed whole and one byte at a time", () => {
    const text = "the quick brown fox jumps over the lazy dog";
    for (const max of [1, 4, 7, 43, 64]) {
      const whole = new OutputTail(max);
      whole.append(enc(text));
      const bytewise = new OutputTail(max);
      for (const b of enc(text)) bytewise.append(Uint8Array.of(b));
      const chunked = new OutputTail(max);
      for (let i = 0; i < text.length; i += 5) chunked.append(enc(text.slice(i, i + 5)));
      for (const t of [whole, bytewise, chunked]) {
        assert.equal(dec(t.bytes()), text.slice(-max), `max ${max}`);
        assert.equal(t.total, text.length);
      }
    }
  });

  it("is empty at first and refuses a size below 1", () => {
    assert.equal(new OutputTail(8).bytes().length, 0);
    assert.throws(() => new OutputTail(0), RangeError);
  });
});

describe("consoleText()", () => {
  it("shows what a terminal shows: CRLF as LF, backspaces applied, escapes dropped", () => {
    assert.equal(consoleText(enc("a\r\nb\r\n")), "a\nb\n");
    assert.equal(consoleText(enc("lsx\b \bmod\r\n")), "lsmod\n");
    assert.equal(consoleText(enc("\x1b[1;32mok\x1b[0m\x07\n")), "ok\n");
    assert.equal(consoleText(enc("é")), "é");
  });
});
