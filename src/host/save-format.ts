/**
 * The save file's codec (docs/save-format.md): bytes in, a typed record out, and back. Pure: the
 * caller reads and writes the file. Laid out as libxl's stream is (a header, then records of
 * `u32 type, u32 length`, each padded to 8 bytes, ended by END), little-endian, with a SHA-256 of
 * everything before it as a trailer, so a truncated or corrupted file is refused before anything
 * is built from it.
 */
import { createHash } from "node:crypto";
import type { DomainImage } from "../hv/hypervisor.ts";
import { SaveFileError } from "../lib/errors.ts";
import type { SavedModule } from "../xen/domain-boot.ts";
import { XEN_PAGE_SIZE } from "../xen/xen.ts";
import type { GuestConfig } from "./guest-config.ts";

/** 16 bytes: what `file(1)` would match. */
export const SAVE_MAGIC = "xenlab saved dom";
export const SAVE_VERSION = 1;
const HEADER = 32;
const TRAILER = 32;

export const SAVE_RECORD = {
  end: 0,
  domain: 1,
  pageData: 2,
  grantTable: 3,
  evtchn: 4,
  kernelModule: 5,
  kernelSubsystem: 6,
} as const;

/** A device the toolstack recreates at restore, as libxl adds a config's devices. */
export interface SavedDeviceConfig {
  readonly type: string;
  readonly devid: number;
  /** For a `vbd`: the disk as its backend directory described it. */
  readonly disk?: {
    readonly target: string;
    readonly vdev: string;
    readonly access: "rw" | "ro";
    readonly devtype: "disk" | "cdrom";
  };
}

/** One event channel of the domain at save time (for reading: a restored domain binds anew). */
export interface SavedPort {
  readonly port: number;
  readonly status: number;
  readonly vcpu: number;
  readonly dom?: number;
  readonly remotePort?: number;
  readonly pending: boolean;
  readonly masked: boolean;
}

/** The DOMAIN record: what the toolstack builds the domain again from. */
export interface SavedDomainConfig {
  readonly name: string;
  /** The domid it had (informative: restore takes a new one). */
  readonly domid: number;
  readonly maxPages: number;
  readonly vcpus: number;
  readonly targetKib?: number;
  /** The xl config it was created from, if any. */
  readonly config?: GuestConfig;
  readonly devices: readonly SavedDeviceConfig[];
}

export interface SaveFile {
  readonly domain: SavedDomainConfig;
  readonly image: DomainImage;
  readonly ports: readonly SavedPort[];
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

function pad8(n: number): number {
  return (n + 7) & ~7;
}

/** Encodes a save file. */
export function encodeSaveFile(f: SaveFile): Uint8Array {
  const records: [number, Uint8Array][] = [];
  records.push([SAVE_RECORD.domain, enc.encode(JSON.stringify(f.domain))]);
  const gfns = [...f.image.pages.keys()].sort((a, b) => a - b);
  const pd = new Uint8Array(8 + pad8(4 * gfns.length) + XEN_PAGE_SIZE * gfns.length);
  const pv = new DataView(pd.buffer);
  pv.setUint32(0, gfns.length, true);
  const data = 8 + pad8(4 * gfns.length);
  gfns.forEach((gfn, i) => {
    pv.setUint32(8 + 4 * i, gfn, true);
    pd.set(f.image.pages.get(gfn)!, data + i * XEN_PAGE_SIZE);
  });
  records.push([SAVE_RECORD.pageData, pd]);
  const gt = new Uint8Array(8 + XEN_PAGE_SIZE * f.image.grantFrames.length);
  new DataView(gt.buffer).setUint32(0, f.image.grantFrames.length, true);
  f.image.grantFrames.forEach((fr, i) => {
    gt.set(fr, 8 + i * XEN_PAGE_SIZE);
  });
  records.push([SAVE_RECORD.grantTable, gt]);
  records.push([SAVE_RECORD.evtchn, enc.encode(JSON.stringify(f.ports))]);
  for (const m of f.image.kernel.modules) {
    const meta = enc.encode(
      JSON.stringify({ name: m.name, url: m.url, args: m.args, state: m.state !== null }),
    );
    records.push([SAVE_RECORD.kernelModule, lengthPrefixed(meta, m.state ?? new Uint8Array(0))]);
  }
  for (const [name, bytes] of Object.entries(f.image.kernel.subsystems)) {
    records.push([SAVE_RECORD.kernelSubsystem, lengthPrefixed(enc.encode(name), bytes)]);
  }
  records.push([SAVE_RECORD.end, new Uint8Array(0)]);
  const bodyLen = records.reduce((n, [, d]) => n + 8 + pad8(d.byteLength), 0);
  const out = new Uint8Array(HEADER + bodyLen + TRAILER);
  const v = new DataView(out.buffer);
  out.set(enc.encode(SAVE_MAGIC), 0);
  v.setUint32(16, SAVE_VERSION, true);
  v.setUint32(20, 0, true); // flags: none defined
  v.setBigUint64(24, BigInt(bodyLen), true);
  let off = HEADER;
  for (const [type, d] of records) {
    v.setUint32(off, type, true);
    v.setUint32(off + 4, d.byteLength, true);
    out.set(d, off + 8);
    off += 8 + pad8(d.byteLength);
  }
  out.set(createHash("sha256").update(out.subarray(0, off)).digest(), off);
  return out;
}

function lengthPrefixed(head: Uint8Array, rest: Uint8Array): Uint8Array {
  const b = new Uint8Array(4 + head.byteLength + rest.byteLength);
  new DataView(b.buffer).setUint32(0, head.byteLength, true);
  b.set(head, 4);
  b.set(rest, 4 + head.byteLength);
  return b;
}

/** Decodes a save file; a SaveFileError says what is wrong with it. */
export function decodeSaveFile(bytes: Uint8Array): SaveFile {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < HEADER + TRAILER || !enc.encode(SAVE_MAGIC).every((b, i) => bytes[i] === b))
    throw new SaveFileError("Cannot restore: not a xenlab save file (no 'xenlab saved dom' header)");
  const version = v.getUint32(16, true);
  if (version !== SAVE_VERSION)
    throw new SaveFileError(
      `Cannot restore: save file version ${version}, this xenlab reads ${SAVE_VERSION}`,
    );
  const flags = v.getUint32(20, true);
  if (flags !== 0) throw new SaveFileError(`Cannot restore: unknown mandatory flags 0x${flags.toString(16)}`);
  const bodyLen = Number(v.getBigUint64(24, true));
  const want = HEADER + bodyLen + TRAILER;
  if (bytes.byteLength !== want)
    throw new SaveFileError(
      `Cannot restore: the save file is ${bytes.byteLength < want ? "truncated" : "too long"} (${bytes.byteLength} bytes, its header says ${want})`,
    );
  const sum = createHash("sha256")
    .update(bytes.subarray(0, HEADER + bodyLen))
    .digest();
  if (!sum.equals(bytes.subarray(HEADER + bodyLen)))
    throw new SaveFileError("Cannot restore: the save file is corrupted (its SHA-256 does not match)");
  let domain: SavedDomainConfig | undefined;
  const pages = new Map<number, Uint8Array>();
  const grantFrames: Uint8Array[] = [];
  let ports: SavedPort[] = [];
  const modules: SavedModule[] = [];
  const subsystems: Record<string, Uint8Array> = {};
  let off = HEADER;
  const end = HEADER + bodyLen;
  for (;;) {
    if (off + 8 > end) throw new SaveFileError("Cannot restore: the save file has no END record");
    const type = v.getUint32(off, true);
    const len = v.getUint32(off + 4, true);
    if (off + 8 + len > end) throw new SaveFileError(`Cannot restore: record ${type} runs past the end`);
    const d = bytes.subarray(off + 8, off + 8 + len);
    const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
    off += 8 + pad8(len);
    if (type === SAVE_RECORD.end) break;
    switch (type) {
      case SAVE_RECORD.domain:
        domain = JSON.parse(dec.decode(d)) as SavedDomainConfig;
        break;
      case SAVE_RECORD.pageData: {
        const n = dv.getUint32(0, true);
        const data = 8 + pad8(4 * n);
        if (data + n * XEN_PAGE_SIZE !== len) throw new SaveFileError("Cannot restore: bad PAGE_DATA record");
        for (let i = 0; i < n; i++)
          pages.set(
            dv.getUint32(8 + 4 * i, true),
            d.slice(data + i * XEN_PAGE_SIZE, data + (i + 1) * XEN_PAGE_SIZE),
          );
        break;
      }
      case SAVE_RECORD.grantTable: {
        const n = dv.getUint32(0, true);
        if (8 + n * XEN_PAGE_SIZE !== len) throw new SaveFileError("Cannot restore: bad GRANT_TABLE record");
        for (let i = 0; i < n; i++)
          grantFrames.push(d.slice(8 + i * XEN_PAGE_SIZE, 8 + (i + 1) * XEN_PAGE_SIZE));
        break;
      }
      case SAVE_RECORD.evtchn:
        ports = JSON.parse(dec.decode(d)) as SavedPort[];
        break;
      case SAVE_RECORD.kernelModule: {
        const [head, rest] = splitPrefixed(d, dv);
        const m = JSON.parse(dec.decode(head)) as {
          name: string;
          url: string;
          args: string[];
          state: boolean;
        };
        modules.push({ name: m.name, url: m.url, args: m.args, state: m.state ? rest.slice() : null });
        break;
      }
      case SAVE_RECORD.kernelSubsystem: {
        const [head, rest] = splitPrefixed(d, dv);
        subsystems[dec.decode(head)] = rest.slice();
        break;
      }
      default:
        throw new SaveFileError(`Cannot restore: unknown record type ${type}`);
    }
  }
  if (domain === undefined) throw new SaveFileError("Cannot restore: the save file has no DOMAIN record");
  return { domain, image: { pages, grantFrames, kernel: { modules, subsystems } }, ports };
}

function splitPrefixed(d: Uint8Array, dv: DataView): [Uint8Array, Uint8Array] {
  const n = dv.getUint32(0, true);
  if (4 + n > d.byteLength) throw new SaveFileError("Cannot restore: bad kernel record");
  return [d.subarray(4, 4 + n), d.subarray(4 + n)];
}
