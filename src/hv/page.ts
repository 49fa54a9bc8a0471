/**
 * A guest page's memory: a SharedArrayBuffer of XEN_PAGE_SIZE that starts on a host page boundary,
 * as a real guest frame does.
 *
 * A plain `new SharedArrayBuffer(4096)` comes from malloc, 16·k bytes past a page boundary, so each
 * guest page straddles two host pages and the host kernel copies it from a misaligned address: a
 * `pwritev` of one MiB from 256 such pages took 155 µs on these machines, from 256 page-aligned ones
 * 100 µs (docs/speed.md, 2026-12-04 evening). V8 reserves a growable SharedArrayBuffer's memory with
 * mmap, so it starts on a page; with its maximum set to its size it never grows, and a view made
 * with an explicit length is an ordinary fixed-length one.
 */
import { XEN_PAGE_SIZE } from "../xen/xen.ts";

export function newPage(): SharedArrayBuffer {
  return new SharedArrayBuffer(XEN_PAGE_SIZE, { maxByteLength: XEN_PAGE_SIZE });
}
