/**
 * Loading a driver module for `insmod`: `.ts`, `.mts`, `.js` or `.mjs`, wherever it lives, each
 * load its own (module-hooks.ts says how), and a failure as one line naming the file and the
 * cause.
 *
 * TypeScript loads through tsx. A worker started from source has it already (spawn.ts); from
 * dist/ it is registered here, before module-hooks.ts, so that the hooks run first (Node runs
 * the last registered hooks first) and tsx sees the format they chose.
 */
import { register } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { errorMessage } from "./errors.ts";
import { GENERATION_PARAM, isOwnModule } from "./module-hooks.ts";
import { siblingModule } from "./spawn.ts";

/** The hooks of this thread (a module instance is one per thread), registered on first use. */
let registered: Promise<void> | undefined;

async function registerHooks(): Promise<void> {
  if (!import.meta.url.endsWith(".ts")) {
    const { register: registerTsx } = (await import("tsx/esm/api")) as { register: () => unknown };
    registerTsx();
  }
  register(siblingModule(import.meta.url, "module-hooks"));
}

/**
 * Imports the module at `url` (or a file's path) as load number `generation` of this thread:
 * its own files are read afresh, what it shares with the kernel is not. A failure throws an Error whose message
 * is `Cannot load <path>: <cause>`, on one line.
 */
export async function loadModule(url: string, generation: number): Promise<unknown> {
  // A path is taken as the file it names, as `import()` of an absolute path would.
  const u = URL.canParse(url) ? new URL(url) : pathToFileURL(url);
  // xenlab's own drivers (blkfront, blkback) need none of the hooks: their imports are all
  // shared anyway, the query alone makes the load its own, and their format is known (a .js of
  // dist/, or a .ts of src/ in a worker that runs from source and has tsx). Registering the
  // hooks (and tsx) costs a worker a loader thread and about half a second of CPU: the largest
  // step of a guest's boot in `bench domains --storm`.
  const own = isOwnModule(u.href) && (u.pathname.endsWith(".js") || import.meta.url.endsWith(".ts"));
  if (!own) {
    registered ??= registerHooks();
    await registered;
  }
  u.searchParams.set(GENERATION_PARAM, String(generation));
  try {
    return await import(u.href);
  } catch (e) {
    throw new Error(`Cannot load ${displayPath(url)}: ${loadCause(e)}`);
  }
}

/** A module URL as its user wrote it: a file's path, without the generation. */
export function displayPath(url: string): string {
  if (!url.startsWith("file:")) return url;
  const u = new URL(url);
  u.searchParams.delete(GENERATION_PARAM);
  u.search = "";
  return fileURLToPath(u);
}

/**
 * The cause of a failed import, on one line: a TypeScript syntax error with the file, line and
 * column where esbuild stopped; a JavaScript one as V8 words it (Node 20 does not say where an
 * ES module's syntax error is, so the line names only the module insmod was given); a missing
 * module as Node names it; anything else, its message's first line. Paths lose their
 * generation query.
 */
export function loadCause(e: unknown): string {
  const message = errorMessage(e).replace(new RegExp(`\\?${GENERATION_PARAM}=\\d+`, "g"), "");
  // esbuild (tsx): "Transform failed with 1 error:\n/path/x.ts:3:9: ERROR: Expected ";" …"
  const esbuild = /^Transform failed[^\n]*\n(\S+?:\d+:\d+): ERROR: ([^\n]*)/.exec(message);
  if (esbuild !== null) return `${esbuild[1]}: ${esbuild[2]}`;
  const cause = firstLine(message);
  return e instanceof SyntaxError ? `SyntaxError: ${cause}` : cause;
}

function firstLine(s: string): string {
  return s.split("\n", 1)[0]!.trim();
}
