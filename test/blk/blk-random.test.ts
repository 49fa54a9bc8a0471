/**
 * Random I/O through blkfront → blkback, checked against a model (fast-check): every read
 * returns what the model holds, byte for byte, and at the end the image file holds exactly the
 * model. Two guests negotiate differently: one with a 16-page ring (`ring-page-order` 4,
 * `ring-ref0..15`) and 256 indirect segments with persistent grants, one with a one-page ring,
 * no persistent grants and no indirect requests (11 segments at most). Each read and write goes
 * either through blkfront's copying API or zero-copy, through an IoBuffer of guest pages.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { BLKFRONT_MODULE } from "../../src/host/disk.ts";
import type { Host } from "../../src/host/host.ts";
import { startHost, type TestHost } from "../helpers/host.ts";

const SECTORS = 4096; // 2 MiB

/** `zeroCopy`: through an IoBuffer of guest pages granted as they are (blkfront's allocBuffer). */
type Op =
  | { kind: "write"; sector: number; count: number; seed: number; zeroCopy: boolean }
  | { kind: "read"; sector: number; count: number; zeroCopy: boolean }
  | { kind: "flush" };

const range = fc
  .integer({ min: 1, max: 600 })
  .chain((count) =>
    fc.record({ count: fc.constant(count), sector: fc.integer({ min: 0, max: SECTORS - count }) }),
  );
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(range, fc.integer(), fc.boolean())
      .map(([r, seed, zeroCopy]) => ({ kind: "write" as const, ...r, seed, zeroCopy })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(range, fc.boolean())
      .map(([r, zeroCopy]) => ({ kind: "read" as const, ...r, zeroCopy })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "flush" as const }) },
);

function bytes(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

describe("random I/O read back byte-exact, image equal to the model", () => {
  let fx: TestHost;
  let host: Host;
  const guests: { domid: number; image: string; model: Uint8Array; label: string }[] = [];

  before(async () => {
    fx = await startHost({ dom0: { maxPages: 4096 } });
    ({ host } = fx);
    const variants: [string, string[], string[]][] = [
      ["16-page ring, indirect 256, persistent", ["max_ring_page_order=4", "max_indirect_segments=256"], []],
      [
        "1-page ring, no persistent grants, no indirect",
        ["feature_persistent=0", "max_indirect_segments=0"],
        [],
      ],
    ];
    for (const [label, frontArgs] of variants) {
      const domid = (await host.createDomain({ name: `g${guests.length}`, maxPages: 2048 })).domid;
      await host.hv.insmod(domid, BLKFRONT_MODULE, frontArgs);
      const image = await fx.attachDisk(domid, { sectors: SECTORS, vdev: "xvdb" });
      guests.push({ domid, image, model: new Uint8Array(SECTORS * 512), label });
    }
  });
  after(() => fx?.stop());

  it("negotiates what each guest asked for", async () => {
    const [a, b] = guests;
    const fe = (d: number) => `/local/domain/${d}/device/vbd/51728`;
    assert.equal(await host.xs.read(`${fe(a!.domid)}/ring-page-order`), "4");
    assert.match(await host.xs.read(`${fe(a!.domid)}/ring-ref15`), /^\d+$/);
    assert.equal(await host.xs.exists(`${fe(a!.domid)}/ring-ref`), false);
    assert.equal(await host.xs.read(`${fe(b!.domid)}/feature-persistent`), "0");
    const info = (d: number) =>
      host.hv.call(d, "xen_blkfront", "info", { vdev: "xvdb" }) as Promise<{ features: unknown }>;
    assert.deepEqual((await info(a!.domid)).features, {
      flush: true,
      discard: true,
      persistent: true,
      maxIndirectSegments: 256,
      ringPages: 16,
    });
    assert.deepEqual((await info(b!.domid)).features, {
      flush: true,
      discard: true,
      persistent: false,
      maxIndirectSegments: 0,
      ringPages: 1,
    });
  });

  for (const i of [0, 1]) {
    it(`guest ${i + 1}: random writes and reads, some concurrent`, async () => {
      const g = guests[i]!;
      const call = (cmd: string, arg?: unknown) => host.hv.call(g.domid, "xen_blkfront", cmd, arg);
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
          // Writes to disjoint ranges may run together; anything overlapping waits.
          let pending: { lo: number; hi: number; p: Promise<unknown> }[] = [];
          for (const o of ops) {
            if (o.kind === "flush") {
              await Promise.all(pending.map((x) => x.p));
              pending = [];
              await call("flush", { vdev: "xvdb" });
              continue;
            }
            const lo = o.sector;
            const hi = o.sector + o.count;
            const clash = pending.filter((x) => x.lo < hi && lo < x.hi);
            if (clash.length > 0) {
              await Promise.all(pending.map((x) => x.p));
              pending = [];
            }
            if (o.kind === "write") {
              const data = bytes(o.seed, o.count * 512);
              g.model.set(data, lo * 512);
              pending.push({
                lo,
                hi,
                p: call("write", { vdev: "xvdb", sector: lo, data, zeroCopy: o.zeroCopy }),
              });
            } else {
              const want = g.model.slice(lo * 512, hi * 512);
              pending.push({
                lo,
                hi,
                p: (
                  call("read", {
                    vdev: "xvdb",
                    sector: lo,
                    count: o.count,
                    zeroCopy: o.zeroCopy,
                  }) as Promise<Uint8Array>
                ).then((got) => assert.ok(Buffer.from(got).equals(want), `read ${lo}+${o.count} differs`)),
              });
            }
          }
          await Promise.all(pending.map((x) => x.p));
        }),
        { numRuns: 25, seed: 1234 + i },
      );
      assert.ok(readFileSync(g.image).equals(g.model), `${g.label}: the image holds exactly the writes`);
    });
  }
});
