/**
 * `xenlab bench domains --storm N`: a guest boot storm. N guests are created at once, each as
 * `xl create` would make one with a console and a disk (createGuest, src/host/guest.ts: build,
 * XenStore description, introduce, the primary console, boot, then the disk attached as libxl
 * does and waited for until Connected), each disk its own 1 MiB raw image. It reports:
 *
 *   all-connected     ms from the start until every guest's disk is Connected and every
 *                     guest's console is attached by xenconsoled
 *   xs-requests       XenStore requests per guest: those the guests sent (their kernels: XenBus,
 *                     blkfront) and those dom0 sent (the toolstack, blkback, xenconsoled), counted
 *                     at xenstored's step(), divided by N
 *   steps             per guest, the median and the slowest of: boot (the start until the kernel
 *                     runs: worker spawned, described, introduced, booted), disk (booted until
 *                     Connected: modules loaded, the XenBus handshake), console (booted until
 *                     xenconsoled attached it); the slowest step is the one with the largest
 *                     total time over the guests
 *
 * The baseline, in the same run and the same process: N bare worker threads started at once,
 * each posting one message: the floor of any design that gives a domain a thread. ratio =
 * baseline / xenlab (< 1: the storm takes longer than spawning the threads alone).
 */
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { pino } from "pino";
import { createGuest, type GuestStep } from "../host/guest.ts";
import type { GuestConfig } from "../host/guest-config.ts";
import { Host } from "../host/host.ts";
import { type BenchLine, jsonLine, median } from "./common.ts";

const IMAGE_BYTES = 1024 * 1024;
/** What a storm may take before the bench gives up, per guest. */
const MS_PER_GUEST = 1_000;
const MIB = 1024 * 1024;

type Phase = "boot" | "disk" | "console";
const PHASES: readonly Phase[] = ["boot", "disk", "console"];

export interface StormResult {
  readonly n: number;
  /** ms until every guest was connected, and until N bare workers were all running. */
  readonly allMs: number;
  readonly bareMs: number;
  /** Per guest, ms of each phase. */
  readonly phases: Record<Phase, number[]>;
  /** XenStore requests per guest, from the guests and from dom0. */
  readonly guestRequests: number;
  readonly dom0Requests: number;
  /** The host process's RSS growth, MiB per guest. */
  readonly rssPerGuestMiB: number;
}

/** N bare workers started at once: ms until every one has posted its message. */
async function bareStorm(n: number): Promise<number> {
  const t0 = performance.now();
  const workers = Array.from(
    { length: n },
    () =>
      new Worker("require('node:worker_threads').parentPort.postMessage(0); setInterval(() => {}, 1e9);", {
        eval: true,
      }),
  );
  await Promise.all(workers.map((w) => new Promise((r) => w.once("message", r))));
  const ms = performance.now() - t0;
  await Promise.all(workers.map((w) => w.terminate()));
  return ms;
}

/** Counts xenstored's requests by the sender's domid (0 or a guest), at the core's step(). */
function countRequests(host: Host): { dom0: number; guests: number } {
  const counts = { dom0: 0, guests: 0 };
  const core = host.core;
  const step = core.step.bind(core);
  core.step = (conn, req) => {
    if (conn.domid === 0) counts.dom0++;
    else counts.guests++;
    return step(conn, req);
  };
  return counts;
}

export async function storm(n: number): Promise<StormResult> {
  const bareMs = await bareStorm(n);
  const dir = mkdtempSync(join(tmpdir(), "xenlab-storm-"));
  const host = await Host.start({ log: pino({ level: "silent" }) });
  try {
    const rss0 = process.memoryUsage().rss;
    const counts = countRequests(host);
    const phases: Record<Phase, number[]> = { boot: [], disk: [], console: [] };
    // The images exist before the storm, as a guest's disk does before `xl create`.
    const images = Array.from({ length: n }, (_, i) => {
      const p = join(dir, `guest${i}.img`);
      writeFileSync(p, "");
      truncateSync(p, IMAGE_BYTES);
      return p;
    });
    const t0 = performance.now();
    const one = async (i: number): Promise<void> => {
      const target = images[i]!;
      const cfg: GuestConfig = {
        name: `storm${i}`,
        vcpus: 1,
        disks: [{ target, vdev: "xvda", access: "rw", format: "raw", devtype: "disk" }],
        modules: [],
        onPoweroff: "destroy",
        onReboot: "destroy",
        onCrash: "destroy",
      };
      let booted = 0;
      let console: Promise<void> = Promise.resolve();
      const onStep = (step: GuestStep, domid: number): void => {
        if (step !== "booted") return;
        booted = performance.now();
        phases.boot.push(booted - t0);
        console = host.console.whenConnected(domid, n * MS_PER_GUEST).then(() => {
          phases.console.push(performance.now() - booted);
        });
      };
      // libxl's 10 s for a disk to connect is too short for every guest of a storm of hundreds on
      // two cores: each guest may take MS_PER_GUEST per guest in the storm.
      await createGuest(host, cfg, { onStep, attachTimeoutMs: n * MS_PER_GUEST });
      phases.disk.push(performance.now() - booted);
      await console;
    };
    await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
    const allMs = performance.now() - t0;
    const rssPerGuestMiB = (process.memoryUsage().rss - rss0) / n / MIB;
    return {
      n,
      allMs,
      bareMs,
      phases,
      guestRequests: counts.guests / n,
      dom0Requests: counts.dom0 / n,
      rssPerGuestMiB,
    };
  } finally {
    await host.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The phase with the largest total time over the guests. */
function slowest(r: StormResult): Phase {
  const total = (p: Phase) => r.phases[p].reduce((a, b) => a + b, 0);
  return PHASES.reduce((a, b) => (total(b) > total(a) ? b : a));
}

export function stormLines(r: StormResult): BenchLine[] {
  const round = (v: number) => Math.round(v * 10) / 10;
  return [
    {
      bench: "domains",
      case: `storm-${r.n}-all-connected`,
      unit: "ms",
      xenlab: Math.round(r.allMs),
      baseline: Math.round(r.bareMs),
      baseline_name: "bare-workers-started",
      ratio: Math.round((r.bareMs / r.allMs) * 100) / 100,
    },
    {
      bench: "domains",
      case: `storm-${r.n}-xs-requests-per-guest`,
      unit: "requests",
      xenlab: round(r.guestRequests + r.dom0Requests),
      baseline: null,
      baseline_name: "none",
      ratio: null,
    },
  ];
}

export function stormTable(r: StormResult): string {
  const f = (v: number) => v.toFixed(0).padStart(7);
  const rows = PHASES.map((p) => {
    const v = r.phases[p];
    return `  ${p.padEnd(8)} ${f(median(v))} ${f(Math.max(...v))} ${f(v.reduce((a, b) => a + b, 0) / 1000)}`;
  });
  return [
    `storm: ${r.n} guests created at once, each with a console and a 1 MiB disk (xl create's path)`,
    `  every device Connected after ${r.allMs.toFixed(0)} ms; ${r.n} bare workers started in ${r.bareMs.toFixed(0)} ms (ratio ${(r.bareMs / r.allMs).toFixed(2)})`,
    `  XenStore requests per guest: ${r.guestRequests.toFixed(1)} from the guest, ${r.dom0Requests.toFixed(1)} from dom0 (toolstack, blkback, xenconsoled)`,
    `  RSS per guest: ${r.rssPerGuestMiB.toFixed(1)} MiB`,
    "  step      median ms  max ms  total s",
    ...rows,
    `  slowest step (largest total): ${slowest(r)}`,
    "  boot: the start until the guest's kernel runs; disk: booted until Connected; console: booted until attached",
  ].join("\n");
}

export function stormJson(r: StormResult): string {
  return stormLines(r)
    .map((l) => jsonLine(l))
    .join("\n");
}
