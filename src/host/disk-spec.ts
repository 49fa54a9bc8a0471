/**
 * xl's disk specification (`xl block-attach ID SPEC…`, the `disk = [...]` entries of a domain
 * config): docs/man/xl-disk-configuration.5.pod, parsed as Xen 4.17's libxlutil parses it
 * (tools/libs/util/libxlu_disk_l.l, a flex scanner, and xlu_disk_parse in libxlu_disk.c).
 *
 * The scanner is rebuilt rule for rule: at each position every rule is tried, the longest match
 * wins (trailing context `r/s` counts towards its length, as in flex) and a tie goes to the rule
 * written first. That is what gives the syntax its corners, kept here on purpose:
 *
 *   "/dev/vg/guest-volume,,hda"        positional: target, format ("" = raw), vdev, access
 *   "format=raw, vdev=hda, target=/x"  keys; whitespace before a parameter is skipped
 *   "vdev=xvda,target=/a,b c"          `target=` takes the rest of the string (trailing `,` cut)
 *   "raw:/root/image.iso,hdc:cdrom,ro" deprecated prefixes (`raw:` wins over a positional
 *                                      because `(raw|qcow2?|vhd):/.*` matches the whole string)
 *   "cdrom"                            the flag, not a target: same length, earlier rule
 *   "foo=bar,…"                        "unknown parameter: near `foo=b'" (the rule takes one
 *                                      character after `=`, as xl's does)
 *
 * Errors read as xl prints them, one line each, and several may come from one spec:
 *   command line: config parsing error in disk specification: unknown value for format: near `qcow3' in `format=qcow3,vdev=xvda'
 * Most errors let the scanner go on (xl reports each); "too many positional parameters", an
 * unknown deprecated prefix and "bad disk syntax" stop it.
 *
 * `diskSpecOf` then turns what xl accepts into what xenlab's blkback serves (src/drivers/blk/blockdev.ts
 * DiskSpec): raw images from dom0 over the Xen PV protocol, no hotplug scripts. What libxl
 * itself refuses there (an invalid vdev) gets libxl's message; what xenlab does not serve gets
 * a message saying so.
 */
import { isAbsolute, resolve } from "node:path";
import { type DiskSpec, vdevToDevid } from "../drivers/blk/blockdev.ts";

export type DiskFormat = "raw" | "qcow" | "qcow2" | "vhd" | "empty" | "qed";
export type DiskBackendType = "phy" | "tap" | "qdisk" | "standalone";

/** What xlu_disk_parse leaves in libxl_device_disk (the fields this syntax can set). */
export interface ParsedDisk {
  /** `pdev_path`: undefined when no target was given, "" for an empty one (an empty cdrom). */
  target?: string;
  vdev?: string;
  format: DiskFormat;
  readwrite: boolean;
  isCdrom: boolean;
  removable: boolean;
  /** `backend=`: the backend domain's name. */
  backendDomain?: string;
  backendType?: DiskBackendType;
  specification?: "xen" | "virtio";
  script?: string;
  directIoSafe: boolean;
  /** `discard` / `no-discard`; undefined: libxl's default (on for read-write disks). */
  discard?: boolean;
  /** `trusted` / `untrusted`; undefined: libxl's default (trusted). */
  trusted?: boolean;
  colo?: boolean;
  coloHost?: string;
  coloPort?: number;
  coloExport?: string;
  activeDisk?: string;
  hiddenDisk?: string;
}

/** A disk spec xl refuses, or one xenlab cannot serve; `message` holds one line per error. */
export class DiskSpecError extends Error {
  readonly errors: readonly string[];
  constructor(errors: readonly string[]) {
    super(errors.join("\n"));
    this.name = "DiskSpecError";
    this.errors = errors;
  }
}

/** xl's `config_source` for specs given on the command line. */
const SOURCE = "command line";

/** The scanner's state across the specs of one disk (DiskParseContext). */
interface Context {
  disk: ParsedDisk;
  /** The spec being scanned (for messages). */
  spec: string;
  errors: string[];
  hadDeprPrefix: boolean;
  accessSet: boolean;
  /** format stays "unknown" until something sets it (LIBXL_DISK_FORMAT_UNKNOWN). */
  formatSet: boolean;
  backendSet: boolean;
  specificationSet: boolean;
}

function err(c: Context, near: string | null, message: string): void {
  c.errors.push(
    `${SOURCE}: config parsing error in disk specification: ${message}${near === null ? "" : `: near \`${near}'`} in \`${c.spec}'`,
  );
}

type StringField =
  | "target"
  | "vdev"
  | "backendDomain"
  | "script"
  | "coloHost"
  | "coloExport"
  | "activeDisk"
  | "hiddenDisk";

/** savestring: a second non-empty value is an error; an empty one may be overwritten. */
function save(c: Context, what: string, field: StringField, value: string): void {
  const old = c.disk[field];
  if (old !== undefined && old !== "") {
    err(c, value, `${what} respecified`);
    return;
  }
  c.disk[field] = value;
}

/** DSET for the format. */
function setFormat(c: Context, str: string): void {
  const f: DiskFormat | undefined =
    str === "" ? "raw" : (["raw", "qcow", "qcow2", "vhd", "empty", "qed"] as const).find((x) => x === str);
  if (f === undefined) {
    err(c, str, "unknown value for format");
    return;
  }
  if (c.formatSet && c.disk.format !== f) err(c, str, "format respecified");
  else {
    c.disk.format = f;
    c.formatSet = true;
  }
}

function setAccess(c: Context, str: string): void {
  if (str === "r" || str === "ro") c.disk.readwrite = false;
  else if (str === "rw" || str === "w" || str === "") c.disk.readwrite = true;
  else err(c, str, "unknown value for access");
}

function setBackendType(c: Context, str: string): void {
  const b = (["phy", "tap", "qdisk", "standalone"] as const).find((x) => x === str);
  if (b === undefined) err(c, str, "unknown value for backendtype");
  else if (c.backendSet && c.disk.backendType !== b) err(c, str, "backend respecified");
  else {
    c.disk.backendType = b;
    c.backendSet = true;
  }
}

function setSpecification(c: Context, str: string): void {
  const s = (["xen", "virtio"] as const).find((x) => x === str);
  if (s === undefined) err(c, str, "unknown value for specification");
  else if (c.specificationSet && c.disk.specification !== s) err(c, str, "specification respecified");
  else {
    c.disk.specification = s;
    c.specificationSet = true;
  }
}

/** `<vdev>:<devtype>` as a positional vdev; false (and nothing done) without a colon. */
function vdevAndDevtype(c: Context, str: string): boolean {
  const colon = str.lastIndexOf(":");
  if (colon < 0) return false;
  save(c, "vdev", "vdev", str.slice(0, colon));
  const type = str.slice(colon + 1);
  if (type === "cdrom") c.disk.isCdrom = true;
  else if (type === "disk") c.disk.isCdrom = false;
  else err(c, type, "unknown deprecated type");
  return true;
}

/** A positional parameter: target, format, vdev, access, in that order. */
function positional(c: Context, text: string): boolean {
  const d = c.disk;
  if (c.errors.length > 0) {
    // previous errors may just lead to subsequent ones
  } else if (d.target === undefined) {
    save(c, "target", "target", text);
  } else if (!c.hadDeprPrefix && !c.formatSet) {
    if (d.target === "" && vdevAndDevtype(c, text)) {
      d.format = "empty";
      c.formatSet = true;
    } else setFormat(c, text);
  } else if (d.vdev === undefined) {
    if (!vdevAndDevtype(c, text)) save(c, "vdev", "vdev", text);
  } else if (!c.accessSet) {
    c.accessSet = true;
    setAccess(c, text);
  } else {
    err(c, text, "too many positional parameters");
    return false; // don't print any more errors
  }
  return true;
}

/**
 * One scanner rule: `re` is the text the action sees (yytext), `trail` flex's trailing context
 * (counted in the match length, left in the input). The action returns false to stop scanning.
 */
interface Rule {
  readonly re: RegExp;
  readonly trail?: RegExp;
  readonly action: (c: Context, text: string) => boolean | undefined;
}

/** STRIP(delim): the text without one trailing delimiter. */
const strip = (text: string, delim: string): string => (text.endsWith(delim) ? text.slice(0, -1) : text);
/** FROMEQUALS after STRIP(','): the value of `key=value,`. */
const value = (text: string): string => strip(text, ",").slice(text.indexOf("=") + 1);

const keyed = (key: string, set: (c: Context, v: string) => void): Rule => ({
  re: new RegExp(`${key}=[^,]*,?`, "y"),
  action: (c, t) => {
    set(c, value(t));
    return true;
  },
});
const flag = (name: string, set: (d: ParsedDisk) => void): Rule => ({
  re: new RegExp(`${name},?`, "y"),
  action: (c) => {
    set(c.disk);
    return true;
  },
});
const REST = /[^\n]*/y;

/** libxlu_disk_l.l's rules, in its order (the order breaks ties). */
const RULES: readonly Rule[] = [
  // whitespace before parameters is ignored
  { re: /[ \t\n]+/y, trail: /(?:[^ \t\n][^\n]*)?/y, action: () => true },
  keyed("format", setFormat),
  flag("cdrom", (d) => {
    d.isCdrom = true;
  }),
  flag("devtype=cdrom", (d) => {
    d.isCdrom = true;
  }),
  flag("devtype=disk", (d) => {
    d.isCdrom = false;
  }),
  {
    re: /devtype=[^,]*,?/y,
    action: (c, t) => {
      err(c, t, "unknown value for type");
      return true;
    },
  },
  keyed("access", setAccess),
  keyed("backend", (c, v) => save(c, "backend", "backendDomain", v)),
  keyed("backendtype", setBackendType),
  keyed("specification", setSpecification),
  keyed("vdev", (c, v) => save(c, "vdev", "vdev", v)),
  keyed("script", (c, v) => save(c, "script", "script", v)),
  flag("direct-io-safe", (d) => {
    d.directIoSafe = true;
  }),
  flag("discard", (d) => {
    d.discard = true;
  }),
  flag("no-discard", (d) => {
    d.discard = false;
  }),
  flag("colo", (d) => {
    d.colo = true;
  }),
  flag("no-colo", (d) => {
    d.colo = false;
  }),
  keyed("colo-host", (c, v) => save(c, "colo-host", "coloHost", v)),
  keyed("colo-port", (c, v) => {
    const port = Number.parseInt(v, 10); // atoi
    if (Number.isNaN(port) || port === 0) err(c, v, "unknown value for colo_port");
    else c.disk.coloPort = port;
  }),
  keyed("colo-export", (c, v) => save(c, "colo-export", "coloExport", v)),
  keyed("active-disk", (c, v) => save(c, "active-disk", "activeDisk", v)),
  keyed("hidden-disk", (c, v) => save(c, "hidden-disk", "hiddenDisk", v)),
  flag("trusted", (d) => {
    d.trusted = true;
  }),
  flag("untrusted", (d) => {
    d.trusted = false;
  }),
  // the target magic parameter, eats the rest of the string
  {
    re: /target=[^\n]*/y,
    action: (c, t) => {
      save(c, "target", "target", value(t));
      return true;
    },
  },
  // unknown parameters (one character of value, as in xl)
  {
    re: /[a-z][-a-z0-9]*=[^,],?/y,
    action: (c, t) => {
      err(c, t, "unknown parameter");
      return true;
    },
  },
  // deprecated prefixes: the trailing `.*` makes them match the whole string, so they win
  {
    re: /(?:raw|qcow2?|vhd):/y,
    trail: REST,
    action: (c, t) => {
      c.hadDeprPrefix = true;
      setFormat(c, strip(t, ":"));
      return true;
    },
  },
  {
    re: /(?:iscsi|e?nbd|drbd):/y,
    trail: REST,
    action: (c, t) => {
      c.hadDeprPrefix = true;
      save(c, "script", "script", `block-${strip(t, ":")}`);
      return true;
    },
  },
  ...["tapdisk:", "tap2?:", "aio:", "ioemu:", "file:", "phy:"].map(
    (p): Rule => ({
      re: new RegExp(p, "y"),
      trail: REST,
      action: (c) => {
        c.hadDeprPrefix = true;
        return true;
      },
    }),
  ),
  {
    re: /[a-z][a-z0-9]*:/y,
    trail: /(?:[^a-z0-9][^\n]*)?/y,
    action: (c, t) => {
      err(c, t, "unknown deprecated disk prefix");
      return false;
    },
  },
  // positional parameters: `[^=,]*,|[^=,]+,?`, one rule each so the longer wins
  { re: /[^=,]*,/y, action: (c, t) => positional(c, strip(t, ",")) },
  { re: /[^=,]+,?/y, action: (c, t) => positional(c, strip(t, ",")) },
];

/** The length of `re` (sticky) matched at `pos`, or -1. */
function matchAt(re: RegExp, s: string, pos: number): number {
  re.lastIndex = pos;
  const m = re.exec(s);
  return m === null ? -1 : m[0].length;
}

/** xlu__disk_yylex over one spec. */
function scan(c: Context, spec: string): void {
  c.spec = spec;
  let pos = 0;
  while (pos < spec.length) {
    let best: Rule | null = null;
    let bestText = 0;
    let bestTotal = 0;
    for (const rule of RULES) {
      const n = matchAt(rule.re, spec, pos);
      if (n <= 0) continue;
      const total = n + (rule.trail === undefined ? 0 : Math.max(0, matchAt(rule.trail, spec, pos + n)));
      if (total > bestTotal) {
        best = rule;
        bestText = n;
        bestTotal = total;
      }
    }
    if (best === null) {
      // `.` then <LEXERR>`.*` with yymore(): the offending character and the rest of the line
      const rest = /[^\n]*/y;
      rest.lastIndex = pos + 1;
      err(c, spec[pos]! + (rest.exec(spec)?.[0] ?? ""), "bad disk syntax");
      return;
    }
    const text = spec.slice(pos, pos + bestText);
    pos += bestText;
    if (best.action(c, text) === false) return;
  }
}

/**
 * xlu_disk_parse: one disk from one or more spec strings (as `xl block-attach ID SPEC…` passes
 * its arguments). Throws a DiskSpecError with xl's messages when xl would refuse it.
 */
export function parseDiskSpec(specs: string | readonly string[]): ParsedDisk {
  const list = typeof specs === "string" ? [specs] : specs;
  const c: Context = {
    disk: { format: "raw", readwrite: true, isCdrom: false, removable: false, directIoSafe: false },
    spec: list[0] ?? "",
    errors: [],
    hadDeprPrefix: false,
    accessSet: false,
    formatSet: false,
    backendSet: false,
    specificationSet: false,
  };
  for (const s of list) {
    scan(c, s);
    if (c.errors.length > 0) throw new DiskSpecError(c.errors);
  }
  const d = c.disk;
  if (!c.formatSet) d.format = "raw";
  if (d.isCdrom) {
    d.removable = true;
    d.readwrite = false;
    if (d.target === undefined || d.target === "") d.format = "empty";
  }
  if (d.vdev === undefined) err(c, null, "no vdev specified");
  else if (d.target === undefined && !d.removable)
    err(c, null, "no target specified (and device not removable)");
  if (c.errors.length > 0) throw new DiskSpecError(c.errors);
  return d;
}

/**
 * parseDiskSpec, with one deliberate difference from xl (README): a spec that xl refuses for
 * lack of a vdev because a `target=` in the middle swallowed the keys after it
 * (`target=disk.img,vdev=xvda,access=rw`: the target written first) is read with that target
 * moved last (`vdev=xvda,access=rw,target=disk.img`). A spec xl accepts is never read
 * differently; the target is cut at the first comma followed by a key xl knows.
 */
export function parseDiskSpecLenient(specs: string | readonly string[]): ParsedDisk {
  const list = typeof specs === "string" ? [specs] : [...specs];
  try {
    return parseDiskSpec(list);
  } catch (e) {
    if (!(e instanceof DiskSpecError) || !e.errors.some((m) => m.includes("no vdev specified"))) throw e;
    const KEY = /,(?=(?:vdev|access|mode|format|devtype|backendtype|backend|script|specification)=)/;
    let moved = false;
    const reordered = list.map((s) => {
      const m = /^(.*?)(?:^|,)target=(.*)$/.exec(s);
      if (m === null) return s;
      const cut = KEY.exec(m[2]!);
      if (cut === null) return s;
      moved = true;
      const before = m[1] === "" ? "" : `${m[1]},`;
      return `${before}${m[2]!.slice(cut.index + 1)},target=${m[2]!.slice(0, cut.index)}`;
    });
    if (!moved) throw e;
    return parseDiskSpec(reordered);
  }
}

/**
 * What xenlab's blkback serves of a parsed disk: a raw image (a relative target resolves
 * against `cwd`, the caller's directory) from dom0 over the Xen PV protocol. Refuses with
 * libxl's message what libxl refuses (an invalid vdev, blktap), and says what xenlab does not
 * serve (other formats, empty cdroms, hotplug scripts, virtio, a backend other than dom0, COLO).
 */
export function diskSpecOf(d: ParsedDisk, cwd: string): DiskSpec {
  const vdev = d.vdev ?? "";
  const no = (what: string): never => {
    throw new DiskSpecError([`Disk vdev=${vdev}: ${what}`]);
  };
  if (vdevToDevid(vdev) < 0)
    throw new DiskSpecError([`Invalid or unsupported virtual disk identifier ${vdev}`]);
  if (d.backendType === "tap") throw new DiskSpecError(["blktap is not supported"]);
  if (d.specification === "virtio" || d.backendType === "standalone")
    no("specification virtio is not served: xenlab's blkback speaks the Xen PV protocol only");
  if (d.format === "empty" || d.target === undefined || d.target === "")
    no("an empty drive is not served: give the image file with target=");
  if (d.format !== "raw") no(`format ${d.format} is not served: xenlab's blkback serves raw images only`);
  if (d.script !== undefined)
    no(`script ${d.script} is not run: xenlab serves image files, without hotplug scripts`);
  if (d.backendDomain !== undefined && d.backendDomain !== "Domain-0" && d.backendDomain !== "0")
    no(`backend ${d.backendDomain} is not served: xenlab's disks are served by dom0 (Domain-0)`);
  if (d.colo === true) no("COLO is not served");
  const target = d.target ?? "";
  return {
    target: isAbsolute(target) ? target : resolve(cwd, target),
    vdev,
    access: d.readwrite ? "rw" : "ro",
    format: "raw",
    devtype: d.isCdrom ? "cdrom" : "disk",
  };
}
