/**
 * The save file's codec (src/host/save-format.ts, docs/save-format.md): a file round-trips record
 * for record; every shortened, lengthened or altered copy is refused with the reason, before
 * anything is built from it.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { decodeSaveFile, encodeSaveFile, type SaveFile } from "../../src/host/save-format.ts";
import { SaveFileError } from "../../src/lib/errors.ts";

function sample(): SaveFile {
  const page = (b: number) => new Uint8Array(4096).fill(b);
  return {
    domain: {
      name: "g",
      domid: 7,
      maxPages: 64,
      vcpus: 1,
      targetKib: 256,
      devices: [
        {
          type: "vbd",
          devid: 51712,
          disk: { target: "/d.img", vdev: "xvda", access: "rw", devtype: "disk" },
        },
        { type: "alice_dev", devid: 0 },
      ],
    },
    image: {
      pages: new Map([
        [3, page(3)],
        [0, page(1)],
      ]),
      grantFrames: [page(9), page(0)],
      kernel: {
        modules: [
          { name: "a", url: "file:///a.ts", args: ["x=1"], state: new Uint8Array([1, 2, 3]) },
          { name: "b", url: "file:///b.ts", args: [], state: null },
        ],
        subsystems: { xenbus: new TextEncoder().encode("[]") },
      },
    },
    ports: [{ port: 1, status: 2, vcpu: 0, dom: 0, pending: false, masked: false }],
  };
}

/** Rewrites the trailer so an edited body still passes the checksum (to reach the record checks). */
function resum(b: Uint8Array): Uint8Array {
  const out = b.slice();
  out.set(
    createHash("sha256")
      .update(out.subarray(0, out.length - 32))
      .digest(),
    out.length - 32,
  );
  return out;
}

describe("encodeSaveFile() / decodeSaveFile()", () => {
  it("round-trips every record", () => {
    const f = sample();
    const back = decodeSaveFile(encodeSaveFile(f));
    assert.deepEqual(back.domain, f.domain);
    assert.deepEqual([...back.image.pages.keys()].sort(), [0, 3]);
    assert.deepEqual(back.image.pages.get(3), f.image.pages.get(3));
    assert.deepEqual(back.image.grantFrames, f.image.grantFrames);
    assert.deepEqual(back.image.kernel, f.image.kernel);
    assert.deepEqual(back.ports, f.ports);
  });

  it("refuses every shortened copy, and a longer one", () => {
    const bytes = encodeSaveFile(sample());
    for (let n = 0; n < bytes.length; n += n < 64 ? 1 : 997) {
      assert.throws(() => decodeSaveFile(bytes.subarray(0, n)), SaveFileError, `${n} bytes`);
    }
    assert.throws(() => decodeSaveFile(bytes.subarray(0, bytes.length - 1)), /truncated/);
    const longer = new Uint8Array(bytes.length + 8);
    longer.set(bytes);
    assert.throws(() => decodeSaveFile(longer), /too long/);
  });

  it("refuses a copy with any byte changed", () => {
    const bytes = encodeSaveFile(sample());
    for (let i = 0; i < bytes.length; i += 509) {
      const bad = bytes.slice();
      bad[i] = (bad[i] ?? 0) ^ 1;
      assert.throws(() => decodeSaveFile(bad), SaveFileError, `byte ${i}`);
    }
  });

  it("refuses another version, mandatory flags it does not know, and an unknown record", () => {
    const bytes = encodeSaveFile(sample());
    const v = (f: (d: DataView) => void) => {
      const b = bytes.slice();
      f(new DataView(b.buffer));
      return resum(b);
    };
    assert.throws(() => decodeSaveFile(v((d) => d.setUint32(16, 2, true))), /version 2, this xenlab reads 1/);
    assert.throws(() => decodeSaveFile(v((d) => d.setUint32(20, 4, true))), /unknown mandatory flags 0x4/);
    assert.throws(() => decodeSaveFile(v((d) => d.setUint32(32, 99, true))), /unknown record type 99/);
  });
});
