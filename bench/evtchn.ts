/**
 * `npx tsx bench/evtchn.ts [options]`: the event-channel benchmark from source, the same code as
 * `xenlab bench evtchn` (src/bench/evtchn.ts; see --help).
 */
import { run } from "../src/bench/evtchn.ts";

process.exitCode = await run(process.argv.slice(2));
