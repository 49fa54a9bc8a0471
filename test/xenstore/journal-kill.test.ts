/**
 * No lost writes, end to end: a real `xenlab xenstored --state DIR` child under a write load
 * from several connections (writes, mkdirs, rms, set_perms, transactions), killed with
 * SIGKILL at a seeded random point, restarted on the same DIR, again and again. After each
 * restart every acknowledged request must be there, with its permissions, and nothing that
 * was never sent; the one request each client had in flight at the kill may be either way,
 * and a transaction is all or nothing.
 *
 * Each client owns a subtree, so its history is a line: the state of its subtree must be the
 * model after its acknowledged requests ("before"), or that plus its request in flight
 * ("after"). Values are unique, so anything never sent shows up as a mismatch.
 *
 * JOURNAL_KILL_ROUNDS (default 20) and JOURNAL_KILL_SEED (default 1) make a longer run.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { XsClient, XsOps, XsPerm } from "../../src/xenstore/client.ts";
import { connectXenstore } from "../../src/xenstore/transport-socket-client.ts";
import { type RunningDaemon, startXenlab, tempDir } from "../helpers/peers.ts";
import { mulberry32 } from "../helpers/prng.ts";

const ROUNDS = Number(process.env.JOURNAL_KILL_ROUNDS ?? 20);
const SEED = Number(process.env.JOURNAL_KILL_SEED ?? 1);
const WORKERS = 4;
const ROOT = "/kill";

/** A subtree as the daemon should hold it: path → "value (perms)". */
type Model = Map<string, { value: string; perms: string }>;

const parentOf = (p: string) => p.slice(0, p.lastIndexOf("/"));

/** WRITE (and MKDIR with `value` null) as xenstored does it for dom0: parents inherit perms. */
function applyWrite(m: Model, path: string, value: string | null): void {
  const cur = m.get(path);
  if (cur !== undefined) {
    if (value !== null) m.set(path, { value, perms: cur.perms });
    return;
  }
  const missing: string[] = [];
  let p = path;
  while (!m.has(p)) {
    missing.push(p);
    p = parentOf(p);
  }
  const perms = m.get(p)!.perms;
  for (const q of missing) m.set(q, { value: q === path ? (value ?? "") : "", perms });
}

function applyRm(m: Model, path: string): void {
  for (const k of [...m.keys()]) if (k === path || k.startsWith(`${path}/`)) m.delete(k);
}

type Op =
  | { kind: "write"; path: string; value: string }
  | { kind: "mkdir"; path: string }
  | { kind: "rm"; path: string }
  | { kind: "perms"; path: string; perms: string[] };

function apply(m: Model, op: Op): void {
  if (op.kind === "write") applyWrite(m, op.path, op.value);
  else if (op.kind === "mkdir") applyWrite(m, op.path, null);
  else if (op.kind === "rm") applyRm(m, op.path);
  else if (m.has(op.path)) m.set(op.path, { value: m.get(op.path)!.value, perms: op.perms.join(",") });
}

async function send(c: XsOps, op: Op): Promise<void> {
  if (op.kind === "write") await c.write(op.path, op.value);
  else if (op.kind === "mkdir") await c.mkdir(op.path);
  else if (op.kind === "rm") await c.rm(op.path);
  else await c.setPerms(op.path, op.perms);
}

const permText = (ps: readonly XsPerm[]) =>
  ps.map((p) => `${p.read ? (p.write ? "b" : "r") : p.write ? "w" : "n"}${p.id}`).join(",");

/** The subtree as the daemon serves it. */
async function readTree(c: XsClient, root: string): Promise<Model> {
  const m: Model = new Map();
  const walk = async (p: string): Promise<void> => {
    m.set(p, { value: await c.read(p), perms: permText(await c.getPerms(p)) });
    for (const child of await c.directory(p)) await walk(`${p}/${child}`);
  };
  await walk(root);
  return m;
}

const show = (m: Model) =>
  [...m]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k} = ${JSON.stringify(v.value)} (${v.perms})`);

interface Worker {
  root: string;
  model: Model;
  /** The model with the request in flight at the kill applied; null if none was. */
  inFlight: Model | null;
  acked: number;
}

/** A random request of one worker, in its own subtree (never its root). */
function randomOp(r: () => number, w: Worker, tag: string): Op {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const path = `${w.root}/${pick(["a", "b", "c"])}${r() < 0.6 ? `/${pick(["x", "y"])}` : ""}${r() < 0.3 ? "/z" : ""}`;
  const k = r();
  if (k < 0.5) return { kind: "write", path, value: `${tag}${"v".repeat(Math.floor(r() * 60))}` };
  if (k < 0.6) return { kind: "mkdir", path };
  if (k < 0.75) return { kind: "rm", path };
  const owner = pick([0, 1, 2, 7]);
  const perms = [`${pick(["n", "r", "w", "b"])}${owner}`];
  for (let i = Math.floor(r() * 3); i > 0; i--) perms.push(`${pick(["n", "r", "w", "b"])}${pick([3, 4, 5])}`);
  return { kind: "perms", path, perms };
}

/**
 * One worker's load until the connection dies: single requests and transactions of 2–4,
 * each applied to the model once acknowledged. `onAck` may kill the daemon.
 */
async function load(
  c: XsClient,
  w: Worker,
  r: () => number,
  round: number,
  onAck: () => void,
): Promise<void> {
  let seq = 0;
  for (;;) {
    const before = w.model;
    const after: Model = new Map(before);
    try {
      if (r() < 0.25) {
        const ops: Op[] = [];
        for (let i = 2 + Math.floor(r() * 3); i > 0; i--)
          ops.push(randomOp(r, w, `r${round}.${w.root}.${seq++}.`));
        const tx = await c.transactionStart();
        for (const op of ops) {
          await send(tx, op).catch((e) => {
            if ((e as Error).name !== "XsError") throw e;
          });
          apply(after, op);
        }
        w.inFlight = after; // the commit goes out now: from here it may land or not
        await tx.commit();
      } else {
        const op = randomOp(r, w, `r${round}.${w.root}.${seq++}.`);
        apply(after, op);
        w.inFlight = after;
        try {
          await send(c, op);
        } catch (e) {
          // A refusal (ENOENT for perms on a missing node, ...) is acknowledged too: no change.
          if ((e as Error).name !== "XsError") throw e;
          w.model = before;
          w.inFlight = null;
          w.acked++;
          onAck();
          continue;
        }
      }
      w.model = after;
      w.inFlight = null;
      w.acked++;
      onAck();
    } catch (e) {
      if ((e as Error).name === "ConnectionClosedError" || (e as NodeJS.ErrnoException).code === "ECONNRESET")
        return;
      throw e;
    }
  }
}

describe("xenstored --state under kill -9", () => {
  it(`restores every acknowledged write after ${ROUNDS} kills at random points (seed ${SEED})`, async () => {
    const dir = tempDir("xenlab-journal-kill-");
    const state = join(dir, "state");
    const args = ["--state", state, "--state-max-journal", "4096"];
    const r = mulberry32(SEED);
    const workers: Worker[] = [];
    for (let i = 0; i < WORKERS; i++)
      workers.push({ root: `${ROOT}/w${i}`, model: new Map(), inFlight: null, acked: 0 });
    let daemon: RunningDaemon | null = null;
    let restoredFromInFlight = 0;
    let inFlightAtKill = 0;
    try {
      daemon = await startXenlab(args);
      const setup = await connectXenstore(daemon.socket);
      for (const w of workers) {
        await setup.write(w.root, "");
        w.model.set(w.root, { value: "", perms: "n0" });
      }
      setup.close();
      for (let round = 0; round < ROUNDS; round++) {
        const target = 20 + Math.floor(r() * 200);
        // Half the kills come as the target reply arrives, the others up to 3 ms later, with
        // every client still sending: inside the daemon's handling of some request.
        const delay = r() < 0.5 ? -1 : Math.floor(r() * 4);
        const clients = await Promise.all(workers.map(() => connectXenstore(daemon!.socket)));
        let acks = 0;
        const pid = daemon.pid;
        let killed = false;
        const onAck = () => {
          if (++acks >= target && !killed) {
            killed = true;
            if (delay < 0) process.kill(pid, "SIGKILL");
            else setTimeout(() => process.kill(pid, "SIGKILL"), delay);
          }
        };
        await Promise.all(
          workers.map((w, i) => load(clients[i]!, w, mulberry32(SEED * 1000 + round * 10 + i), round, onAck)),
        );
        for (const c of clients) c.close();
        await daemon.stop();
        daemon = null;

        daemon = await startXenlab(args);
        const check = await connectXenstore(daemon.socket);
        for (const w of workers) {
          const got = show(await readTree(check, w.root));
          const before = show(w.model);
          if (w.inFlight !== null) {
            inFlightAtKill++;
            const after = show(w.inFlight);
            if (
              JSON.stringify(got) === JSON.stringify(after) &&
              JSON.stringify(after) !== JSON.stringify(before)
            ) {
              restoredFromInFlight++;
              w.model = w.inFlight;
            } else {
              assert.deepEqual(
                got,
                before,
                `round ${round}, ${w.root}: neither before nor after its request in flight`,
              );
            }
          } else {
            assert.deepEqual(got, before, `round ${round}, ${w.root}`);
          }
          w.inFlight = null;
        }
        check.close();
      }
      const acked = workers.reduce((s, w) => s + w.acked, 0);
      assert.ok(acked >= ROUNDS * 20, `only ${acked} acknowledged requests`);
      assert.ok(inFlightAtKill > 0, "no request was ever in flight at a kill");
      process.stdout.write(
        `# ${ROUNDS} kills, ${acked} acknowledged requests, ${inFlightAtKill} in flight at a kill, ${restoredFromInFlight} of those restored\n`,
      );
    } finally {
      if (daemon !== null) await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
