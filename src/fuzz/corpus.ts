/**
 * The fuzzer's corpus: valid XenStore requests of every message type of `io/xs_wire.h`, with
 * realistic payloads (paths, values, permissions, tokens, domids, CONTROL commands), plus the
 * requests of the reference daemon's probe transcript (`../shared/refxs/probe-cxenstored.txt`).
 *
 * `buildCorpus()` makes the list; `scripts/fuzz-corpus.ts` writes it to `test/fuzz/corpus/`
 * (one raw packet per file, header included), which is what the fuzzer reads, so a run
 * depends only on committed files and its seed.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { encodePacket, latin1, typeName, XsType } from "../xenstore/wire.ts";

export interface CorpusEntry {
  /** File name without extension: `NNN-TYPE-what`. */
  readonly name: string;
  /** The whole packet: 16-byte header and payload. */
  readonly bytes: Uint8Array;
}

/** Directories the corpus works under (and the fuzzer's clean-up removes). */
export const FUZZ_ROOTS = ["/fuzz", "/local/domain/1", "/local/domain/5", "/vm"] as const;

interface Raw {
  type: number;
  payload: string;
  txId?: number;
  what: string;
}

/** The hand-written part: each message type with typical and edge-case payloads. */
function handWritten(): Raw[] {
  const T = XsType;
  const r: Raw[] = [];
  const add = (type: number, payload: string, what: string, txId = 0) =>
    r.push({ type, payload, what, txId });
  // Paths of the kinds clients send: absolute, relative (the connection's home), deep, special.
  const paths = [
    "/",
    "/fuzz",
    "/fuzz/a",
    "/fuzz/a/b/c",
    "/local/domain/1/device/vif/0/state",
    "/local/domain/5/data",
    "/local/domain/0/backend/vbd/5/51712/params",
    "/vm/00000000-0000-0000-0000-000000000001/name",
    "device/vbd/51712/ring-ref",
    "name",
    "/tool/xenstored",
  ];
  for (const p of paths) {
    const slug = p.replaceAll("/", "_") || "root";
    add(T.READ, `${p}\0`, `read${slug}`);
    add(T.DIRECTORY, `${p}\0`, `dir${slug}`);
    add(T.GET_PERMS, `${p}\0`, `perms${slug}`);
  }
  add(T.READ, "@introduceDomain\0", "read-special");
  add(T.WRITE, "/fuzz/a\0hello", "write-value");
  add(T.WRITE, "/fuzz/a/b/c\0v", "write-implicit-parents");
  add(T.WRITE, "/fuzz/empty\0", "write-empty-value");
  add(T.WRITE, "/fuzz/bin\0\x00\x01\x02\xff\xfe", "write-binary-value");
  add(T.WRITE, "/local/domain/1/device/vif/0/state\x004", "write-state");
  add(T.WRITE, "/local/domain/5/data\0from-dom5", "write-guest-home");
  add(T.WRITE, "device/vbd/51712/ring-ref\x008", "write-relative");
  add(T.WRITE, `/fuzz/big\0${"v".repeat(2000)}`, "write-2000-byte-value");
  add(T.WRITE, `/fuzz/max\0${"m".repeat(4096 - 10)}`, "write-4096-byte-payload");
  add(T.MKDIR, "/fuzz/dir\0", "mkdir");
  add(T.MKDIR, "/local/domain/5/device\0", "mkdir-guest");
  add(T.MKDIR, "backend\0", "mkdir-relative");
  add(T.RM, "/fuzz/a\0", "rm");
  add(T.RM, "/fuzz\0", "rm-subtree");
  add(T.RM, "/fuzz/nope/deeper\0", "rm-missing-parent");
  add(T.RM, "/\0", "rm-root");
  add(T.SET_PERMS, "/fuzz/a\0n0\0r5\0w7\0b9\0", "setperms");
  add(T.SET_PERMS, "/local/domain/5\0n5\0r0\0", "setperms-guest-home");
  add(T.SET_PERMS, "/local/domain/1\0n1\0r0\0", "setperms-guest1-home");
  add(T.SET_PERMS, "/fuzz/a\0b5\0", "setperms-owner-both");
  add(T.SET_PERMS, "@releaseDomain\0n0\0r5\0", "setperms-special");
  add(T.SET_PERMS, "/fuzz/a\0n0x10\0r-1\0", "setperms-hex-negative");
  add(T.WATCH, "/fuzz\0tok\0", "watch");
  add(T.WATCH, "/\0root\0", "watch-root");
  add(T.WATCH, "device\0rel\0", "watch-relative");
  add(T.WATCH, "@introduceDomain\0i\0", "watch-introduce");
  add(T.WATCH, "@releaseDomain\0r\0", "watch-release");
  add(T.UNWATCH, "/fuzz\0tok\0", "unwatch");
  add(T.UNWATCH, "@releaseDomain\0r\0", "unwatch-special");
  add(T.TRANSACTION_START, "\0", "tx-start");
  add(T.TRANSACTION_START, "", "tx-start-empty");
  add(T.TRANSACTION_END, "T\0", "tx-commit", 1);
  add(T.TRANSACTION_END, "F\0", "tx-abort", 1);
  add(T.WRITE, "/fuzz/tx\0in-tx", "write-in-tx", 1);
  add(T.READ, "/fuzz/a\0", "read-in-tx", 1);
  add(T.INTRODUCE, "5\x0012345\x007\0", "introduce");
  add(T.INTRODUCE, "1\x00999\x003\0", "introduce-1");
  add(T.INTRODUCE, "9\x000\x000\0", "introduce-port-0");
  add(T.RELEASE, "5\0", "release");
  add(T.RELEASE, "1\0", "release-1");
  add(T.GET_DOMAIN_PATH, "5\0", "domain-path");
  add(T.GET_DOMAIN_PATH, "abc\0", "domain-path-atoi");
  add(T.IS_DOMAIN_INTRODUCED, "5\0", "is-introduced");
  add(T.IS_DOMAIN_INTRODUCED, "32752\0", "is-introduced-self");
  add(T.RESUME, "5\0", "resume");
  add(T.SET_TARGET, "5\x001\0", "set-target");
  add(T.RESET_WATCHES, "", "reset-watches");
  add(T.DIRECTORY_PART, "/fuzz\x000\0", "dir-part");
  add(T.DIRECTORY_PART, "/\x003\0", "dir-part-offset");
  add(T.GET_FEATURE, "", "get-feature");
  add(T.GET_FEATURE, "5\0", "get-feature-domain");
  add(T.SET_FEATURE, "5\x001\0", "set-feature");
  add(T.GET_QUOTA, "", "get-quota-names");
  add(T.GET_QUOTA, "nodes\0", "get-quota");
  add(T.GET_QUOTA, "5\0watches\0", "get-quota-domain");
  add(T.SET_QUOTA, "transactions\x0020\0", "set-quota");
  add(T.SET_QUOTA, "5\0nodes\x002000\0", "set-quota-domain");
  for (const c of [
    "check",
    "log\0on",
    "print\0hello",
    "quota",
    "quota\x005",
    "quota\0set\0nodes\x001000",
    "quota-soft",
    "help",
    "memreport",
    "logfile\0/tmp/xs.log",
    "live-update\0-c\0x",
  ]) {
    add(T.CONTROL, `${c}\0`, `control-${c.split("\0")[0]}`);
  }
  // Types a client must not send, and removed ones: ENOSYS.
  add(T.WATCH_EVENT, "/fuzz\0tok\0", "client-watch-event");
  add(T.ERROR, "EINVAL\0", "client-error");
  add(20, "", "restrict-removed");
  add(27, "x\0", "type-27");
  return r;
}

/** Requests of the probe transcript (`[dom0] READ b'/x\x00'  -> ...`); long ones are elided there. */
export function probeRequests(transcript: string): Raw[] {
  const out: Raw[] = [];
  for (const line of transcript.split("\n")) {
    const m = /^\[\w+\] (\w+)( tx=<tx\d+>)? (b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")/.exec(line);
    if (m === null) continue;
    const type = (XsType as Record<string, number>)[m[1]!];
    if (type === undefined) continue;
    out.push({ type, payload: pyBytes(m[3]!), txId: m[2] === undefined ? 0 : 1, what: "probe" });
  }
  return out;
}

/** A Python bytes literal's value, one char per byte. */
function pyBytes(lit: string): string {
  const body = lit.slice(2, -1);
  let s = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      s += c;
      continue;
    }
    const e = body[++i]!;
    if (e === "x") {
      s += String.fromCharCode(Number.parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      s += { t: "\t", n: "\n", r: "\r", "0": "\0" }[e] ?? e;
    }
  }
  return s;
}

/** The whole corpus, in a stable order, each named for its file. */
export function buildCorpus(probeTranscript = ""): CorpusEntry[] {
  const raws = [...handWritten(), ...probeRequests(probeTranscript)];
  const seen = new Set<string>();
  const out: CorpusEntry[] = [];
  for (const r of raws) {
    const bytes = encodePacket({ type: r.type, reqId: 0, txId: r.txId ?? 0, payload: latin1(r.payload) });
    const key = Buffer.from(bytes).toString("hex");
    if (seen.has(key)) continue;
    seen.add(key);
    const n = String(out.length).padStart(3, "0");
    const what = r.what.replace(/[^A-Za-z0-9_-]+/g, "-").slice(0, 48);
    out.push({ name: `${n}-${typeName(r.type)}-${what}`, bytes });
  }
  return out;
}

/** Reads a corpus directory (every `*.bin`, in name order). */
export function loadCorpus(dir: string): CorpusEntry[] {
  const names = readdirSync(dir)
    .filter((f) => f.endsWith(".bin"))
    .sort();
  if (names.length === 0) throw new RangeError(`Cannot fuzz: no *.bin corpus files in '${dir}'`);
  return names.map((f) => ({ name: f.slice(0, -4), bytes: new Uint8Array(readFileSync(join(dir, f))) }));
}

/** Where the committed corpus lives, from this module's place in the checkout (src/ or dist/). */
export function defaultCorpusDir(): string {
  return new URL("../../test/fuzz/corpus", import.meta.url).pathname;
}
