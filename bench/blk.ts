/**
 * `npx tsx bench/blk.ts [options]`: the block-device benchmark from source, the same code as
 * `xenlab bench blk` (src/bench/blk.ts; see --help).
 */
import { run } from "../src/bench/blk.ts";

process.exitCode = await run(process.argv.slice(2));
