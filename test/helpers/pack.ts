/**
 * xenlab as a package, for the tests of its public entry: `npm pack` in the repository (its
 * `prepack` builds dist/ with the .d.ts files), and a project elsewhere that installs the
 * tarball offline, from the npm cache `npm ci` filled (pino, tsx and what they need).
 *
 * Offline, `npm install TARBALL` alone cannot work: npm 11 resolves a new dependency from the
 * registry's full metadata of each package (arborist's #fetchManifest asks for it), and
 * `npm ci` cached only the tarballs its lockfile named. So the project starts with a lockfile
 * seeded from the repository's own (`seedLockfile`): its dependencies' versions, tarball URLs
 * and integrity, which is all npm then needs, and all of which is in the cache.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { REPO } from "./peers.ts";
import { runTool } from "./tools.ts";

/** The repository's own tsc, to typecheck a project that has none. */
export const TSC = join(REPO, "node_modules/.bin/tsc");

/** npm, offline: a test never reaches the registry. */
export async function npm(cwd: string, args: readonly string[]): Promise<string> {
  const r = await runTool("npm", args, {
    cwd,
    env: { npm_config_offline: "true", npm_config_audit: "false", npm_config_fund: "false" },
    timeoutMs: 180_000,
  });
  assert.equal(r.code, 0, `npm ${args.join(" ")} in ${cwd} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Packs the repository into `dest`; returns the tarball's path. */
export async function packXenlab(dest: string): Promise<string> {
  const out = await npm(REPO, ["pack", "--json", "--pack-destination", dest]);
  const [info] = JSON.parse(out.slice(out.indexOf("["))) as [{ filename: string }];
  return join(dest, info.filename);
}

interface LockEntry {
  readonly version?: string;
  readonly license?: string;
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
  readonly devDependencies?: Record<string, string>;
  readonly [key: string]: unknown;
}

interface Manifest {
  readonly name: string;
  readonly dependencies?: Record<string, string>;
  readonly devDependencies?: Record<string, string>;
}

/**
 * Writes `dir`/package-lock.json for the project of `dir`/package.json, which depends on
 * xenlab through a `file:` tarball spec and may depend on packages the repository uses (say
 * typescript): xenlab from the tarball, and every other package, with what it needs, as the
 * repository's lockfile pins it.
 */
export function seedLockfile(dir: string): void {
  const project = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Manifest;
  const repo = (
    JSON.parse(readFileSync(join(REPO, "package-lock.json"), "utf8")) as {
      packages: Record<string, LockEntry>;
    }
  ).packages;
  const own = repo[""]!;
  const spec = project.dependencies?.xenlab;
  if (spec === undefined || !spec.startsWith("file:"))
    throw new RangeError(`Cannot seed ${dir}: no file: xenlab`);
  const packages: Record<string, unknown> = {
    "": { name: project.name, dependencies: project.dependencies, devDependencies: project.devDependencies },
    "node_modules/xenlab": {
      version: own.version,
      resolved: spec,
      license: own.license,
      dependencies: own.dependencies,
      bin: own.bin,
      engines: own.engines,
    },
  };
  const dev = Object.keys(project.devDependencies ?? {});
  const wanted = [...Object.keys(own.dependencies ?? {}), ...dev];
  for (let name = wanted.shift(); name !== undefined; name = wanted.shift()) {
    const path = `node_modules/${name}`;
    const entry = repo[path];
    if (entry === undefined || path in packages) continue;
    const { dev: _, ...rest } = entry;
    packages[path] = dev.includes(name) ? { ...rest, dev: true } : rest;
    wanted.push(...Object.keys(entry.dependencies ?? {}), ...Object.keys(entry.optionalDependencies ?? {}));
  }
  writeFileSync(
    join(dir, "package-lock.json"),
    `${JSON.stringify({ name: project.name, lockfileVersion: 3, requires: true, packages }, null, 2)}\n`,
  );
}

/** A driver project in `dir`: an ES module package with xenlab installed from `tarball`. */
export async function driverProject(dir: string, tarball: string): Promise<void> {
  const dependencies = { xenlab: `file:${relative(dir, tarball)}` };
  const project = { name: basename(dir), private: true, type: "module", dependencies };
  writeFileSync(join(dir, "package.json"), `${JSON.stringify(project)}\n`);
  seedLockfile(dir);
  await npm(dir, ["install", "--offline", "--no-audit", "--no-fund", tarball]);
}
