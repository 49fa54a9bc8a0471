// The live page's static files (src/web/*.html, *.css) beside its compiled scripts in dist/web
// (npm run build; docs/live-view.md).
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

const from = new URL("../src/web/", import.meta.url).pathname;
const to = new URL("../dist/web/", import.meta.url).pathname;
mkdirSync(to, { recursive: true });
for (const f of readdirSync(from)) if (/\.(html|css)$/.test(f)) copyFileSync(join(from, f), join(to, f));
