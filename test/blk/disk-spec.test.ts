/**
 * xl's disk-spec syntax: every case of Xen 4.17's tools/xl/check-xl-disk-parse (the man page's
 * examples, with the libxl_device_disk each gives), the errors xl prints, and what xenlab's
 * backend refuses to serve.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DiskSpecError,
  diskSpecOf,
  type ParsedDisk,
  parseDiskSpec,
  parseDiskSpecLenient,
} from "../../src/host/disk-spec.ts";

/** The fields check-xl-disk-parse's JSON shows, in our names. */
function shown(d: ParsedDisk): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (d.target !== undefined) o.target = d.target;
  o.vdev = d.vdev;
  if (d.backendType !== undefined) o.backend = d.backendType;
  o.format = d.format;
  if (d.script !== undefined) o.script = d.script;
  if (d.removable) o.removable = true;
  if (d.readwrite) o.readwrite = true;
  if (d.isCdrom) o.isCdrom = true;
  if (d.discard !== undefined) o.discard = d.discard;
  if (d.trusted !== undefined) o.trusted = d.trusted;
  return o;
}

function errors(specs: string | string[]): string[] {
  try {
    parseDiskSpec(specs);
  } catch (e) {
    assert.ok(e instanceof DiskSpecError, String(e));
    return [...e.errors];
  }
  assert.fail(`${JSON.stringify(specs)} parsed`);
}

const cases: [string, (string | string[])[], Record<string, unknown>][] = [
  [
    "a read-write disk, positional, keyed and deprecated",
    [
      "/dev/vg/guest-volume,,hda",
      "/dev/vg/guest-volume,raw,hda,rw",
      "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
      ["format=raw", "vdev=hda", "access=rw", "target=/dev/vg/guest-volume"],
      "raw:/dev/vg/guest-volume,hda,w",
    ],
    { target: "/dev/vg/guest-volume", vdev: "hda", format: "raw", readwrite: true },
  ],
  [
    "a cdrom image",
    [
      "/root/image.iso,,hdc,cdrom",
      "/root/image.iso,,hdc,,cdrom",
      "/root/image.iso,raw,hdc,devtype=cdrom",
      "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
      ["format=raw", "vdev=hdc", "access=ro", "devtype=cdrom", "target=/root/image.iso"],
      "raw:/root/image.iso,hdc:cdrom,ro",
    ],
    { target: "/root/image.iso", vdev: "hdc", format: "raw", removable: true, isCdrom: true },
  ],
  [
    "a backend type",
    ["backendtype=phy,vdev=xvdb,access=w,target=/dev/vg/guest-volume"],
    { target: "/dev/vg/guest-volume", vdev: "xvdb", backend: "phy", format: "raw", readwrite: true },
  ],
  [
    "an empty cdrom drive with an empty target",
    [
      "devtype=cdrom,,,hdc",
      ",,hdc:cdrom,r",
      ",hdc:cdrom,r",
      "vdev=hdc,access=r,devtype=cdrom,target=",
      ",empty,hdc:cdrom,r",
    ],
    { target: "", vdev: "hdc", format: "empty", removable: true, isCdrom: true },
  ],
  [
    "an empty cdrom drive without a target",
    ["vdev=hdc,access=r,devtype=cdrom,format=empty", "vdev=hdc,access=r,devtype=cdrom"],
    { vdev: "hdc", format: "empty", removable: true, isCdrom: true },
  ],
  [
    "a block script by prefix and by key",
    [
      "iscsi:iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost,xvda,w",
      "vdev=xvda,access=w,script=block-iscsi,target=iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost",
    ],
    {
      target: "iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost",
      vdev: "xvda",
      format: "raw",
      script: "block-iscsi",
      readwrite: true,
    },
  ],
  [
    "a drbd prefix",
    ["drbd:app01,hda,w"],
    { target: "app01", vdev: "hda", format: "raw", script: "block-drbd", readwrite: true },
  ],
  [
    "discard",
    [["discard", "vdev=hda", "target=/some/disk/image.raw"]],
    { target: "/some/disk/image.raw", vdev: "hda", format: "raw", readwrite: true, discard: true },
  ],
  [
    "a cdrom without discard",
    [["cdrom", "no-discard", "vdev=hda", "target=/some/disk/image.iso"]],
    {
      target: "/some/disk/image.iso",
      vdev: "hda",
      format: "raw",
      removable: true,
      isCdrom: true,
      discard: false,
    },
  ],
  [
    "trusted",
    [["trusted", "vdev=hda", "target=/some/disk/image.raw"]],
    { target: "/some/disk/image.raw", vdev: "hda", format: "raw", readwrite: true, trusted: true },
  ],
  [
    "untrusted",
    [["untrusted", "vdev=hda", "target=/some/disk/image.raw"]],
    { target: "/some/disk/image.raw", vdev: "hda", format: "raw", readwrite: true, trusted: false },
  ],
];

describe("parseDiskSpec()", () => {
  for (const [name, specs, expected] of cases) {
    it(`parses ${name} as xl does`, () => {
      for (const s of specs) assert.deepEqual(shown(parseDiskSpec(s)), expected, JSON.stringify(s));
    });
  }

  it("refuses a target-first spec as xl does: target= comes last, it takes the rest", () => {
    assert.deepEqual(errors("target=disk.img,vdev=xvda,access=rw"), [
      "command line: config parsing error in disk specification: no vdev specified in `target=disk.img,vdev=xvda,access=rw'",
    ]);
    assert.equal(parseDiskSpec("vdev=xvda,access=rw,target=disk.img").target, "disk.img");
  });

  it("block-attach's reading (a deliberate difference) takes a target-first spec with target= moved last", () => {
    const d = parseDiskSpecLenient("target=disk.img,vdev=xvda,access=rw");
    assert.deepEqual([d.target, d.vdev, d.readwrite], ["disk.img", "xvda", true]);
    const ro = parseDiskSpecLenient(["format=raw", "target=/x y,z.img,vdev=xvdb,access=ro"]);
    assert.deepEqual([ro.target, ro.vdev, ro.readwrite], ["/x y,z.img", "xvdb", false]);
    // What xl accepts is read as xl reads it; what is refused for another reason stays refused.
    assert.equal(parseDiskSpecLenient("vdev=xvda,target=a,vdev=b").target, "a,vdev=b");
    assert.throws(() => parseDiskSpecLenient("target=disk.img"), /no vdev specified/);
    assert.throws(
      () => parseDiskSpecLenient("target=d.img,vdev=xvda,format=qcow3"),
      /unknown value for format/,
    );
  });

  it("lets target= take the rest of the string, commas and spaces included", () => {
    const d = parseDiskSpec("vdev=xvda, access=ro, target=/a b,c:d ");
    assert.equal(d.target, "/a b,c:d ");
    assert.equal(d.readwrite, false);
    assert.equal(parseDiskSpec("vdev=xvda,target=/x,").target, "/x");
  });

  it("takes r, ro, w, rw and an empty access", () => {
    assert.equal(parseDiskSpec("/x,,xvda,r").readwrite, false);
    assert.equal(parseDiskSpec("/x,,xvda,ro").readwrite, false);
    assert.equal(parseDiskSpec("/x,,xvda,w").readwrite, true);
    assert.equal(parseDiskSpec("/x,,xvda,").readwrite, true);
    assert.equal(parseDiskSpec("/x,,xvda,access=").readwrite, true);
  });

  it("reports what xl reports, with xl's words", () => {
    const near = (msg: string, n: string, spec: string) =>
      `command line: config parsing error in disk specification: ${msg}: near \`${n}' in \`${spec}'`;
    assert.deepEqual(errors("foo"), [
      "command line: config parsing error in disk specification: no vdev specified in `foo'",
    ]);
    assert.deepEqual(errors("vdev=xvda"), [
      "command line: config parsing error in disk specification: no target specified (and device not removable) in `vdev=xvda'",
    ]);
    assert.deepEqual(errors("format=qcow3,vdev=xvda,target=/x"), [
      near("unknown value for format", "qcow3", "format=qcow3,vdev=xvda,target=/x"),
    ]);
    assert.deepEqual(errors("/x,,xvda,rx"), [near("unknown value for access", "rx", "/x,,xvda,rx")]);
    assert.deepEqual(errors("/x,,xvda,rw,extra"), [
      near("too many positional parameters", "extra", "/x,,xvda,rw,extra"),
    ]);
    assert.deepEqual(errors("devtype=floppy,vdev=xvda,target=/x"), [
      near("unknown value for type", "devtype=floppy,", "devtype=floppy,vdev=xvda,target=/x"),
    ]);
    assert.deepEqual(errors("backendtype=nbd,vdev=xvda,target=/x"), [
      near("unknown value for backendtype", "nbd", "backendtype=nbd,vdev=xvda,target=/x"),
    ]);
    assert.deepEqual(errors("vdev=xvda,vdev=xvdb,target=/x"), [
      near("vdev respecified", "xvdb", "vdev=xvda,vdev=xvdb,target=/x"),
    ]);
    assert.deepEqual(errors("/x,raw,xvda,format=qcow2"), [
      near("format respecified", "qcow2", "/x,raw,xvda,format=qcow2"),
    ]);
    // The unknown-parameter rule takes a single character of the value, as xl's does.
    assert.deepEqual(errors("mode=rw,vdev=xvda,target=/x"), [
      near("unknown parameter", "mode=r", "mode=rw,vdev=xvda,target=/x"),
    ]);
    assert.deepEqual(errors("qcow3:/x,xvda"), [
      near("unknown deprecated disk prefix", "qcow3:", "qcow3:/x,xvda"),
    ]);
    assert.deepEqual(errors("/x,,hda:floppy"), [near("unknown deprecated type", "floppy", "/x,,hda:floppy")]);
    assert.deepEqual(errors("vdev=xvda,=x"), [near("bad disk syntax", "=x", "vdev=xvda,=x")]);
  });

  it("reports several errors of one spec, and stops at the first spec that has any", () => {
    assert.equal(errors("format=a,access=b,vdev=xvda,target=/x").length, 2);
    const e = errors(["format=a", "vdev=xvda", "access=b"]);
    assert.equal(e.length, 1);
    assert.match(e[0]!, /unknown value for format: near `a' in `format=a'$/);
  });

  it("keeps the scanner's state across the specs of one disk", () => {
    const d = parseDiskSpec(["/x", "raw", "xvdb", "ro"]);
    assert.deepEqual([d.target, d.format, d.vdev, d.readwrite], ["/x", "raw", "xvdb", false]);
  });
});

describe("diskSpecOf()", () => {
  const of = (spec: string) => diskSpecOf(parseDiskSpec(spec), "/home/u");
  const refused = (spec: string): string => {
    try {
      of(spec);
    } catch (e) {
      assert.ok(e instanceof DiskSpecError);
      return e.message;
    }
    assert.fail(`${spec} was served`);
  };

  it("serves a raw image, resolving a relative target against the caller's directory", () => {
    assert.deepEqual(of("vdev=xvda,access=rw,target=disk.img"), {
      target: "/home/u/disk.img",
      vdev: "xvda",
      access: "rw",
      format: "raw",
      devtype: "disk",
    });
    assert.deepEqual(of("/img/cd.iso,,hdc,cdrom"), {
      target: "/img/cd.iso",
      vdev: "hdc",
      access: "ro",
      format: "raw",
      devtype: "cdrom",
    });
    assert.equal(of("phy:/dev/vg/v,xvdb,r").access, "ro");
    assert.equal(of("backendtype=qdisk,backend=Domain-0,vdev=xvda,target=/x").target, "/x");
  });

  it("refuses what libxl refuses, with libxl's words", () => {
    assert.equal(refused("/x,,vda"), "Invalid or unsupported virtual disk identifier vda");
    assert.equal(refused("backendtype=tap,vdev=xvda,target=/x"), "blktap is not supported");
  });

  it("refuses what xenlab does not serve, and says why", () => {
    assert.match(refused("/x,qcow2,xvda"), /^Disk vdev=xvda: format qcow2 is not served/);
    assert.match(refused("vdev=hdc,devtype=cdrom"), /empty drive is not served/);
    assert.match(refused("iscsi:iqn.x,xvda,w"), /script block-iscsi is not run/);
    assert.match(refused("specification=virtio,vdev=xvda,target=/x"), /virtio is not served/);
    assert.match(refused("backend=driver,vdev=xvda,target=/x"), /backend driver is not served/);
  });
});
