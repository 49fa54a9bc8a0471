/**
 * `xenlab bench guest-migrate`: how long a guest with a disk is down when it moves, against building the
 * same guest from nothing in the same run.
 *
 *   migrate       two hosts in this process, each with its control socket; a guest with one
 *                 connected disk goes A → B, then B → A, each time `migrateGuest` (xl migrate's
 *                 sequence over the socket); the figure is the downtime it reports, from the
 *                 guest's suspend on the sender to the receiver's status (running, devices
 *                 Connected).
 *   save-restore  on one host: `xenlab save` to a file, then `xenlab restore` of it; the figure is
 *                 suspend to devices Connected again.
 *   baseline      `xl create` of the same guest with the same disk on the receiver: build,
 *                 describe, introduce, boot, attach and wait for Connected. A restore must at
 *                 least build a domain and reconnect its devices, so this is its floor.
 *
 * ratio = baseline / xenlab: 1 would mean moving the guest costs no more than creating it.
 * Medians of --runs runs, the cases in alternating order.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { ControlServer } from "../host/control.ts";
import { attachDisk } from "../host/disk.ts";
import { Host } from "../host/host.ts";
import { migrateGuest } from "../host/migrate.ts";
import { restoreFromFile, saveToFile } from "../host/save-file.ts";
import { eachRun, median, type OptionTable, parseOptions, runBench, timeLine } from "./common.ts";

interface Options {
  json: boolean;
  runs: number;
}

const DEFAULTS: Options = { json: false, runs: 5 };
const QUICK: Partial<Options> = { runs: 2 };

const HELP = `usage: xenlab bench guest-migrate [options]

The downtime of a guest with one disk moved between two hosts (and saved and restored on one),
against creating the same guest with the same disk, in the same run.

  --json       one JSON line per case instead of the table
  --runs N     runs (default ${DEFAULTS.runs}); medians are reported
  --quick      --runs ${QUICK.runs}
`;

const OPTIONS: OptionTable<Options> = {
  "--runs": (o, arg) => {
    o.runs = arg.int(1);
  },
};

export function run(argv: string[]): Promise<number> {
  return runBench(
    "guest-migrate",
    argv,
    (a) => parseOptions("guest-migrate", a, DEFAULTS, QUICK, OPTIONS),
    HELP,
    bench,
  );
}

type Case = "migrate" | "save-restore" | "create";

async function bench(o: Options): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "xenlab-bench-migrate-"));
  const log = pino({ level: "silent" });
  const hosts = [await Host.start({ log }), await Host.start({ log })] as const;
  const ctls = hosts.map((h) => new ControlServer(h));
  const sockets = hosts.map((_, i) => join(dir, `host${i}.sock`));
  const image = join(dir, "disk.img");
  writeFileSync(image, new Uint8Array(1 << 20));
  const disk = { target: image, vdev: "xvda", access: "rw", format: "raw", devtype: "disk" } as const;
  const times: Record<Case, number[]> = { migrate: [], "save-restore": [], create: [] };
  try {
    for (let i = 0; i < 2; i++) await ctls[i]!.listen(`${sockets[i]}.ctl`);
    let at = 0;
    let domid = (await hosts[0].createDomain({ name: "mover", maxPages: 512 })).domid;
    await attachDisk(hosts[0], domid, disk);
    await eachRun(o, ["migrate", "save-restore", "create"] as Case[], async (c) => {
      if (c === "migrate") {
        const r = await migrateGuest(hosts[at]!, domid, sockets[1 - at]!);
        at = 1 - at;
        domid = r.domid;
        times.migrate.push(r.downtimeMs);
      } else if (c === "save-restore") {
        const t0 = performance.now();
        await saveToFile(hosts[at]!, domid, join(dir, "mover.save"));
        domid = (await restoreFromFile(hosts[at]!, join(dir, "mover.save"))).domid;
        times["save-restore"].push(performance.now() - t0);
      } else {
        // The same guest built from nothing on the other host, its disk an image of its own.
        const h = hosts[1 - at]!;
        const other = join(dir, "fresh.img");
        writeFileSync(other, new Uint8Array(1 << 20));
        const t0 = performance.now();
        const fresh = (await h.createDomain({ name: "fresh", maxPages: 512 })).domid;
        await attachDisk(h, fresh, { ...disk, target: other });
        times.create.push(performance.now() - t0);
        await h.destroyDomain(fresh);
      }
    });
  } finally {
    for (const c of ctls) await c.close();
    for (const h of hosts) await h.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const base = median(times.create);
  const lines = (["migrate", "save-restore"] as const).map((c) => ({ c, x: median(times[c]) }));
  if (o.json) {
    for (const { c, x } of lines)
      process.stdout.write(
        `${timeLine("guest-migrate", `${c}-downtime`, "ms", x, base, "xl-create-with-disk")}\n`,
      );
    return 0;
  }
  process.stdout.write("case                     unit    xenlab   create+disk   ratio\n");
  for (const { c, x } of lines) {
    process.stdout.write(
      `${`${c}-downtime`.padEnd(24)} ms  ${x.toFixed(1).padStart(9)} ${base.toFixed(1).padStart(13)} ${(base / x).toFixed(3).padStart(7)}\n`,
    );
  }
  process.stdout.write(
    `\nMedians of ${o.runs} runs. A guest (2 MiB, one 1 MiB disk) between two hosts in one process over\n` +
      "the control socket; ratio = create / downtime (1: moving costs what creating costs).\n",
  );
  return 0;
}
