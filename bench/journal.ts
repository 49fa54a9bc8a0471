/**
 * `npx tsx bench/journal.ts [options]`: the journal benchmark from source, the same code as
 * `xenlab bench journal` (src/bench/journal.ts; see --help).
 */
import { run } from "../src/bench/journal.ts";

process.exitCode = await run(process.argv.slice(2));
