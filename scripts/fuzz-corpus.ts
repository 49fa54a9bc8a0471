/**
 * Writes the fuzzer's corpus to test/fuzz/corpus/ (one raw packet per `.bin` file): the
 * hand-written requests of src/fuzz/corpus.ts plus the requests of the reference daemon's probe
 * transcript, so fuzz runs depend only on committed files. Run it again after changing either:
 *
 *   node --import tsx scripts/fuzz-corpus.ts [--probe ../shared/refxs/probe-cxenstored.txt]
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildCorpus, defaultCorpusDir } from "../src/fuzz/corpus.ts";

const argv = process.argv.slice(2);
const at = argv.indexOf("--probe");
const probe =
  at >= 0 ? argv[at + 1]! : new URL("../../shared/refxs/probe-cxenstored.txt", import.meta.url).pathname;
const transcript = existsSync(probe) ? readFileSync(probe, "latin1") : "";
if (transcript === "")
  process.stderr.write(`fuzz-corpus: no probe transcript at ${probe}; hand-written part only\n`);
const dir = defaultCorpusDir();
mkdirSync(dir, { recursive: true });
for (const f of readdirSync(dir)) if (f.endsWith(".bin")) rmSync(join(dir, f));
const corpus = buildCorpus(transcript);
for (const e of corpus) writeFileSync(join(dir, `${e.name}.bin`), e.bytes);
process.stdout.write(`fuzz-corpus: wrote ${corpus.length} packets to ${dir}\n`);
