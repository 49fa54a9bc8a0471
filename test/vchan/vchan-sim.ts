/**
 * The vchan differential test's TypeScript side: src/drivers/vchan's server and client over a
 * recording fake of the grant, event-channel and XenStore calls, printing what
 * test/vchan/c/vchan_diff.c prints for Debian's libxenvchan over its stubs, line for line.
 */
import { readSync, writeSync } from "node:fs";
import {
  type UnmapNotify,
  Vchan,
  type VchanPlatform,
  type VchanXsEntry,
} from "../../src/drivers/vchan/vchan.ts";
import { decodeHeader, ringPages, VCHAN } from "../../src/drivers/vchan/vchan-abi.ts";

export const SIM_PATH = "/local/domain/0/data/vchan/1/5";
const SRV_PORT = 7;
const CLI_PORT = 9;

/**
 * Both domains' shared state: the pages by ref, the store, the output. With `fd`, the pages are
 * also those of a file, ref r at offset (r - 8) × 4096, as vchan_diff.c's under VCHAN_SHM: a
 * page not yet known is read from it, load() rereads them all and store() writes them back, so
 * the C program can be one of the ends in lockstep.
 */
class World {
  readonly out: string[] = [];
  readonly pages = new Map<number, Uint8Array>();
  readonly kv = new Map<string, string>();
  readonly fd: number | undefined;
  nextRef = 8;
  ctrlRef = 8;

  constructor(fd?: number) {
    this.fd = fd;
  }

  page(ref: number): Uint8Array | undefined {
    const known = this.pages.get(ref);
    if (known !== undefined || this.fd === undefined) return known;
    const page = new Uint8Array(new SharedArrayBuffer(4096));
    readSync(this.fd, page, 0, 4096, (ref - 8) * 4096);
    this.pages.set(ref, page);
    return page;
  }

  load(): void {
    if (this.fd === undefined) return;
    for (const [ref, page] of this.pages) readSync(this.fd, page, 0, 4096, (ref - 8) * 4096);
  }

  store(): void {
    if (this.fd === undefined) return;
    for (const [ref, page] of this.pages) writeSync(this.fd, page, 0, 4096, (ref - 8) * 4096);
  }
}

class SimPlatform implements VchanPlatform {
  readonly domid: number;
  readonly #w: World;
  readonly #shareNotify = new Map<number, UnmapNotify>();
  readonly #maps = new Map<number, { page: Uint8Array; notify: UnmapNotify | undefined }>();
  #nextHandle = 0;

  constructor(w: World, domid: number) {
    this.#w = w;
    this.domid = domid;
  }

  allocUnbound(peer: number): number {
    this.#w.out.push(`alloc-unbound ${peer}`);
    return SRV_PORT;
  }
  bindInterdomain(peer: number, port: number): number {
    this.#w.out.push(`bind-interdomain ${peer} ${port}`);
    if (port !== SRV_PORT) throw new Error("bind-interdomain: no such port");
    return CLI_PORT;
  }
  closePort(): void {}
  notify(port: number): void {
    this.#w.out.push(`notify ${port}`);
  }
  onEvent(): void {}
  sharePage(_peer: number, notify?: UnmapNotify): { ref: number; page: Uint8Array } {
    const ref = this.#w.nextRef++;
    const page = new Uint8Array(new SharedArrayBuffer(4096));
    this.#w.pages.set(ref, page);
    this.#w.out.push(`share ${ref}`);
    if (notify !== undefined) {
      this.#w.out.push(`notify-on-unshare ${ref} byte ${notify.offset} port ${notify.port}`);
      this.#shareNotify.set(ref, notify);
    }
    return { ref, page };
  }
  // libxenvchan munmaps its ring pages itself: the stubs see only the control page's unshare.
  unsharePage(ref: number): void {
    const n = this.#shareNotify.get(ref);
    if (n === undefined) return;
    this.#w.out.push("unshare 1");
    this.#fire(this.#w.pages.get(ref)!, n);
    this.#shareNotify.delete(ref);
  }
  mapPage(_peer: number, ref: number, writable: boolean, notify?: UnmapNotify) {
    const page = this.#w.page(ref);
    if (page === undefined) throw new Error(`map: no ref ${ref}`);
    const rw = writable ? "rw" : "ro";
    this.#w.out.push(
      notify ? `map ${ref} ${rw} notify byte ${notify.offset} port ${notify.port}` : `map ${ref} ${rw}`,
    );
    const handle = this.#nextHandle++;
    this.#maps.set(handle, { page, notify });
    return { handle, page };
  }
  unmapPage(handle: number): void {
    const m = this.#maps.get(handle)!;
    this.#maps.delete(handle);
    if (m.notify === undefined) return;
    this.#w.out.push("unmap 1");
    this.#fire(m.page, m.notify);
  }
  async xsRead(path: string): Promise<string | undefined> {
    this.#w.out.push(`xs read ${path}`);
    return path === "domid" ? "0" : this.#w.kv.get(path);
  }
  async xsWrite(entries: readonly VchanXsEntry[]): Promise<void> {
    for (const e of entries) {
      this.#w.kv.set(e.path, e.value);
      this.#w.out.push(`xs write ${e.path} ${e.value} tx=1`, `xs perms ${e.path} ${e.perms.join(" ")}`);
    }
  }
  async xsRm(path: string): Promise<void> {
    this.#w.out.push(`xs rm ${path}`);
  }

  #fire(page: Uint8Array, n: UnmapNotify): void {
    page[n.offset] = 0;
    this.#w.out.push(`notify ${n.port}`);
  }
}

function fnv(bytes: Uint8Array): string {
  let h = 2166136261;
  for (const b of bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h.toString(16).padStart(8, "0");
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/**
 * The TypeScript side of a vchan_diff.c script, one line at a time: the server (domain 0) and the
 * client (domain 1) over one World. step() returns the lines C would print for the line, dump()
 * the page's lines.
 */
export class SimRun {
  readonly world: World;
  readonly #srvP: SimPlatform;
  readonly #cliP: SimPlatform;
  #srv: Vchan | undefined;
  #cli: Vchan | undefined;

  /** `fd`: the file vchan_diff.c shares its pages through (VCHAN_SHM), for a mixed pair. */
  constructor(fd?: number) {
    this.world = new World(fd);
    this.#srvP = new SimPlatform(this.world, 0);
    this.#cliP = new SimPlatform(this.world, 1);
  }

  async step(line: string): Promise<string[]> {
    const w = this.world;
    const f = line.split(" ");
    const a = Number(f[2] ?? 0);
    const b = Number(f[3] ?? 0);
    const start = w.out.length;
    w.load();
    if (f[0] === "server") {
      try {
        this.#srv = await Vchan.server(this.#srvP, {
          peer: 1,
          path: SIM_PATH,
          leftMin: Number(f[1]),
          rightMin: Number(f[2]),
        });
        w.out.push("ret 0");
      } catch {
        w.out.push("ret -1");
      }
    } else if (f[0] === "client") {
      try {
        this.#cli = await Vchan.client(this.#cliP, { peer: 0, path: SIM_PATH });
        w.out.push("ret 0");
      } catch {
        w.out.push("ret -1");
      }
    } else if (f[0] === "poke") {
      w.page(w.ctrlRef)!.set(Buffer.from(f[2]!, "hex"), Number(f[1]));
      w.out.push("ret 0");
    } else {
      const v = f[0] === "S" ? this.#srv! : this.#cli!;
      switch (f[1]) {
        case "read":
        case "recv": {
          const buf = new Uint8Array(Number(f[2]));
          const r = f[1] === "read" ? v.end.read(buf) : v.end.recv(buf);
          w.out.push(`ret ${r}`, `data ${r > 0 ? hex(buf.subarray(0, r)) : ""}`);
          break;
        }
        case "write":
        case "send": {
          const data = new Uint8Array(a);
          for (let i = 0; i < a; i++) data[i] = (b * 7 + i) & 0xff;
          w.out.push(`ret ${f[1] === "write" ? v.end.write(data) : v.end.send(data)}`);
          break;
        }
        case "ready":
          w.out.push(`ret ${v.end.dataReady()}`);
          break;
        case "space":
          w.out.push(`ret ${v.end.bufferSpace()}`);
          break;
        case "open":
          w.out.push(`ret ${v.isOpen()}`);
          break;
        case "close":
          await v.close();
          w.out.push("ret 0");
          break;
        default:
          throw new Error(`bad op ${line}`);
      }
    }
    w.store();
    return w.out.slice(start);
  }

  /** The "hdr" and "rings" lines of the control page as it is now (none before it exists). */
  dump(): string[] {
    const w = this.world;
    const c = w.pages.get(w.ctrlRef);
    if (c === undefined) return [];
    const h = decodeHeader(c);
    const lp = ringPages(h.leftOrder);
    const rp = ringPages(h.rightOrder);
    const ring = (order: number, firstGrant: number): Uint8Array => {
      if (order === 10) return c.subarray(1024, 2048);
      if (order === 11) return c.subarray(2048, 4096);
      const ref = new DataView(c.buffer).getUint32(VCHAN.grants + 4 * firstGrant, true);
      const bytes = new Uint8Array(2 ** order);
      for (let i = 0; i < ringPages(order); i++) bytes.set(w.page(ref + i)!, i * 4096);
      return bytes;
    };
    return [
      `hdr ${hex(c.subarray(0, 24 + 4 * (lp + rp)))}`,
      `rings ${fnv(ring(h.leftOrder, 0))} ${fnv(ring(h.rightOrder, lp))}`,
    ];
  }
}

/** Runs a vchan_diff.c script on the TypeScript vchan; returns the lines C would print. */
export async function runSim(script: readonly string[]): Promise<string[]> {
  const run = new SimRun();
  const out: string[] = [];
  for (const line of script) out.push(...(await run.step(line)), ...run.dump());
  return out;
}
