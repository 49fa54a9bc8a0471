/**
 * The import structure of xenlab, checked by dependency-cruiser (`npm run check:layers`, run by
 * `npm run lint` and .ci/run). docs/architecture.md draws the layers and says why each sits where it does.
 *
 * The rules:
 *   no-circular       no module reaches itself through its imports, anywhere in the repository.
 *   layer:<name>      a folder of src/ imports only the folders below it: a lower layer never imports
 *                     a higher one, and the two pairs of peers (hv and kernel; bench and fuzz) never
 *                     import each other. Type-only imports count: a type from a higher layer drags
 *                     its module's design down as surely as a value does.
 *   layer:unknown     a new folder of src/ gets its place in LAYERS before it is used.
 *   resolvable        every import resolves, so that no import escapes the rules above.
 *   src-stands-alone  src/ never imports test/, bench/, scripts/ or examples/.
 *
 * Why dependency-cruiser and not Biome's noImportCycles and noRestrictedImports: dependency-cruiser
 * resolves each import to a file and matches rules on resolved paths, so one rule per folder covers
 * `../hv/x.ts` and `../../hv/x.ts` alike, and a violation prints the rule's name and both files
 * (`error layer:xen: src/xen/a.ts → src/hv/b.ts`). Biome's noRestrictedImports matches the import's
 * text, so each folder would need a pattern per depth of `../`. TypeScript 7 has no JavaScript API,
 * which dependency-cruiser's default TypeScript parser needs, so it parses with swc (@swc/core).
 */

/** The layers of src/, lowest first. Folders in one inner array are peers: neither imports the other. */
const LAYERS = [
  ["lib", "web"],
  ["xen"],
  ["ring"],
  ["xenstore"],
  ["hv", "kernel"],
  ["xenbus"],
  ["drivers"],
  ["api"],
  ["console"],
  ["host"],
  ["bench", "fuzz"],
  ["cli"],
];

const ALL = LAYERS.flat();
const folders = (names) => `^src/(${names.join("|")})/`;

/** One rule per folder: it may import its own folder and the layers below, nothing else in src/. */
const layerRules = LAYERS.flatMap((peers, rank) =>
  peers.map((name) => {
    const below = LAYERS.slice(0, rank).flat();
    const forbidden = ALL.filter((other) => other !== name && !below.includes(other));
    return {
      name: `layer:${name}`,
      comment:
        `src/${name}/ may import only ` +
        (below.length > 0 ? below.map((b) => `src/${b}/`).join(", ") : "node: modules and npm packages") +
        ` (docs/architecture.md).`,
      severity: "error",
      from: { path: `^src/${name}/` },
      to: { path: folders(forbidden) },
    };
  }),
);

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment:
        "Import cycles are not allowed: break the cycle by moving the shared part to the lower module.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: "layer:unknown",
      comment: `A folder of src/ that is not a known layer: add it to LAYERS in .dependency-cruiser.cjs and to docs/architecture.md.`,
      severity: "error",
      from: { path: "^src/", pathNot: folders(ALL) },
      to: {},
    },
    {
      name: "resolvable",
      comment:
        "An import the resolver cannot find to a file is one the other rules cannot see: make it resolvable (an npm package in package.json, a path that exists).",
      severity: "error",
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: "src-stands-alone",
      comment: "src/ never imports the tests, benches' entry points, scripts or examples.",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^(test|bench|scripts|examples)/" },
    },
  ],
  options: {
    parser: "swc",
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    enhancedResolveOptions: {
      extensions: [".ts", ".js", ".mjs", ".cjs"],
      conditionNames: ["import", "require", "node", "default"],
      exportsFields: ["exports"],
    },
  },
};
