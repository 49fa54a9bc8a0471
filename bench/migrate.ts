/**
 * `npx tsx bench/migrate.ts [options]`: the migration-downtime benchmark from source
 * (src/bench/migrate.ts; see --help). `npm run build` and `xenlab bench migrate` give the figures
 * that count: from source each restored domain's worker also loads tsx.
 */
import { run } from "../src/bench/migrate.ts";

process.exitCode = await run(process.argv.slice(2));
