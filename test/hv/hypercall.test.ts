import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MessageChannel } from "node:worker_threads";
import { spawnWorker } from "../../src/lib/spawn.ts";
import { HypercallServer, newControlWord } from "../../src/xen/hypercall.ts";

describe("hypercalls", () => {
  it("block the calling worker until the hypervisor answers, carry errors and shared pages", async () => {
    const { port1, port2 } = new MessageChannel();
    const control = newControlWord();
    const page = new SharedArrayBuffer(4096);
    const server = new HypercallServer(port1, control, (req) => {
      if (req.op === "add") return (req.args[0] as number) + (req.args[1] as number);
      if (req.op === "page") return page;
      throw new Error(`Unknown hypercall "${req.op}"`);
    });
    const w = spawnWorker(
      new URL("./fixtures/hypercall-peer.ts", import.meta.url),
      { port: port2, control, calls: 200 },
      [port2],
    );
    const out = await new Promise<{ results: number[]; error: string }>((res, rej) => {
      w.once("message", res);
      w.once("error", rej);
    });
    await w.terminate();
    server.close();
    assert.deepEqual(
      out.results,
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    assert.equal(out.error, 'Unknown hypercall "fail"');
    assert.equal(new Uint8Array(page)[0], 42, "the page the hypervisor handed over is shared");
  });
});
