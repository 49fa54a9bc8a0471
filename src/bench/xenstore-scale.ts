/**
 * The host-scale cases of `xenlab bench xenstore` (xenstore.ts), each run against both daemons
 * in the same run:
 *
 *   d  a host's store: the nodes `xl create` leaves for G guests (xs-host-layout.ts: a
 *      console, two disks and a vif each, libxl's keys and permissions; one transaction per
 *      guest, as libxl writes a domain), then test-xenstore (as case a) and the load
 *      generator's clients (as case b) on top of it.
 *   e  N children created in one directory (/wide/c<i>) against the same N nodes 100 per
 *      directory (/nested/d<i/100>/k<i%100>): the rate of the W writes up to 10k and up to N.
 *   f  memory: the daemon's resident set (VmRSS) grown by filling /mem (16-byte values, 100
 *      per directory), divided by the nodes added, at each size of --mem-nodes.
 *
 * Each fill runs once per daemon (xenlab first, then the reference) over one connection with
 * up to 64 requests outstanding (xs-pipe.ts), so the daemon, not a round trip, sets the pace.
 * e and f remove what they wrote afterwards. A fill that passes --mem-seconds stops there and
 * reports the sizes it reached.
 */
import { readFileSync } from "node:fs";
import { latin1, XsType } from "../xenstore/wire.ts";
import {
  addTestXenstore,
  CLIENT_CPU,
  type Ctx,
  fmt,
  loadWindows,
  measuredCpu,
  order,
  SIDES,
  type Side,
  testXenstore,
} from "./xenstore-harness.ts";
import { guestLayout } from "./xs-host-layout.ts";
import { Pipe, type PipeRequest } from "./xs-pipe.ts";

const DEPTH = 64;

function write(path: string, value: string, txId = 0): PipeRequest {
  return { type: XsType.WRITE, txId, payload: latin1(`${path}\0${value}`) };
}

function rm(path: string): PipeRequest {
  return { type: XsType.RM, txId: 0, payload: latin1(`${path}\0`) };
}

/** The daemon's resident set in bytes (/proc/PID/status VmRSS). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (m === null) throw new Error(`Cannot read the resident set of process ${pid}`);
  return Number(m[1]) * 1024;
}

async function withPipe<T>(socket: string, f: (p: Pipe) => Promise<T>): Promise<T> {
  const p = await Pipe.open(socket);
  try {
    return await f(p);
  } finally {
    p.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

// ---------------------------------------------------------------------------------------
// d: a host's store.

/** Writes guest `domid` as libxl does, in one transaction. Returns the requests sent. */
async function createGuest(p: Pipe, domid: number): Promise<number> {
  const start = await p.request({ type: XsType.TRANSACTION_START, txId: 0, payload: latin1("\0") });
  const tx = Number(Buffer.from(start.payload).toString("latin1").replace(/\0.*$/s, ""));
  const reqs: PipeRequest[] = [];
  for (const op of guestLayout(domid)) {
    reqs.push(write(op.path, op.value, tx));
    if (op.perms !== null)
      reqs.push({
        type: XsType.SET_PERMS,
        txId: tx,
        payload: latin1(`${op.path}\0${op.perms.map((x) => `${x}\0`).join("")}`),
      });
  }
  await p.pump(reqs, DEPTH);
  await p.request({ type: XsType.TRANSACTION_END, txId: tx, payload: latin1("T\0") });
  return reqs.length + 2;
}

export async function caseD(ctx: Ctx): Promise<void> {
  const { o } = ctx;
  const prefix = `d/${o.guests}-guests`;
  for (const side of SIDES) {
    const d = ctx.daemons[side];
    const t0 = performance.now();
    const sent = await withPipe(d.socket, async (p) => {
      let n = 0;
      for (let g = 1; g <= o.guests; g++) n += await createGuest(p, g);
      return n;
    });
    const s = (performance.now() - t0) / 1e3;
    ctx.res.add(`${prefix}/xl create fill`, "ops/s", "higher", side, sent / s);
    ctx.log(`[d] ${side}: ${o.guests} guests written (${sent} requests, ${s.toFixed(1)} s)`);
  }
  for (let r = 0; r < o.runs; r++) {
    for (const side of order(r)) {
      const d = ctx.daemons[side];
      const { value, cpu } = await measuredCpu(d.pid, () => testXenstore(o, d.socket, o.iterations));
      addTestXenstore(ctx, `${prefix}/test-xenstore`, side, value, cpu, false);
      ctx.log(
        `[d ${r + 1}/${o.runs}] ${side}: test-xenstore ${fmt(value.ops / value.seconds, "ops/s")} ops/s`,
      );
    }
  }
  await loadWindows(ctx, `${prefix}/${o.clients}-clients`, o.clients, o.durationMs, CLIENT_CPU, ["all"]);
}

// ---------------------------------------------------------------------------------------
// e: one wide directory against nested ones.

/**
 * Writes `n` nodes named by `path(i)` and returns the rate (writes/s) of the `window` writes
 * up to each checkpoint.
 */
async function fillRates(
  socket: string,
  path: (i: number) => string,
  n: number,
  checkpoints: readonly number[],
  window: number,
): Promise<number[]> {
  const at = new Map<number, number>();
  const marks = new Set<number>();
  for (const c of checkpoints) {
    marks.add(c);
    marks.add(Math.max(0, c - window));
  }
  function* reqs(): Generator<PipeRequest> {
    for (let i = 0; i < n; i++) yield write(path(i), "v");
  }
  await withPipe(socket, async (p) => {
    at.set(0, performance.now());
    await p.pump(reqs(), DEPTH, (k) => {
      if (marks.has(k)) at.set(k, performance.now());
    });
  });
  return checkpoints.map((c) => {
    const from = Math.max(0, c - window);
    return (c - from) / ((at.get(c)! - at.get(from)!) / 1e3);
  });
}

export function kilo(n: number): string {
  if (n % 1_000_000 === 0) return `${n / 1_000_000}M`;
  return n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

export async function caseE(ctx: Ctx): Promise<void> {
  const { o } = ctx;
  const n = o.wide;
  const checkpoints = [...new Set([Math.min(10_000, n), n])];
  const window = Math.max(1, Math.min(2_000, Math.floor(checkpoints[0]! / 2)));
  const rates: Record<Side, { wide: number[]; nested: number[] }> = {
    xenlab: { wide: [], nested: [] },
    baseline: { wide: [], nested: [] },
  };
  for (const side of SIDES) {
    const d = ctx.daemons[side];
    for (const layout of ["nested", "wide"] as const) {
      const path =
        layout === "wide"
          ? (i: number) => `/wide/c${i}`
          : (i: number) => `/nested/d${Math.floor(i / 100)}/k${i % 100}`;
      const t0 = performance.now();
      const r = await fillRates(d.socket, path, n, checkpoints, window);
      rates[side][layout] = r;
      for (const [k, c] of checkpoints.entries())
        ctx.res.add(`e/${layout} at ${kilo(c)}`, "ops/s", "higher", side, r[k]!);
      ctx.log(
        `[e] ${side}: ${n} ${layout} writes in ${((performance.now() - t0) / 1e3).toFixed(1)} s; ${checkpoints.map((c, k) => `${kilo(c)}: ${fmt(r[k]!, "ops/s")}/s`).join(", ")}`,
      );
      await withPipe(d.socket, (p) => p.request(rm(`/${layout}`)));
    }
  }
  const last = checkpoints.length - 1;
  for (const side of SIDES)
    ctx.res.add(
      `e/wide ÷ nested at ${kilo(n)}`,
      "x",
      "higher",
      side,
      rates[side].wide[last]! / rates[side].nested[last]!,
      false,
    );
}

// ---------------------------------------------------------------------------------------
// f: memory per node.

/** Nodes in the store under /mem after `leaves` writes (100 leaves per directory, 100 directories per group). */
function memNodes(leaves: number): number {
  return leaves + Math.ceil(leaves / 100) + Math.ceil(leaves / 10_000) + 1;
}

function memPath(i: number): string {
  return `/mem/g${Math.floor(i / 10_000)}/d${Math.floor(i / 100) % 100}/k${i % 100}`;
}

/** Leaves needed for at least `nodes` nodes. */
function leavesFor(nodes: number): number {
  let l = Math.floor(nodes * 0.99);
  while (memNodes(l) < nodes) l++;
  return l;
}

export async function caseF(ctx: Ctx): Promise<void> {
  const { o } = ctx;
  const VALUE = "0123456789abcdef";
  for (const side of SIDES) {
    const d = ctx.daemons[side];
    await sleep(500);
    const rss0 = rssBytes(d.pid);
    const deadline = performance.now() + o.memSeconds * 1e3;
    let written = 0;
    const t0 = performance.now();
    await withPipe(d.socket, async (p) => {
      for (const target of o.memNodes) {
        const leaves = leavesFor(target);
        let stopped = false;
        function* reqs(): Generator<PipeRequest> {
          for (; written < leaves; written++) {
            if ((written & 1023) === 0 && performance.now() > deadline) {
              stopped = true;
              return;
            }
            yield write(memPath(written), VALUE);
          }
        }
        await p.pump(reqs(), DEPTH);
        if (stopped) {
          await sleep(1000);
          const perNode = (rssBytes(d.pid) - rss0) / memNodes(written);
          ctx.log(
            `[f] ${side}: stopped after ${o.memSeconds} s at ${memNodes(written)} nodes, short of ${target}: no figure at ${kilo(target)} for ${side} (${perNode.toFixed(0)} B per node where it stopped)`,
          );
          return;
        }
        await sleep(1000);
        const rss = rssBytes(d.pid);
        const nodes = memNodes(written);
        const perNode = (rss - rss0) / nodes;
        ctx.res.add(`f/rss per node at ${kilo(target)}`, "B", "lower", side, perNode);
        ctx.log(
          `[f] ${side}: ${nodes} nodes in ${((performance.now() - t0) / 1e3).toFixed(1)} s; RSS ${(rss / 2 ** 20).toFixed(0)} MiB (from ${(rss0 / 2 ** 20).toFixed(0)}): ${perNode.toFixed(0)} B per node`,
        );
      }
    });
    const s = (performance.now() - t0) / 1e3;
    ctx.res.add("f/fill rate", "ops/s", "higher", side, written / s, false);
    await withPipe(d.socket, (p) => p.request(rm("/mem")));
  }
}
