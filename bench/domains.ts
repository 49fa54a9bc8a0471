/**
 * `npx tsx bench/domains.ts [options]`: the domain-cost benchmark from source (src/bench/domains.ts;
 * see --help). From source each domain also loads tsx: `npm run build` and `xenlab bench domains`
 * give the figures that count.
 */
import { run } from "../src/bench/domains.ts";

process.exitCode = await run(process.argv.slice(2));
