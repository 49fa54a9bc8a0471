/**
 * Module loader hooks for `insmod` (node:module `register`; they run on Node's loader thread,
 * registered by module-loader.ts). A driver module may live anywhere, with or without a
 * package.json beside it, and `rmmod` then `insmod` after an edit must run the new code.
 *
 * Each load is a generation: insmod imports the module as `file:///…/bob_front.ts?insmod=N`.
 * A module imported by a file of generation N is of generation N too, unless it is shared:
 * packages (anything under a `node_modules` directory) and xenlab itself (its `src/` and
 * `dist/`). So one insmod reads the driver and its own helpers
 * afresh, while XenBus, the kernel and pino stay one instance per domain, as a Linux module
 * links against the running kernel instead of bringing its own:
 *
 *   bob_front.ts?insmod=3  imports  ./ring-proto.ts   →  ring-proto.ts?insmod=3   (reloaded)
 *                          imports  xenlab/driver     →  <xenlab>/src/api/driver.ts (shared)
 *                          imports  pino              →  node_modules/pino/…        (shared)
 *
 * Node never unloads an ES module, so each load's instances stay in memory: a few per insmod,
 * the price of running the edited code without restarting the domain.
 *
 * A driver's own `.ts` and `.js` files are ES modules unless their package.json says
 * `"type": "commonjs"`: Node would take a file without a package.json (or with one without
 * `type`) for CommonJS, and it caches each package.json it read, so adding one later would not
 * help a running host. This hook reads the package.json of each driver file on every load.
 *
 * A driver imports xenlab's public API by the package's name (`xenlab/driver`); that import is
 * resolved through xenlab's own package.json `exports` to the running xenlab's modules (from
 * `dist/….js` to `src/….ts` when xenlab runs from source), wherever the driver lives and
 * whether or not a copy of xenlab is installed beside it.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The query parameter naming a load's generation (module-loader.ts adds it). */
export const GENERATION_PARAM = "insmod";

interface ResolveContext {
  readonly parentURL?: string | undefined;
  readonly conditions?: readonly string[];
}

interface ResolveResult {
  url: string;
  format?: string | null | undefined;
  shortCircuit?: boolean;
}

type NextResolve = (specifier: string, context?: ResolveContext) => Promise<ResolveResult>;

/** xenlab's package root, from where this file is (`src/lib/` or `dist/lib/`). */
const PACKAGE_ROOT = new URL("../../", import.meta.url);
/** xenlab's own modules: shared, from source or built (examples may import `src/` from dist's kernel). */
const OWN_TREES = [new URL("src/", PACKAGE_ROOT).href, new URL("dist/", PACKAGE_ROOT).href];
const FROM_SOURCE = import.meta.url.endsWith(".ts");

/** xenlab's package.json, for its name and `exports`. */
const OWN_PACKAGE = readOwnPackage();

export async function resolve(
  specifier: string,
  context: ResolveContext,
  next: NextResolve,
): Promise<ResolveResult> {
  // The module insmod names carries its generation; the modules it imports inherit it.
  const generation = generationOf(specifier) ?? generationOf(context.parentURL);
  if (generation === undefined) return next(specifier, context);
  const own = ownExport(specifier);
  if (own !== undefined) return { url: own, format: "module", shortCircuit: true };
  const r = await next(specifier, context);
  if (!r.url.startsWith("file:") || isShared(r.url)) return r;
  const url = new URL(r.url);
  if (!url.searchParams.has(GENERATION_PARAM)) url.searchParams.set(GENERATION_PARAM, generation);
  return { ...r, url: url.href, format: formatOf(url, r.format) };
}

/** The generation of a module URL, if it is a driver's file. */
function generationOf(url: string | undefined): string | undefined {
  if (url === undefined || !url.startsWith("file:")) return undefined;
  return new URL(url).searchParams.get(GENERATION_PARAM) ?? undefined;
}

/** A module of xenlab itself (its src/ or dist/), as its built-in drivers are. */
export function isOwnModule(url: string): boolean {
  return OWN_TREES.some((tree) => url.startsWith(tree));
}

function isShared(url: string): boolean {
  return isOwnModule(url) || /\/node_modules\//.test(url);
}

/** A driver file's format: ESM, except `.cjs`/`.cts` and a package saying `"type": "commonjs"`. */
function formatOf(url: URL, given: string | null | undefined): string | null | undefined {
  const ext = /\.[^./]*$/.exec(url.pathname)?.[0];
  if (ext === ".mjs" || ext === ".mts") return "module";
  if (ext !== ".js" && ext !== ".ts") return given;
  return packageType(fileURLToPath(url)) === "commonjs" ? "commonjs" : "module";
}

/** The `type` of the nearest package.json above `file`, read now (never cached). */
function packageType(file: string): string | undefined {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    let text: string | undefined;
    try {
      text = readFileSync(join(dir, "package.json"), "utf8");
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      try {
        const type = (JSON.parse(text) as { type?: unknown }).type;
        return typeof type === "string" ? type : undefined;
      } catch {
        return undefined;
      }
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/** `xenlab` or `xenlab/<path>` as the running xenlab's own module, through its `exports`. */
function ownExport(specifier: string): string | undefined {
  const pkg = OWN_PACKAGE;
  if (pkg === undefined) return undefined;
  if (specifier !== pkg.name && !specifier.startsWith(`${pkg.name}/`)) return undefined;
  const subpath = `.${specifier.slice(pkg.name.length)}`;
  const target = exportTarget(pkg.exports?.[subpath]);
  if (target === undefined) return undefined;
  const file = FROM_SOURCE ? target.replace(/^\.\/dist\//, "./src/").replace(/\.js$/, ".ts") : target;
  return new URL(file, PACKAGE_ROOT).href;
}

interface OwnPackage {
  readonly name: string;
  readonly exports?: Record<string, unknown>;
}

function readOwnPackage(): OwnPackage | undefined {
  try {
    return JSON.parse(readFileSync(new URL("package.json", PACKAGE_ROOT), "utf8")) as OwnPackage;
  } catch {
    return undefined;
  }
}

/** An `exports` entry's target for `import`: a string, or its `import`/`default` condition. */
function exportTarget(entry: unknown): string | undefined {
  if (typeof entry === "string") return entry;
  if (typeof entry !== "object" || entry === null) return undefined;
  const e = entry as Record<string, unknown>;
  return exportTarget(e.import) ?? exportTarget(e.default);
}
