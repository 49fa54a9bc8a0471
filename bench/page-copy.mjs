/**
 * Where a guest page's memory starts, and what the host kernel's copies of it cost (docs/platform.md
 * §2): `writevSync`/`readvSync` of one MiB to a cached 64 MiB file from and into
 *
 *   malloc pages   256 × `new SharedArrayBuffer(4096)` (malloc: 16·k bytes past a host page)
 *   aligned pages  256 × `new SharedArrayBuffer(4096, { maxByteLength: 4096 })` (mmap: on a page),
 *                  what a domain's pages are (src/hv/page.ts)
 *   aligned MiB    one page-aligned MiB (WebAssembly memory), the bench blk baseline's buffer
 *   malloc MiB     one `new Uint8Array(1 MiB)` (16 bytes past a page)
 *
 * and the cost of indexing views of a growable page made with and without a length. Not a
 * benchmark of xenlab: the fact behind one of its choices, run as `node bench/page-copy.mjs`.
 */
import { closeSync, openSync, readvSync, rmSync, writeFileSync, writevSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MiB = 1 << 20;
const SIZE = 64 * MiB;
const file = join(tmpdir(), `page-copy-${process.pid}.img`);
writeFileSync(file, Buffer.alloc(SIZE, 1));
process.on("exit", () => rmSync(file, { force: true })); // also after Ctrl-C, below
process.on("SIGINT", () => process.exit(130));
const fd = openSync(file, "r+");

const pages = (make) => Array.from({ length: 256 }, () => new Uint8Array(make(), 0, 4096).fill(0x5a));
const kinds = {
  "malloc pages": () => pages(() => new SharedArrayBuffer(4096)),
  "aligned pages": () => pages(() => new SharedArrayBuffer(4096, { maxByteLength: 4096 })),
  "aligned MiB": () => [
    new Uint8Array(new WebAssembly.Memory({ initial: 16, maximum: 16 }).buffer).fill(0x5a),
  ],
  "malloc MiB": () => [new Uint8Array(MiB).fill(0x5a)],
};

/** µs per MiB over `n` calls after 50 untimed. */
function perMiB(op, bufs, n = 400) {
  let off = 0;
  const call = () => {
    op === "write" ? writevSync(fd, bufs, off) : readvSync(fd, bufs, off);
    off = (off + MiB) % SIZE;
  };
  for (let i = 0; i < 50; i++) call();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) call();
  return Number(process.hrtime.bigint() - t0) / 1e3 / n;
}

const rows = new Map();
for (let round = 0; round < 3; round++) {
  for (const [name, make] of Object.entries(kinds)) {
    const bufs = make();
    for (const op of ["write", "read"]) {
      const key = `${name}, ${op}`;
      rows.set(key, [...(rows.get(key) ?? []), perMiB(op, bufs).toFixed(0)]);
    }
  }
}
closeSync(fd);
console.log("µs per MiB, three rounds (writevSync / readvSync, cached file)");
for (const [k, v] of rows) console.log(`  ${k.padEnd(22)} ${v.join("  ")}`);

function loop(u8) {
  let s = 0;
  for (let r = 0; r < 2000; r++) for (let i = 0; i < 4096; i++) s += u8[i] = (i + r) & 255;
  return s;
}
for (const [name, view] of [
  ["view with a length", (p) => new Uint8Array(p, 0, 4096)],
  ["view without a length", (p) => new Uint8Array(p)],
]) {
  const u8 = view(new SharedArrayBuffer(4096, { maxByteLength: 4096 }));
  loop(u8);
  const t0 = performance.now();
  loop(u8);
  console.log(`growable page, ${name}: ${(performance.now() - t0).toFixed(1)} ms for 2000 passes over 4 KiB`);
}
