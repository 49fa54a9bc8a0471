/**
 * `npx tsx bench/vchan.ts [options]`: the vchan benchmark from source, the same code as
 * `xenlab bench vchan` (src/bench/vchan.ts; see --help).
 */
import { run } from "../src/bench/vchan.ts";

process.exitCode = await run(process.argv.slice(2));
