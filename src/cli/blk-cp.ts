/**
 * `xenlab blk-cp SRC DST`: copies a local file into a guest's disk, or a region of the disk out
 * to a local file, through the guest's own blkfront (the host's `blkfront` control request, a
 * host call into the guest's xen_blkfront module), 1 MiB per request:
 *
 *   xenlab blk-cp FILE DOMAIN:VDEV[:SECTOR]               FILE into the disk from SECTOR (default 0)
 *   xenlab blk-cp DOMAIN:VDEV[:SECTOR[+COUNT]] FILE       COUNT sectors from SECTOR (default: to the
 *                                                         end of the disk) out to FILE
 *
 * Sectors are 512 bytes, as blkif counts them. FILE `-` is stdin or stdout. An argument is a
 * disk when it reads DOMAIN:VDEV[...] and has no `/` (write `./a:b` for a local file named
 * `a:b`); exactly one side must be a disk. Copying in, a file whose size is not a multiple of
 * 512 ends with a read-modify-write of its last sector (the rest of that sector keeps what the
 * disk held), and the copy ends with a flush (the guest's cache flush, blkback's fdatasync), as
 * `dd conv=fsync` would. `--bytes N` copies out N bytes (not whole sectors), e.g. a file's exact
 * size. Exit 0, or 1 with the reason on stderr.
 */
import { createReadStream, createWriteStream } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { controlCall, controlPath } from "../host/control.ts";
import { commandArgs } from "./args.ts";
import { domainId } from "./block.ts";
import { socketPath } from "./xenstored.ts";

const USAGE = `usage: xenlab blk-cp [--socket PATH] FILE DOMAIN:VDEV[:SECTOR]
       xenlab blk-cp [--socket PATH] [--bytes N] DOMAIN:VDEV[:SECTOR[+COUNT]] FILE

Copies FILE into a guest's disk from SECTOR (default 0), or COUNT sectors from SECTOR (default:
to the end of the disk; --bytes N: exactly N bytes) out to FILE, through the guest's blkfront.
Sectors are 512 bytes; FILE - is stdin or stdout.
`;

const SECTOR = 512;
const CHUNK = 1 << 20;

export interface DiskRef {
  readonly domain: string;
  readonly vdev: string;
  readonly sector: number;
  readonly count?: number;
}

/** DOMAIN:VDEV[:SECTOR[+COUNT]], or null for a local path. */
export function parseDiskRef(s: string): DiskRef | null {
  if (s.includes("/")) return null;
  const m = /^([^:]+):([a-z0-9]+)(?::(\d+)(?:\+(\d+))?)?$/.exec(s);
  if (m === null) return null;
  return {
    domain: m[1]!,
    vdev: m[2]!,
    sector: m[3] === undefined ? 0 : Number(m[3]),
    ...(m[4] === undefined ? {} : { count: Number(m[4]) }),
  };
}

/** What blkfront's `info` tells of a disk (the fields blk-cp needs). */
interface DiskInfo {
  sectors: number;
  readonly?: boolean;
}

/** Chunks of exactly `size` bytes (the last one shorter) from a stream. */
async function* chunks(input: Readable, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let have = 0;
  for await (const d of input as AsyncIterable<Buffer>) {
    pending.push(d);
    have += d.length;
    while (have >= size) {
      const all = Buffer.concat(pending);
      yield all.subarray(0, size);
      pending = [all.subarray(size)];
      have -= size;
    }
  }
  if (have > 0) yield Buffer.concat(pending);
}

function write(out: Writable, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(data, (e) => (e ? reject(e) : resolve()));
  });
}

export async function run(argv: string[]): Promise<number> {
  const args = commandArgs(
    "xenlab blk-cp",
    USAGE,
    argv,
    { socket: { type: "string" }, bytes: { type: "string" } },
    true,
  );
  if (typeof args === "number") return args;
  const { values, positionals } = args;
  const fail = (msg: string, code = 1): number => {
    process.stderr.write(`xenlab blk-cp: ${msg}\n${code === 2 ? USAGE : ""}`);
    return code;
  };
  if (positionals.length !== 2) return fail("needs a source and a destination", 2);
  const [src, dst] = positionals as [string, string];
  const from = parseDiskRef(src);
  const to = parseDiskRef(dst);
  if ((from === null) === (to === null))
    return fail("exactly one of SRC and DST must be DOMAIN:VDEV[:SECTOR]", 2);
  const bytesOpt = values.bytes === undefined ? undefined : Number(values.bytes);
  if (bytesOpt !== undefined && !(Number.isInteger(bytesOpt) && bytesOpt >= 0))
    return fail("--bytes needs a whole number of bytes", 2);
  if (to !== null && (to.count !== undefined || bytesOpt !== undefined))
    return fail("+COUNT and --bytes are for copying out of a disk", 2);
  const ref = (from ?? to)!;
  const ctl = controlPath(socketPath(values.socket as string | undefined));
  try {
    const domid = await domainId(ctl, ref.domain);
    if (domid === undefined) return fail(`${ref.domain} is an invalid domain identifier`);
    const call = (cmd: string, arg: Record<string, unknown>): Promise<unknown> =>
      controlCall(ctl, { op: "blkfront", domid, cmd, arg: { vdev: ref.vdev, ...arg } });
    const info = (await call("info", {})) as DiskInfo;
    if (ref.sector > info.sectors)
      return fail(`sector ${ref.sector} is past the end of ${ref.vdev} (${info.sectors} sectors)`);
    if (to !== null) await copyIn(src, to, info, call);
    else await copyOut(from!, dst, info, bytesOpt, call);
    return 0;
  } catch (e) {
    return fail((e as Error).message);
  }
}

type Call = (cmd: string, arg: Record<string, unknown>) => Promise<unknown>;

async function copyIn(file: string, to: DiskRef, info: DiskInfo, call: Call): Promise<void> {
  if (info.readonly === true) throw new Error(`${to.vdev} is read-only`);
  const input = file === "-" ? process.stdin : createReadStream(file, { highWaterMark: CHUNK });
  let sector = to.sector;
  for await (const chunk of chunks(input, CHUNK)) {
    const whole = Math.floor(chunk.length / SECTOR) * SECTOR;
    const need = Math.ceil(chunk.length / SECTOR);
    if (sector + need > info.sectors)
      throw new Error(
        `${file} does not fit in ${to.vdev}: it has ${info.sectors} sectors, the copy needs sector ${sector + need - 1}`,
      );
    if (whole > 0) {
      await call("write", { sector, data: chunk.subarray(0, whole).toString("base64") });
      sector += whole / SECTOR;
    }
    if (whole < chunk.length) {
      // The file's last, partial sector: keep the rest of what the disk held there.
      const old = Buffer.from(String(await call("read", { sector, count: 1 })), "base64");
      chunk.subarray(whole).copy(old);
      await call("write", { sector, data: old.toString("base64") });
      sector += 1;
    }
  }
  await call("flush", {});
}

async function copyOut(
  from: DiskRef,
  file: string,
  info: DiskInfo,
  bytes: number | undefined,
  call: Call,
): Promise<void> {
  const count = from.count ?? info.sectors - from.sector;
  if (from.sector + count > info.sectors)
    throw new Error(
      `sectors ${from.sector}+${count} run past the end of ${from.vdev} (${info.sectors} sectors)`,
    );
  let left = bytes === undefined ? count * SECTOR : Math.min(bytes, count * SECTOR);
  const out: Writable = file === "-" ? process.stdout : createWriteStream(file);
  let sector = from.sector;
  try {
    while (left > 0) {
      const n = Math.min(CHUNK / SECTOR, Math.ceil(left / SECTOR));
      const data = Buffer.from(String(await call("read", { sector, count: n })), "base64");
      const keep = data.subarray(0, Math.min(left, data.length));
      await write(out, keep);
      left -= keep.length;
      sector += n;
    }
  } finally {
    if (out !== process.stdout)
      await new Promise<void>((resolve, reject) =>
        out.end((e?: Error | null) => (e ? reject(e) : resolve())),
      );
  }
}
