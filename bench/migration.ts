/**
 * `npx tsx bench/migration.ts [options]`: the migration stream benchmark from source, the same
 * code as `xenlab bench migration` (src/bench/migration.ts; see --help).
 */
import { run } from "../src/bench/migration.ts";

process.exitCode = await run(process.argv.slice(2));
