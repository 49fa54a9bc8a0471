/**
 * `xenlab blk-cp SRC DST`: copies a local file into a guest's disk, or a region of the disk out
 * to a local file, through the guest's own blkfront: the data streams over the control socket
 * (src/host/blk-stream.ts), and the host keeps several 1 MiB requests in flight to the guest's
 * xen_blkfront module (host calls):
 *
 *   xenlab blk-cp FILE DOMAIN:VDEV[:SECTOR]               FILE into the disk from SECTOR (default 0)
 *   xenlab blk-cp DOMAIN:VDEV[:SECTOR[+COUNT]] FILE       COUNT sectors from SECTOR (default: to the
 *                                                         end of the disk) out to FILE
 *
 * Sectors are 512 bytes, as blkif counts them. FILE `-` is stdin or stdout. An argument is a
 * disk when it reads DOMAIN:VDEV[...] and has no `/` (write `./a:b` for a local file named
 * `a:b`); exactly one side must be a disk. Copying in, a file whose size is not a multiple of
 * 512 ends with a read-modify-write of its last sector (the rest of that sector keeps what the
 * disk held). As with `cp`, the data is in the image file (dom0's page cache) when the command
 * ends; `--sync` also ends the copy with a flush (the guest's cache flush, blkback's fdatasync), as
 * `dd conv=fsync` would. `--bytes N` copies out N bytes (not whole sectors), e.g. a file's exact
 * size. Exit 0, or 1 with the reason on stderr in one line (a missing file, a directory, a disk
 * that is not there, a copy that does not fit: all checked before any byte is written where they
 * can be). On a terminal (stderr, and stdout unless it carries the data) a progress bar shows
 * the bytes copied; otherwise nothing is printed but errors.
 */
import { constants } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import type { Readable, Writable } from "node:stream";
import { type BlkStreamRequest, CHUNK, SECTOR } from "../host/blk-stream.ts";
import { type ControlReply, controlCall, controlPath } from "../host/control-client.ts";
import { socketPath } from "../xenstore/socket-path.ts";
import { commandArgs } from "./args.ts";
import { domainId, invalidDomain } from "./domain-id.ts";
import {
  CopyError,
  fileError,
  onStreamClose,
  openStream,
  receiveFrames,
  sendFrames,
} from "./frame-stream.ts";

const USAGE = `usage: xenlab blk-cp [--socket PATH] [--sync] FILE DOMAIN:VDEV[:SECTOR]
       xenlab blk-cp [--socket PATH] [--bytes N] DOMAIN:VDEV[:SECTOR[+COUNT]] FILE

Copies FILE into a guest's disk from SECTOR (default 0), or COUNT sectors from SECTOR (default:
to the end of the disk; --bytes N: exactly N bytes) out to FILE, through the guest's blkfront.
Sectors are 512 bytes; FILE - is stdin or stdout. Copying in, --sync ends with the guest's cache
flush (blkback's fdatasync), as dd conv=fsync; without it the data is in the image's page cache, as
after cp.
`;

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

export async function run(argv: string[]): Promise<number> {
  const args = commandArgs(
    "xenlab blk-cp",
    USAGE,
    argv,
    { socket: { type: "string" }, bytes: { type: "string" }, sync: { type: "boolean" } },
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
    if (domid === undefined) return fail(invalidDomain(ref.domain));
    const info = (await controlCall(ctl, {
      op: "blkfront",
      domid,
      cmd: "info",
      arg: { vdev: ref.vdev },
    })) as DiskInfo;
    if (ref.sector > info.sectors)
      return fail(`sector ${ref.sector} is past the end of ${ref.vdev} (${info.sectors} sectors)`);
    if (to !== null) await copyIn(ctl, domid, src, to, info, values.sync === true);
    else await copyOut(ctl, domid, from!, dst, info, bytesOpt);
    return 0;
  } catch (e) {
    return fail((e as Error).message);
  }
}

/** A bar on stderr while `total` bytes go, only on a terminal; update(n) adds n bytes. */
async function progress(
  total: number | undefined,
  stdoutIsData: boolean,
): Promise<{ add(n: number): void; stop(): void }> {
  const tty = process.stderr.isTTY === true && (stdoutIsData || process.stdout.isTTY === true);
  if (!tty || total === undefined || total === 0) return { add: () => {}, stop: () => {} };
  // Loaded only for a terminal: off one, the copy does not pay for it.
  const { default: cliProgress } = await import("cli-progress");
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: " {bar} {percentage}% | {done}/{size} MiB | {rate} MB/s",
      hideCursor: true,
      barsize: 30,
    },
    cliProgress.Presets.shades_classic,
  );
  const start = performance.now();
  const mib = (n: number): string => (n / (1 << 20)).toFixed(1);
  let done = 0;
  const payload = () => ({
    done: mib(done),
    size: mib(total),
    rate: (done / 1e6 / Math.max((performance.now() - start) / 1000, 1e-3)).toFixed(0),
  });
  bar.start(total, 0, payload());
  return {
    add(n) {
      done += n;
      bar.update(done, payload());
    },
    stop() {
      bar.stop();
    },
  };
}

async function openInput(file: string): Promise<{ input: Readable; size?: number; fh?: FileHandle }> {
  if (file === "-") return { input: process.stdin };
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDONLY);
  } catch (e) {
    throw fileError("cannot open", file, e);
  }
  const st = await fh.stat();
  if (st.isDirectory()) {
    await fh.close();
    throw new CopyError(`'${file}' is a directory: blk-cp copies a file`);
  }
  return {
    input: fh.createReadStream({ highWaterMark: CHUNK, autoClose: false }),
    ...(st.isFile() ? { size: st.size } : {}),
    fh,
  };
}

async function copyIn(
  ctl: string,
  domid: number,
  file: string,
  to: DiskRef,
  info: DiskInfo,
  sync: boolean,
): Promise<void> {
  if (info.readonly === true) throw new CopyError(`${to.vdev} is read-only`);
  const { input, size, fh } = await openInput(file);
  try {
    if (size !== undefined && to.sector + Math.ceil(size / SECTOR) > info.sectors)
      throw new CopyError(
        `${file} does not fit in ${to.vdev}: it has ${info.sectors} sectors, the copy needs sector ${to.sector + Math.ceil(size / SECTOR) - 1}`,
      );
    const bar = await progress(size, false);
    const req = { op: "blk-write", domid, vdev: to.vdev, sector: to.sector, sync } as const;
    try {
      // A regular file the host reads itself (the bytes skip the socket); anything else streams.
      if (size !== undefined) await writeByPath(ctl, { ...req, path: resolvePath(file) }, bar);
      else await sendFrames(ctl, req, input, file, bar);
    } finally {
      bar.stop();
    }
  } finally {
    await fh?.close();
  }
}

/** A write the host reads from the file itself: its progress lines, then its reply. */
function writeByPath(ctl: string, req: BlkStreamRequest, bar: { add(n: number): void }): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = openStream(ctl, req);
    let text = "";
    let done = 0;
    let reply: ControlReply | undefined;
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      text += d;
      for (let nl = text.indexOf("\n"); nl >= 0 && reply === undefined; nl = text.indexOf("\n")) {
        const line = JSON.parse(text.slice(0, nl)) as ControlReply | { progress: number };
        text = text.slice(nl + 1);
        if ("progress" in line) {
          bar.add(line.progress - done);
          done = line.progress;
        } else reply = line;
      }
    });
    onStreamClose(
      s,
      ctl,
      () => reply,
      (err) => (err === undefined ? resolve() : reject(err)),
    );
  });
}

async function openOutput(file: string): Promise<{ out: Writable; fh?: FileHandle }> {
  if (file === "-") return { out: process.stdout };
  let fh: FileHandle;
  try {
    fh = await open(file, "w");
  } catch (e) {
    throw fileError("cannot create", file, e);
  }
  return { out: fh.createWriteStream({ autoClose: false, highWaterMark: CHUNK }), fh };
}

async function copyOut(
  ctl: string,
  domid: number,
  from: DiskRef,
  file: string,
  info: DiskInfo,
  bytes: number | undefined,
): Promise<void> {
  const count = from.count ?? info.sectors - from.sector;
  if (from.sector + count > info.sectors)
    throw new CopyError(
      `sectors ${from.sector}+${count} run past the end of ${from.vdev} (${info.sectors} sectors)`,
    );
  const total = bytes === undefined ? count * SECTOR : Math.min(bytes, count * SECTOR);
  const { out, fh } = await openOutput(file);
  const bar = await progress(total, file === "-");
  try {
    await receiveFrames(
      ctl,
      { op: "blk-read", domid, vdev: from.vdev, sector: from.sector, count, bytes: total },
      out,
      file,
      bar,
    );
    if (out !== process.stdout)
      await new Promise<void>((resolve, reject) =>
        out.end((e?: Error | null) => (e ? reject(fileError("cannot write", file, e)) : resolve())),
      );
  } finally {
    bar.stop();
    await fh?.close();
  }
}
