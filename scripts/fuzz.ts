/**
 * Entry point of `npm run fuzz` (see src/fuzz/main.ts for the options): runs from source
 * through tsx, so no build is needed.
 */
import { run } from "../src/fuzz/main.ts";

run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`fuzz: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
