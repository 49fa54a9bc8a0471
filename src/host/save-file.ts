/**
 * `xenlab save` and `xenlab restore` as the control socket runs them: save.ts's steps around the
 * file itself. The file is written beside its final name and renamed into place, so a failed
 * save leaves no half file; any failure after the suspend resumes the guest where it was
 * (libxl's "Failed to save domain, resuming domain"). A file that does not decode builds nothing.
 */
import { constants } from "node:fs";
import { access, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { errorMessage } from "../lib/errors.ts";
import type { Host } from "./host.ts";
import {
  imageGuest,
  requireGuest,
  restoreGuest,
  resumeGuest,
  suspendGuest,
  waitDevicesConnected,
} from "./save.ts";
import { decodeSaveFile, encodeSaveFile } from "./save-format.ts";

export interface SaveResult {
  readonly domid: number;
  readonly name: string;
  readonly file: string;
  readonly bytes: number;
  /** ms from the guest's suspend to the file written (and, with -c, the guest going on). */
  readonly pausedMs: number;
}

/** `xl save [-c] DOMAIN FILE`. */
export async function saveToFile(
  host: Host,
  domid: number,
  file: string,
  opts: { readonly checkpoint?: boolean; readonly cwd?: string } = {},
): Promise<SaveResult> {
  const { name } = requireGuest(host, domid, "save");
  const path = resolve(opts.cwd ?? process.cwd(), file);
  // As xl opens the file first: a place it cannot be written leaves the guest untouched.
  try {
    await access(dirname(path), constants.W_OK);
  } catch (e) {
    throw new Error(
      `Cannot save ${name} (${domid}): cannot write in ${dirname(path)}: ${(e as NodeJS.ErrnoException).code}`,
    );
  }
  await suspendGuest(host, domid);
  const t0 = performance.now();
  let bytes: Uint8Array;
  try {
    bytes = encodeSaveFile(await imageGuest(host, domid));
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, bytes);
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  } catch (e) {
    await resumeGuest(host, domid);
    throw new Error(`Cannot save ${name} (${domid}) to ${path}: ${errorMessage(e)}; the guest goes on`);
  }
  if (opts.checkpoint === true) await resumeGuest(host, domid);
  const pausedMs = performance.now() - t0;
  if (opts.checkpoint !== true) await host.destroyDomain(domid);
  return { domid, name, file: path, bytes: bytes.byteLength, pausedMs };
}

/** `xl restore FILE`: resolves once the guest runs and its devices are Connected again. */
export async function restoreFromFile(
  host: Host,
  file: string,
  opts: { readonly cwd?: string; readonly connectTimeoutMs?: number } = {},
): Promise<{ domid: number; name: string }> {
  const path = resolve(opts.cwd ?? process.cwd(), file);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new Error(
      `Cannot restore: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
    );
  }
  const saved = decodeSaveFile(bytes);
  const info = await restoreGuest(host, saved);
  try {
    await waitDevicesConnected(host, info.domid, opts.connectTimeoutMs);
  } catch (e) {
    // It runs: say so, then what is wrong with its devices.
    throw new Error(`Restored ${info.name} as domain ${info.domid}, but: ${errorMessage(e)}`);
  }
  return { domid: info.domid, name: info.name };
}
