/**
 * `npx tsx bench/xenstore.ts [options]`: the XenStore benchmark from source, the same code
 * as `xenlab bench xenstore` (src/bench/xenstore.ts; see --help).
 */
import { run } from "../src/bench/xenstore.ts";

process.exitCode = await run(process.argv.slice(2));
