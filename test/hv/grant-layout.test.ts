/**
 * The grant table ABI against Xen's own header: test/hv/c/grant_layout.c is built with gcc against
 * /usr/include/xen/grant_table.h (Debian libxen-dev) and prints sizeof/offsetof of the structs and
 * the value of every constant; they must equal src/hv/grant-table.ts.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  GNTCOPY,
  GNTMAP,
  GNTST,
  GNTST_MESSAGES,
  GNTTAB_COPY,
  GNTTAB_MAP_GRANT_REF,
  GNTTAB_RESERVED,
  GNTTAB_UNMAP_GRANT_REF,
  GNTTABOP,
  GRANT_ENTRIES_PER_FRAME,
  GRANT_ENTRY_V1,
  GTF,
} from "../../src/xen/grant-table-abi.ts";
import { DOMID_SELF } from "../../src/xen/xen.ts";
import { hasCommand, requirePeer, tempDir } from "../helpers/peers.ts";

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), "c/grant_layout.c");
const HEADER = "/usr/include/xen/grant_table.h";

function probe(): Map<string, string> {
  const dir = tempDir("xenlab-grant-layout-");
  try {
    const bin = join(dir, "grant_layout");
    execFileSync("gcc", ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o", bin, SOURCE], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const out = execFileSync(bin, { encoding: "utf8" });
    const m = new Map<string, string>();
    for (const line of out.trim().split("\n")) {
      const sp = line.indexOf(" ");
      m.set(line.slice(0, sp), line.slice(sp + 1));
    }
    return m;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The C values with `prefix` stripped, as numbers (messages excluded). */
function numbers(c: Map<string, string>, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of c) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = Number(v);
  return out;
}

describe("grant table layout against Xen's grant_table.h (gcc, offsetof)", () => {
  it("matches every struct offset, size and constant of the installed libxen-dev", (t) => {
    const present = hasCommand("gcc") && existsSync(HEADER);
    if (!requirePeer(t, "gcc and Xen's grant_table.h (Debian libxen-dev)", present)) return;
    const c = probe();

    assert.deepEqual(numbers(c, "sizeof."), {
      grant_entry_v1: GRANT_ENTRY_V1.size,
      gnttab_map_grant_ref: GNTTAB_MAP_GRANT_REF.size,
      gnttab_unmap_grant_ref: GNTTAB_UNMAP_GRANT_REF.size,
      gnttab_copy: GNTTAB_COPY.size,
      gnttab_copy_ptr: GNTTAB_COPY.ptr.size,
    });
    assert.equal(GRANT_ENTRIES_PER_FRAME * GRANT_ENTRY_V1.size, 4096);

    assert.deepEqual(numbers(c, "offsetof.grant_entry_v1."), {
      flags: GRANT_ENTRY_V1.flags,
      domid: GRANT_ENTRY_V1.domid,
      frame: GRANT_ENTRY_V1.frame,
    });
    const M = GNTTAB_MAP_GRANT_REF;
    assert.deepEqual(numbers(c, "offsetof.gnttab_map_grant_ref."), {
      host_addr: M.hostAddr,
      flags: M.flags,
      ref: M.ref,
      dom: M.dom,
      status: M.status,
      handle: M.handle,
      dev_bus_addr: M.devBusAddr,
    });
    const U = GNTTAB_UNMAP_GRANT_REF;
    assert.deepEqual(numbers(c, "offsetof.gnttab_unmap_grant_ref."), {
      host_addr: U.hostAddr,
      dev_bus_addr: U.devBusAddr,
      handle: U.handle,
      status: U.status,
    });
    const C = GNTTAB_COPY;
    assert.deepEqual(numbers(c, "offsetof.gnttab_copy."), {
      source: C.source,
      dest: C.dest,
      len: C.len,
      flags: C.flags,
      status: C.status,
    });
    assert.deepEqual(numbers(c, "offsetof.gnttab_copy_ptr."), {
      u: C.ptr.u,
      domid: C.ptr.domid,
      offset: C.ptr.offset,
    });

    assert.deepEqual(numbers(c, "GNTTAB_"), {
      NR_RESERVED_ENTRIES: GNTTAB_RESERVED.entries,
      RESERVED_CONSOLE: GNTTAB_RESERVED.console,
      RESERVED_XENSTORE: GNTTAB_RESERVED.xenstore,
    });
    assert.deepEqual(numbers(c, "GTF_"), { ...GTF });
    assert.deepEqual(numbers(c, "GNTMAP_"), { ...GNTMAP });
    assert.deepEqual(numbers(c, "GNTCOPY_"), { ...GNTCOPY });
    assert.deepEqual(numbers(c, "GNTTABOP_"), { ...GNTTABOP });
    assert.deepEqual(numbers(c, "GNTST_"), { ...GNTST });
    assert.equal(Number(c.get("DOMID_SELF")), DOMID_SELF);
    const msgs = [...c].filter(([k]) => k.startsWith("msg.")).map(([, v]) => v);
    assert.deepEqual(msgs, [...GNTST_MESSAGES]);
  });
});
