/**
 * `npx tsx bench/ring.ts [options]`: the ring benchmark from source, the same code as
 * `xenlab bench ring` (src/bench/ring.ts; see --help).
 */
import { run } from "../src/bench/ring.ts";

process.exitCode = await run(process.argv.slice(2));
