/**
 * `xenlab network-attach`, `network-list` and `network-detach` against `xenlab up`, as a user runs
 * them: xl's vif spec, xl's table, xl's "Device X not connected.", and one line naming the cause
 * for every mistake.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { hasCommand, REPO, requirePeer, tempDir } from "../helpers/peers.ts";
import { MAIN, type RunningHost, startUp } from "../helpers/up.ts";

const TSX = join(REPO, "node_modules/tsx/dist/esm/index.mjs");

describe("xenlab network-attach, network-list, network-detach against xenlab up", () => {
  let up: RunningHost | undefined;
  let socket: string;
  const xenlab = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ["--import", TSX, MAIN, ...args, "--socket", socket],
        (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : Number((err as { code?: number }).code ?? 1), stdout, stderr }),
      );
    });
  const oneLine = (r: { code: number; stderr: string }, re: RegExp) => {
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.split("\n").length, 2, r.stderr);
    assert.match(r.stderr, re);
  };

  before(async () => {
    socket = join(tempDir("xenlab-net-tools-"), "socket");
    up = await startUp(socket);
  });
  after(async () => {
    await up?.stop();
  });

  it("attaches with xl's vif spec, lists as xl, detaches by mac", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", hasCommand("passt"))) return;
    const a = await xenlab("network-attach", "domU", "mac=00:16:3e:aa:bb:cc,bridge=xenbr0");
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, "");
    const l = await xenlab("network-list", "domU");
    assert.equal(l.code, 0);
    const lines = l.stdout.split("\n");
    assert.equal(lines[0], "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path");
    assert.match(
      lines[1]!,
      /^0 {3}0 {2}00:16:3e:aa:bb:cc {6}0 {5}4 +\d+ +\d+\/\d+ +\/local\/domain\/0\/backend\/vif\/1\/0$/,
    );
    const d = await xenlab("network-detach", "domU", "00:16:3e:aa:bb:cc");
    assert.equal(d.code, 0, d.stderr);
    assert.equal((await xenlab("network-list", "domU")).stdout.split("\n").length, 2);
  });

  it("says what is wrong in one line", async () => {
    oneLine(
      await xenlab("network-attach", "domU", "mac=zz"),
      /^xenlab network-attach: Invalid mac address: zz$/m,
    );
    oneLine(
      await xenlab("network-attach", "domU", "colour=red"),
      /Unknown vif option 'colour' \(xenlab knows mac, bridge/,
    );
    oneLine(await xenlab("network-attach", "dave"), /^dave is an invalid domain identifier \(rc=-6\)$/m);
    oneLine(await xenlab("network-detach", "domU", "7"), /^Error: Device 7 not connected\.$/m);
    // The spec is the mistake named first, as xl parses it before it looks for the domain.
    const hostSocket = socket;
    socket = join(tempDir("xenlab-nohost-"), "socket");
    try {
      oneLine(
        await xenlab("network-attach", "domU", "mac=zz"),
        /^xenlab network-attach: Invalid mac address: zz$/m,
      );
    } finally {
      socket = hostSocket;
    }
  });
});
