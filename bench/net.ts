/**
 * `npx tsx bench/net.ts [options]`: a guest's network against a Node client on passt, from source,
 * the same code as `xenlab bench net` (src/bench/net.ts; see --help).
 */
import { run } from "../src/bench/net.ts";

process.exitCode = await run(process.argv.slice(2));
