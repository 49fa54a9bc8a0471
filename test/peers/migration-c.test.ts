/**
 * The XenStore migration stream between Debian's C xenstored 4.17 (../shared/refxs) and
 * `xenlab xenstored`: C writes its state on `xenstore-control live-update`, xenlab starts from
 * it with `--load`, and every node and permission reads the same from both; and xenlab's own
 * dump, asked for with Debian's `xenstore-control dump-state`, starts a second xenlab that
 * reads the same. Under CI=true a missing refxs fails these tests (requirePeer).
 *
 * And the other way: C xenstored 4.17 started with `-U` (live-update mode) on xenlab's dump
 * reads the same too. C's live update hands the new binary its listening socket as an open fd
 * (GLOBAL_DATA), so the test makes that socket and execs C with it as fd 3, through Python.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { XsClient } from "../../src/xenstore/client.ts";
import { decodeStateStream, encodeStateStream } from "../../src/xenstore/migration-format.ts";
import { connectXenstore } from "../../src/xenstore/transport-socket-client.ts";
import {
  hasCommand,
  REFXS,
  REFXS_BIN,
  REFXS_CACHE,
  REFXS_LIB,
  type RunningDaemon,
  refxsAvailable,
  requirePeer,
  startRefxs,
  startXenlab,
  tempDir,
} from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { until } from "../helpers/until.ts";

const XENSTORE_CONTROL = join(REFXS_BIN, "xenstore-control");

/** Every node from `/` down: path, value (hex), permissions, children in order. */
async function readTree(c: XsClient): Promise<string[]> {
  const out: string[] = [];
  const walk = async (path: string): Promise<void> => {
    const value = Buffer.from(await c.readBytes(path)).toString("hex");
    const perms = (await c.getPerms(path))
      .map((p) => `${p.read ? (p.write ? "b" : "r") : p.write ? "w" : "n"}${p.id}`)
      .join(",");
    const children = await c.directory(path);
    out.push(`${path} ${value} ${perms} [${children.join(",")}]`);
    for (const child of children) await walk(path === "/" ? `/${child}` : `${path}/${child}`);
  };
  await walk("/");
  return out;
}

/** Guests, their permissions, a binary value, a target and a special node's permissions. */
async function populate(c: XsClient): Promise<void> {
  await c.introduce(3, 0x1003, 7);
  await c.introduce(4, 0x1004, 8);
  await c.setTarget(4, 3);
  await c.write("/tool/x", "a b");
  await c.write("/local/domain/3/name", "guest3");
  await c.setPerms("/local/domain/3", ["n3", "r0"]);
  await c.write("/local/domain/3/device/vbd/51712/state", "4");
  await c.setPerms("/local/domain/3/device/vbd/51712", ["b3", "r0", "w4", "n5", "b6"]);
  await c.write("/local/domain/3/data/bin", Uint8Array.from([0x61, 0, 0xff, 0x0a, 0x62]));
  await c.write("/local/domain/4/name", "stub");
  await c.setPerms("/local/domain/4/name", ["r4"]);
  await c.write("/vm/zz", "");
  await c.write("/vm/aa", "first");
  await c.setPerms("@releaseDomain", ["n0", "r3"]);
}

describe("the XenStore migration stream against C xenstored 4.17", () => {
  it("loads C's live-update dump: every node and permission reads as from C", async (t) => {
    if (!requirePeer(t, "the reference C xenstored (../shared/refxs) and gcc", refxsAvailable())) return;
    const dir = tempDir("xenlab-xsmig-");
    const dump = join(dir, "state_dump");
    const c = await startRefxs([], { REFXS_INIT_DOM0: "1" });
    let x: RunningDaemon | null = null;
    let watcher: XsClient | null = null;
    try {
      const cc = await connectXenstore(c.socket);
      await populate(cc);
      const expected = await readTree(cc);
      cc.close();
      // A tool's socket with a watch: in C's dump, left out by the load.
      watcher = await connectXenstore(c.socket);
      await watcher.watch("/local/domain/3", "w").ready;
      // C execs the "new binary" with its state in $XENSTORED_RUNDIR/state_dump.
      const wrapper = join(dir, "new-xenstored.sh");
      writeFileSync(
        wrapper,
        `#!/bin/sh\ncp "$XENSTORED_RUNDIR/state_dump" "${dump}"\nexec "${join(REFXS_BIN, "xenstored")}" "$@"\n`,
      );
      chmodSync(wrapper, 0o755);
      await runTool(XENSTORE_CONTROL, ["live-update", wrapper], {
        env: { XENSTORED_PATH: c.socket, LD_LIBRARY_PATH: REFXS_LIB },
        timeoutMs: 30_000,
      });
      await until("C's state_dump", () => existsSync(dump));

      const stream = decodeStateStream(new Uint8Array(readFileSync(dump)));
      assert.equal(stream.version, 1);
      const rings = stream.records.filter((r) => r.type === "connection" && r.spec.kind === "ring");
      assert.deepEqual(
        rings.map((r) =>
          r.type === "connection" && r.spec.kind === "ring" ? [r.spec.domid, r.spec.tdomid] : [],
        ),
        [
          [0, 0x7ff4],
          [3, 0x7ff4],
          [4, 3],
        ],
      );

      x = await startXenlab(["--load", dump]);
      const xc = await connectXenstore(x.socket);
      try {
        assert.deepEqual(await readTree(xc), expected);
        assert.equal(await xc.isDomainIntroduced(3), true);
        assert.equal(await xc.isDomainIntroduced(4), true);
        assert.equal(await xc.isDomainIntroduced(5), false);
      } finally {
        xc.close();
      }
      assert.match(x.stderr(), /not restored: watch \/local\/domain\/3 \(token w\) of socket connection/);
    } finally {
      watcher?.close();
      await x?.stop();
      await c.stop();
    }
  });

  it("xenlab's dump, asked for with Debian's xenstore-control, starts a xenlab that reads the same", async (t) => {
    if (
      !requirePeer(
        t,
        "xenstore-control from the refxs cache",
        refxsAvailable() && existsSync(XENSTORE_CONTROL),
      )
    )
      return;
    const dir = tempDir("xenlab-xsmig-");
    const a = await startXenlab();
    let b: RunningDaemon | null = null;
    try {
      const ac = await connectXenstore(a.socket);
      await populate(ac);
      const expected = await readTree(ac);
      ac.close();
      for (const version of ["1", "2"]) {
        const dump = join(dir, `dump-v${version}`);
        const r = await runTool(XENSTORE_CONTROL, ["dump-state", "-v", version, dump], {
          env: { XENSTORED_PATH: a.socket, LD_LIBRARY_PATH: REFXS_LIB },
          timeoutMs: 10_000,
        });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.trim(), "OK");
        b = await startXenlab(["--load", dump]);
        const bc = await connectXenstore(b.socket);
        try {
          assert.deepEqual(await readTree(bc), expected, `version ${version}`);
          assert.equal(await bc.isDomainIntroduced(4), true);
        } finally {
          bc.close();
        }
        await b.stop();
        b = null;
      }
    } finally {
      await b?.stop();
      await a.stop();
    }
  });

  it("xenlab's dump, version 1, is read by C xenstored 4.17 in live-update mode: it reads the same", async (t) => {
    const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    const present = refxsAvailable() && existsSync(XENSTORE_CONTROL) && hasCommand(python);
    if (!requirePeer(t, "the reference C xenstored (../shared/refxs), gcc and python3", present)) return;
    // Builds the shim if this test runs first.
    await (await startRefxs()).stop();
    const dir = tempDir("xenlab-xsmig-");
    const socket = join(dir, "socket");
    const a = await startXenlab();
    let cpid: number | null = null;
    try {
      const ac = await connectXenstore(a.socket);
      await populate(ac);
      const expected = await readTree(ac);
      ac.close();
      const dump = join(dir, "xenlab.dump");
      const r = await runTool(XENSTORE_CONTROL, ["dump-state", "-v", "1", dump], {
        env: { XENSTORED_PATH: a.socket, LD_LIBRARY_PATH: REFXS_LIB },
        timeoutMs: 10_000,
      });
      assert.equal(r.stdout.trim(), "OK", r.stderr);
      // What a live update would hand over: the listening socket, as fd 3.
      const s = decodeStateStream(new Uint8Array(readFileSync(dump)));
      const records = s.records.map((x) => (x.type === "global" ? { ...x, socketFd: 3 } : x));
      writeFileSync(join(dir, "state_dump"), encodeStateStream({ ...s, records }));
      const exec = [
        "import os, socket, sys",
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)",
        "s.bind(sys.argv[1]); s.listen(64)",
        "os.dup2(s.fileno(), 3); os.set_inheritable(3, True)",
        "os.execv(sys.argv[2], sys.argv[2:])",
      ].join("\n");
      const child = spawn(python, ["-c", exec, socket, join(REFXS_BIN, "xenstored"), "-N", "-U"], {
        env: {
          ...process.env,
          LD_PRELOAD: join(REFXS_CACHE, "refxs_shim.so"),
          LD_LIBRARY_PATH: REFXS_LIB,
          REFXS_STATE: dir,
          REFXS_SOCKET: socket,
          XENSTORED_PATH: socket,
          XENSTORED_RUNDIR: dir,
        },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
      let log = "";
      child.stdout!.on("data", (d: Buffer) => {
        log += d.toString("latin1");
      });
      child.stderr!.on("data", (d: Buffer) => {
        log += d.toString("latin1");
      });
      cpid = child.pid ?? null;
      const deadline = Date.now() + 20_000;
      const cc = await (async () => {
        for (;;) {
          if (Date.now() > deadline)
            assert.fail(`C xenstored -U does not answer on ${socket}:\n${log.slice(0, 2000)}`);
          if (child.exitCode !== null || child.signalCode !== null)
            assert.fail(
              `C xenstored -U exited (${child.exitCode ?? child.signalCode}):\n${log.slice(0, 2000)}`,
            );
          try {
            return await connectXenstore(socket);
          } catch {
            await new Promise((res) => setTimeout(res, 50));
          }
        }
      })();
      try {
        assert.deepEqual(await readTree(cc), expected);
        assert.equal(await cc.isDomainIntroduced(3), true);
        assert.equal(await cc.isDomainIntroduced(4), true);
      } finally {
        cc.close();
      }
    } finally {
      if (cpid !== null) await runTool("bash", [join(REFXS, "stop.sh"), String(cpid)]);
      await a.stop();
    }
  });
});
