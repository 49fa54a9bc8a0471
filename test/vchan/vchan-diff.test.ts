/**
 * Differential test: src/drivers/vchan against Debian's real libxenvchan, in lockstep.
 *
 * test/vchan/c/vchan_diff.c links the unmodified libxenvchan.a (libxen-dev) with stub grant,
 * event-channel and XenStore libraries and runs a server and a client in one process; the same
 * script runs on our Vchan over a recording fake (vchan-sim.ts). After every step both print the
 * control page's header and grants, a hash of each ring, and every share, map, unmap, notify and
 * XenStore call they made; the outputs must be equal line for line.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { type CReference, cReference } from "../helpers/c-reference.ts";
import { runSim } from "./vchan-sim.ts";

const here = dirname(fileURLToPath(import.meta.url));

function reference(t: TestContext): CReference | undefined {
  return cReference(t, {
    source: join(here, "c/vchan_diff.c"),
    headers: ["/usr/include/libxenvchan.h", "/usr/include/xen/io/libxenvchan.h"],
    libraries: ["/usr/lib/x86_64-linux-gnu/libxenvchan.a"],
    link: ["-Wl,-Bstatic", "-lxenvchan", "-Wl,-Bdynamic"],
  });
}

async function lockstep(c: CReference, script: readonly string[]): Promise<void> {
  const want = c.run(script);
  const got = await runSim(script);
  assert.deepEqual(got, want, `script:\n${script.join("\n")}`);
}

describe("vchan against Debian's libxenvchan", () => {
  it("matches the spec's trace: setup, notify bits, a read, both closes", async (t) => {
    const c = reference(t);
    if (c === undefined) return;
    const script = [
      "server 0 0",
      "client",
      "C space",
      "S space",
      "C write 5 1",
      "S read 16",
      "S read 16",
      "C close",
      "S close",
    ];
    const out = c.run(script);
    // The spec's PROBE bytes 20..23 at each step (A4), read off the C side.
    const live = out.filter((l) => l.startsWith("hdr ")).map((l) => l.slice(4 + 40, 4 + 48));
    assert.deepEqual(live, [
      "02010100",
      "01010101",
      "01010103",
      "01010303",
      "01010203",
      "01010301",
      "01010301",
      "00010301",
      "00000301",
    ]);
    await lockstep(c, script);
  });

  for (const [left, right] of [
    [8192, 1024],
    [1024, 8192],
    [4096, 4096],
    [2048, 65536],
    [65536, 2048],
    [1 << 20, 1 << 20],
    [3000, 3000],
  ] as const) {
    it(`lays out multi-page rings as libxenvchan does for (${left}, ${right})`, async (t) => {
      const c = reference(t);
      if (c === undefined) return;
      await lockstep(c, [
        `server ${left} ${right}`,
        "client",
        `C write ${left + 100} 3`,
        `S read ${left + 100}`,
        `S send ${right} 4`,
        "C recv 100",
        `C read ${right}`,
        `C write ${left} 5`,
        "C close",
        `S read ${left}`,
        "S read 1",
        "S close",
      ]);
    });
  }

  it("refuses a server ring over 1 MiB and a page whose orders are bad", async (t) => {
    const c = reference(t);
    if (c === undefined) return;
    await lockstep(c, ["server 2000000 0"]);
    // left_order and right_order both 10: two rings in one slot.
    await lockstep(c, ["server 0 0", "poke 18 0a00", "client"]);
  });

  it("wraps the u32 indices past 2^32", async (t) => {
    const c = reference(t);
    if (c === undefined) return;
    const near = "f0ffffff".repeat(4);
    await lockstep(c, [
      "server 0 0",
      `poke 0 ${near}`,
      "client",
      "C write 1000 1",
      "S read 300",
      "S recv 700",
      "S send 2048 2",
      "C read 4096",
      "C ready",
      "S space",
    ]);
  });

  it("agrees on random scripts", async (t) => {
    const c = reference(t);
    if (c === undefined) return;
    const size = fc.constantFrom(0, 100, 1024, 2048, 3000, 4096, 9000);
    const n = fc.integer({ min: 0, max: 10000 });
    const step = fc.oneof(
      fc
        .tuple(fc.constantFrom("S", "C"), fc.constantFrom("read", "recv"), n)
        .map(([w, o, k]) => `${w} ${o} ${k}`),
      fc
        .tuple(fc.constantFrom("S", "C"), fc.constantFrom("write", "send"), n, fc.nat(255))
        .map(([w, o, k, s]) => `${w} ${o} ${k} ${s}`),
      fc
        .tuple(fc.constantFrom("S", "C"), fc.constantFrom("ready", "space", "open"))
        .map(([w, o]) => `${w} ${o}`),
    );
    await fc.assert(
      fc.asyncProperty(
        size,
        size,
        fc.array(step, { maxLength: 30 }),
        fc.boolean(),
        async (l, r, steps, wrap) => {
          const script = [`server ${l} ${r}`];
          if (wrap) script.push(`poke 0 ${"00ffffff".repeat(4)}`);
          script.push("client", ...steps, "C close", "S read 5000", "S close");
          await lockstep(c, script);
        },
      ),
      { numRuns: 60 },
    );
  });
});
