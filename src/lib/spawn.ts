/**
 * Starting a worker from a module URL, from source or from dist/. Node 20 workers do not
 * inherit tsx's loader, so a `.ts` entry (development and tests) first registers tsx in the
 * worker; a `.js` entry (the built package) starts as is.
 */
import { type TransferListItem, Worker } from "node:worker_threads";

export function spawnWorker(entry: URL, workerData: unknown, transferList: TransferListItem[] = []): Worker {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, { workerData, transferList });
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(boot, { eval: true, workerData, transferList });
}

/** The URL of a sibling module, `.ts` from source or `.js` from dist/. */
export function siblingModule(base: string, name: string): URL {
  const ext = base.endsWith(".ts") ? ".ts" : ".js";
  return new URL(`./${name}${ext}`, base);
}
