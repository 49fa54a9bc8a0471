/**
 * `xenlab bench blk-cp`: the command `xenlab blk-cp FILE DOMAIN:xvda` against `cp FILE IMAGE`
 * of the same file, in the same run.
 *
 *   xenlab    a host (Host and its control socket, as `xenlab up` runs them) with one guest of
 *             --guest-kib (default 1024 KiB, `xenlab up`'s domU) and a raw image of --size MiB
 *             attached as xvda; the real command runs as a child process (this build's
 *             cli/main: dist/ when the bench runs from dist/, else the source through tsx),
 *             without --sync, as cp: the data ends in dom0's page cache, not flushed.
 *   cp        `cp FILE COPY` onto another image of the same size: the coreutils copy the user
 *             would make of the file onto an image file, without a flush.
 *
 * FILE is --size MiB of random bytes. Page cache warm: before each measurement FILE is read in
 * full, and after each one both images are fdatasync'ed (untimed). Each run measures both, odd
 * runs in reverse order; figures are medians over --runs, the ratio is the median of each run's
 * blk-cp / cp (MB/s = 10^6 bytes/s of FILE over the command's wall time, its start-up included).
 * The start-up of a node process running blk-cp (`xenlab blk-cp --help`) is measured in the same
 * runs and shown: the `copy only` column is FILE over the wall time minus it.
 */
import { spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import {
  closeSync,
  fdatasyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ControlServer } from "../host/control.ts";
import { controlPath } from "../host/control-client.ts";
import { attachDisk } from "../host/disk.ts";
import { Host } from "../host/host.ts";
import { createLogger } from "../lib/log.ts";
import {
  alignColumns,
  median,
  type OptionTable,
  pairedRatio,
  parseOptions,
  rateLine,
  runBench,
} from "./common.ts";

export interface Options {
  json: boolean;
  runs: number;
  /** MiB of FILE and of each image. */
  size: number;
  guestKib: number;
}

const DEFAULTS: Options = { json: false, runs: 3, size: 256, guestKib: 1024 };
const QUICK: Partial<Options> = { runs: 1, size: 16 };

const OPTIONS: OptionTable<Options> = {
  "--runs": (o, arg) => {
    o.runs = arg.int(1);
  },
  "--size": (o, arg) => {
    o.size = arg.int(1);
  },
  "--guest-kib": (o, arg) => {
    o.guestKib = arg.int(1);
  },
};

const HELP = `usage: xenlab bench blk-cp [--json] [--runs N] [--size MIB] [--guest-kib KIB] [--quick]

'xenlab blk-cp FILE DOMAIN:xvda' (a child process, into a guest's PV disk, no --sync) against
'cp FILE COPY' onto an image of the same size, page cache warm, in the same runs.

  --runs N         runs, each measuring both (default 3)
  --size MIB       the file and the images (default 256)
  --guest-kib KIB  the guest's memory (default 1024, xenlab up's domU)
  --quick          1 run of 16 MiB
  --json           one JSON line per case
`;

export function run(argv: string[]): Promise<number> {
  return runBench("blk-cp", argv, (a) => parseOptions("blk-cp", a, DEFAULTS, QUICK, OPTIONS), HELP, bench);
}

/** Runs a command to its end; its wall time in seconds (throws on a non-zero exit). */
function timed(cmd: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    c.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    c.on("error", reject);
    c.on("exit", (code) => {
      const s = (performance.now() - t0) / 1000;
      if (code === 0) resolve(s);
      else reject(new Error(`${cmd} ${args.join(" ")} exited with ${code}: ${err.trim()}`));
    });
  });
}

function syncFile(path: string): void {
  const fd = openSync(path, "r+");
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function bench(o: Options): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "xenlab-bench-blk-cp-"));
  const socket = join(dir, "socket");
  const file = join(dir, "file.bin");
  const image = join(dir, "disk.img");
  const copy = join(dir, "copy.img");
  const bytes = o.size << 20;
  const main = fileURLToPath(
    new URL(`../cli/main${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url),
  );
  const node = [...process.execArgv.filter((a) => !a.startsWith("--cpu-prof")), main];
  let host: Host | undefined;
  let control: ControlServer | undefined;
  try {
    const data = Buffer.allocUnsafe(bytes);
    randomFillSync(data);
    writeFileSync(file, data);
    randomFillSync(data);
    writeFileSync(image, data);
    writeFileSync(copy, data);
    host = await Host.start({ log: createLogger("bench-blk-cp", "silent") });
    await host.listen(socket);
    control = new ControlServer(host);
    await control.listen(controlPath(socket));
    const { domid } = await host.createDomain({ name: "bench", maxPages: Math.floor(o.guestKib / 4) });
    await attachDisk(host, domid, {
      target: image,
      vdev: "xvda",
      access: "rw",
      format: "raw",
      devtype: "disk",
    });
    const rates = {
      "blk-cp": [] as number[],
      cp: [] as number[],
      start: [] as number[],
      copyOnly: [] as number[],
    };
    const warm = (): void => {
      readFileSync(file);
    };
    for (let r = 0; r < o.runs; r++) {
      const order = r % 2 === 0 ? ["blk-cp", "cp"] : ["cp", "blk-cp"];
      let blk = 0;
      let cp = 0;
      for (const which of order) {
        warm();
        if (which === "cp") cp = await timed("cp", [file, copy]);
        else
          blk = await timed(process.execPath, [...node, "blk-cp", file, `${domid}:xvda`, "--socket", socket]);
        syncFile(image);
        syncFile(copy);
      }
      const start = await timed(process.execPath, [...node, "blk-cp", "--help"]);
      rates["blk-cp"].push(bytes / blk / 1e6);
      rates.cp.push(bytes / cp / 1e6);
      rates.start.push(start);
      rates.copyOnly.push(bytes / Math.max(blk - start, 1e-6) / 1e6);
      if (!o.json) process.stderr.write(`run ${r + 1}/${o.runs} done\n`);
    }
    const ratio = pairedRatio(rates["blk-cp"], rates.cp);
    const copyRatio = pairedRatio(rates.copyOnly, rates.cp);
    if (o.json) {
      process.stdout.write(
        `${rateLine("blk-cp", `blk-cp-${o.size}MiB`, "MB/s", median(rates["blk-cp"]), median(rates.cp), "cp", ratio)}\n`,
      );
      process.stdout.write(
        `${rateLine("blk-cp", `blk-cp-${o.size}MiB-copy-only`, "MB/s", median(rates.copyOnly), median(rates.cp), "cp", copyRatio)}\n`,
      );
      return 0;
    }
    const f = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" ");
    const rows = [
      [
        "case",
        "blk-cp MB/s",
        "copy only MB/s",
        "cp MB/s",
        "ratio",
        "copy-only ratio",
        "start-up s",
        "runs: blk-cp | cp",
      ],
      [
        `${o.size} MiB into xvda, guest ${o.guestKib} KiB`,
        median(rates["blk-cp"]).toFixed(0),
        median(rates.copyOnly).toFixed(0),
        median(rates.cp).toFixed(0),
        ratio.toFixed(2),
        copyRatio.toFixed(2),
        median(rates.start).toFixed(2),
        `${f(rates["blk-cp"])} | ${f(rates.cp)}`,
      ],
    ];
    for (const l of alignColumns(rows, (i, n) => i === 0 || i === n - 1)) process.stdout.write(`${l}\n`);
    return 0;
  } finally {
    await control?.close();
    await host?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
