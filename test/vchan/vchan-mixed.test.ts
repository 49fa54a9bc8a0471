/**
 * Mixed pairs: Debian's libxenvchan at one end and our Vchan at the other, on the same pages.
 *
 * vchan_diff.c runs with VCHAN_SHM=FILE: its grants are pages of FILE, and it answers one command
 * at a time. Our end (vchan-sim.ts's SimRun over the same file) rereads the pages before each of
 * its steps and writes them back after, so the two take turns on one page image. After every
 * step the C program prints the page and rings; the whole exchange must print exactly what the
 * same script prints with both ends in C. (Node cannot mmap, so the ends take turns rather than
 * run at once; the concurrent case is covered between xenlab domains, vchan-domains.test.ts.)
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { type CReference, cReference } from "../helpers/c-reference.ts";
import { tempDir } from "../helpers/peers.ts";
import { SimRun } from "./vchan-sim.ts";

const here = dirname(fileURLToPath(import.meta.url));

function reference(t: TestContext): CReference | undefined {
  return cReference(t, {
    source: join(here, "c/vchan_diff.c"),
    headers: ["/usr/include/libxenvchan.h", "/usr/include/xen/io/libxenvchan.h"],
    libraries: ["/usr/lib/x86_64-linux-gnu/libxenvchan.a"],
    link: ["-Wl,-Bstatic", "-lxenvchan", "-Wl,-Bdynamic"],
  });
}

/** vchan_diff.c in VCHAN_SHM mode: send() one command, get its lines up to "end". */
class CPeer {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: string[] = [];
  #wake: (() => void) | undefined;

  constructor(bin: string, file: string) {
    this.#child = spawn(bin, [], { env: { ...process.env, VCHAN_SHM: file } });
    createInterface({ input: this.#child.stdout }).on("line", (l) => {
      this.#lines.push(l);
      this.#wake?.();
    });
  }

  async send(line: string): Promise<string[]> {
    this.#child.stdin.write(`${line}\n`);
    for (;;) {
      const end = this.#lines.indexOf("end");
      if (end >= 0) return this.#lines.splice(0, end + 1).slice(0, end);
      await new Promise<void>((ok) => {
        this.#wake = ok;
      });
    }
  }

  close(): void {
    this.#child.stdin.end();
  }
}

/**
 * Runs `script` with the `cSide` end ("S" server, "C" client) in C and the other in TypeScript,
 * on one file of pages; returns what was printed, in C's format.
 */
async function mixed(c: CReference, script: readonly string[], cSide: "S" | "C"): Promise<string[]> {
  const file = join(tempDir("xenlab-vchan-mixed-"), "pages");
  const fd = openSync(file, "w+");
  const peer = new CPeer(c.bin, file);
  const ts = new SimRun(fd);
  const out: string[] = [];
  try {
    for (const line of script) {
      const who = line === "server" || line.startsWith("server ") ? "S" : line === "client" ? "C" : line[0];
      if (who === cSide) {
        const lines = await peer.send(line);
        // What the C server published, for our client to read.
        for (const l of lines) {
          const m = /^xs write (\S+) (\S+) tx=1$/.exec(l);
          if (m !== null) ts.world.kv.set(m[1]!, m[2]!);
        }
        out.push(...lines);
      } else {
        out.push(...(await ts.step(line)));
        // What our server published, for the C client to read (the C program prints nothing new).
        if (line.startsWith("server ")) for (const [k, v] of ts.world.kv) await peer.send(`xsset ${k} ${v}`);
        out.push(...(await peer.send("dump")));
      }
    }
  } finally {
    peer.close();
    closeSync(fd);
  }
  return out;
}

const SCRIPTS: Record<string, string[]> = {
  "the spec's trace": [
    "server 0 0",
    "client",
    "C space",
    "S space",
    "C write 5 1",
    "S read 16",
    "S read 16",
    "C close",
    "S close",
  ],
  "multi-page rings, wrapping": [
    "server 8192 16384",
    "client",
    "C write 9000 1",
    "S read 5000",
    "C write 3000 2",
    "S recv 7000",
    "S send 16384 3",
    "C read 10000",
    "S write 9000 4",
    "C recv 15384",
    "C ready",
    "S space",
    "S close",
    "C read 100",
    "C close",
  ],
  "a client that closes first": [
    "server 0 65536",
    "client",
    "S write 70000 5",
    "C read 4000",
    "C close",
    "S write 1 1",
    "S open",
    "S close",
  ],
};

describe("vchan mixed pairs with Debian's libxenvchan", () => {
  for (const [name, script] of Object.entries(SCRIPTS)) {
    for (const cSide of ["S", "C"] as const) {
      it(`${name}: a ${cSide === "S" ? "C server and our client" : "C client and our server"}`, async (t) => {
        const c = reference(t);
        if (c === undefined) return;
        assert.deepEqual(await mixed(c, script, cSide), c.run(script));
      });
    }
  }
});
