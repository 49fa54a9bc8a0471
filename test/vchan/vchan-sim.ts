/**
 * The vchan differential test's TypeScript side: src/drivers/vchan's server and client over a
 * recording fake of the grant, event-channel and XenStore calls, printing what
 * test/vchan/c/vchan_diff.c prints for Debian's libxenvchan over its stubs, line for line.
 */
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

/** Both domains' shared state: the pages by ref, the notifies armed, the store, the output. */
class World {
  readonly out: string[] = [];
  readonly pages = new Map<number, Uint8Array>();
  readonly kv = new Map<string, string>();
  nextRef = 8;
  ctrlRef = -1;
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
      this.#w.ctrlRef = ref;
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
    const page = this.#w.pages.get(ref);
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

/** Runs a vchan_diff.c script on the TypeScript vchan; returns the lines C would print. */
export async function runSim(script: readonly string[]): Promise<string[]> {
  const w = new World();
  const srvP = new SimPlatform(w, 0);
  const cliP = new SimPlatform(w, 1);
  let srv: Vchan | undefined;
  let cli: Vchan | undefined;
  const ctrl = () => w.pages.get(w.ctrlRef);
  const ring = (order: number, firstGrant: number): Uint8Array => {
    const c = ctrl()!;
    if (order === 10) return c.subarray(1024, 2048);
    if (order === 11) return c.subarray(2048, 4096);
    const ref = new DataView(c.buffer).getUint32(VCHAN.grants + 4 * firstGrant, true);
    const bytes = new Uint8Array(2 ** order);
    for (let i = 0; i < ringPages(order); i++) bytes.set(w.pages.get(ref + i)!, i * 4096);
    return bytes;
  };
  for (const line of script) {
    const f = line.split(" ");
    const a = Number(f[2] ?? 0);
    const b = Number(f[3] ?? 0);
    if (f[0] === "server") {
      try {
        srv = await Vchan.server(srvP, {
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
        cli = await Vchan.client(cliP, { peer: 0, path: SIM_PATH });
        w.out.push("ret 0");
      } catch {
        w.out.push("ret -1");
      }
    } else if (f[0] === "poke") {
      ctrl()!.set(Buffer.from(f[2]!, "hex"), Number(f[1]));
      w.out.push("ret 0");
    } else {
      const v = f[0] === "S" ? srv! : cli!;
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
    const c = ctrl();
    if (c !== undefined) {
      const h = decodeHeader(c);
      const lp = ringPages(h.leftOrder);
      const rp = ringPages(h.rightOrder);
      w.out.push(`hdr ${hex(c.subarray(0, 24 + 4 * (lp + rp)))}`);
      w.out.push(`rings ${fnv(ring(h.leftOrder, 0))} ${fnv(ring(h.rightOrder, lp))}`);
    }
  }
  return w.out;
}
