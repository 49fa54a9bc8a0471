/**
 * The fuzzer's short CI run: a few thousand requests per target with fixed seeds (core in
 * process, xenlab xenstored over its socket in a child process, guest rings with corrupted
 * indexes), none of which may fail; plus the fuzzer's own parts: the same seed gives the same
 * bytes, the framing model agrees with PacketReader, and the oracle rejects wrong replies.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FuzzFailure, FuzzStats, replyProblem } from "../../src/fuzz/check.ts";
import { defaultCorpusDir, loadCorpus } from "../../src/fuzz/corpus.ts";
import { StreamModel } from "../../src/fuzz/frame.ts";
import { makeBatch } from "../../src/fuzz/gen.ts";
import { hex } from "../../src/fuzz/mutate.ts";
import { Prng } from "../../src/fuzz/prng.ts";
import { fuzzCore } from "../../src/fuzz/target-core.ts";
import { fuzzRing } from "../../src/fuzz/target-ring.ts";
import { fuzzSocket } from "../../src/fuzz/target-socket.ts";
import { PayloadTooLargeError } from "../../src/xenstore/errors.ts";
import { encodePacket, PacketReader, typeName, XsType } from "../../src/xenstore/wire.ts";

const corpus = loadCorpus(defaultCorpusDir()).map((e) => e.bytes);

/** Runs a target; a FuzzFailure fails the test with its report (seed and bytes). */
async function fuzz(run: typeof fuzzCore, seed: number, count: number): Promise<FuzzStats> {
  const stats = new FuzzStats();
  try {
    await run({ seed, count, corpus, stats });
  } catch (e) {
    if (e instanceof FuzzFailure) assert.fail(e.report());
    throw e;
  }
  assert.ok(stats.packets >= count);
  return stats;
}

describe("the fuzz corpus", () => {
  it("holds a request of every message type of xs_wire.h", () => {
    const types = new Set(corpus.map((b) => new DataView(b.buffer, b.byteOffset).getUint32(0, true)));
    for (let t = 0; t <= 26; t++) assert.ok(types.has(t), `type ${t} (${typeName(t)})`);
  });
});

describe("the fuzzer's parts", () => {
  it("makes the same batches from the same seed", () => {
    const batch = (seed: number) => {
      const rng = new Prng(seed);
      const o = {
        rng,
        corpus,
        ownTx: [3],
        otherTx: [7],
        pathMax: 2048,
        stats: new FuzzStats(),
        maxItems: 8,
        reqId: 1,
      };
      return Array.from({ length: 50 }, () => hex(makeBatch(o).bytes)).join("|");
    };
    assert.equal(batch(99), batch(99));
    assert.notEqual(batch(99), batch(100));
  });

  it("frames mutated streams as PacketReader does, fed whole and one byte at a time", () => {
    const rng = new Prng(5);
    const o = {
      rng,
      corpus,
      ownTx: [],
      otherTx: [],
      pathMax: 2048,
      stats: new FuzzStats(),
      maxItems: 8,
      reqId: 1,
    };
    for (let n = 0; n < 300; n++) {
      const bytes = makeBatch(o).bytes;
      const model = new StreamModel().push(bytes);
      for (const step of [bytes.byteLength, 1]) {
        const r = new PacketReader();
        const got: string[] = [];
        let tooLarge: number | null = null;
        for (let i = 0; i < bytes.byteLength && tooLarge === null; i += Math.max(step, 1)) {
          for (const p of r.push(bytes.subarray(i, i + step))) got.push(hex(encodePacket(p)));
          if (r.error !== null) {
            assert.ok(r.error instanceof PayloadTooLargeError);
            tooLarge = r.error.length;
          }
        }
        assert.deepEqual(
          got,
          model.packets.map((p) => hex(encodePacket(p))),
          `batch ${n}, step ${step}`,
        );
        assert.equal(tooLarge, model.tooLarge);
      }
    }
  });

  it("rejects replies that answer another request, have the wrong type or a bad error name", () => {
    const req = { type: XsType.READ, reqId: 5, txId: 0, payload: Buffer.from("/a\0") };
    const ok = (type: number, reqId: number, body: string) =>
      replyProblem(req, { type, reqId, txId: 0, payload: Buffer.from(body) });
    assert.equal(ok(XsType.READ, 5, "value"), null);
    assert.equal(ok(XsType.ERROR, 5, "ENOENT\0"), null);
    assert.match(ok(XsType.READ, 6, "value")!, /req_id/);
    assert.match(ok(XsType.WRITE, 5, "OK\0")!, /type/);
    assert.match(ok(XsType.ERROR, 5, "ENOPE\0")!, /error reply/);
  });
});

describe("fuzzing xenstored (CI run, fixed seeds)", () => {
  it("core: 6000 requests, no exception, every reply well formed, tree consistent", async () => {
    const s = await fuzz(fuzzCore, 1, 6000);
    for (const e of ["EINVAL", "ENOENT", "EACCES", "ENOSYS"]) assert.ok(s.replies.has(`ERROR ${e}`), e);
    assert.ok(s.drops > 0, "over-long headers dropped connections");
    assert.ok(s.goodChecks > 0 && s.treeChecks > 0);
  });

  it("socket: 2000 requests to xenlab xenstored in a child process, which never crashes, hangs or closes early", async () => {
    const s = await fuzz(fuzzSocket, 2, 2000);
    assert.ok(s.drops > 0, "connections dropped at over-long headers");
    assert.ok(s.goodChecks > 0);
  });

  it("ring: 3000 requests and corrupted indexes on guest rings", async () => {
    const s = await fuzz(fuzzRing, 3, 3000);
    assert.ok(s.ringErrors.get("error 3 (payload too long)")! > 0);
    assert.ok(
      [...s.ringErrors.keys()].some((k) => k.startsWith("error 2 after")),
      "a bad index stopped a ring",
    );
    assert.ok(s.goodChecks > 0);
  });
});
