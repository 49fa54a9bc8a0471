/**
 * `npx tsx bench/guest-migrate.ts [options]`: the migration-downtime benchmark from source
 * (src/bench/guest-migrate.ts; see --help). `npm run build` and `xenlab bench guest-migrate` give the figures
 * that count: from source each restored domain's worker also loads tsx.
 */
import { run } from "../src/bench/guest-migrate.ts";

process.exitCode = await run(process.argv.slice(2));
