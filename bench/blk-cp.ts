/**
 * `npx tsx bench/blk-cp.ts [options]`: blk-cp against cp from source, the same code as
 * `xenlab bench blk-cp` (src/bench/blk-cp.ts; see --help).
 */
import { run } from "../src/bench/blk-cp.ts";

process.exitCode = await run(process.argv.slice(2));
