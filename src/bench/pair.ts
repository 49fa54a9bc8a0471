/**
 * The two peer workers of `xenlab bench evtchn` and `xenlab bench ring`: the two domains the
 * toolstack connects with an event channel, the workers spawned from one peer module, and the
 * exchange with them (each posts `{ ready: true }`, gets "go", and posts its result or
 * `{ ok: false, error }`).
 */
import type { MessagePort, Worker } from "node:worker_threads";
import { EventChannels } from "../hv/evtchn.ts";
import { siblingModule, spawnWorker } from "../lib/spawn.ts";
import type { DomainEventsBoot } from "../xen/evtchn-abi.ts";
import { DOMID_SELF } from "../xen/xen.ts";

/** One domain's end of the event channel: its boot record and its port. */
export interface ChannelEnd {
  boot: DomainEventsBoot;
  port: number;
}

/**
 * Domains 1 and 2 and an event channel between them, as the XenBus handshake makes it: domain 1
 * offers a port (alloc_unbound), domain 2 binds it (bind_interdomain).
 */
export function connectedDomains(): [ChannelEnd, ChannelEnd] {
  const ev = new EventChannels();
  const a = ev.addDomain(1);
  const b = ev.addDomain(2);
  const pa = ev.allocUnbound(1, DOMID_SELF, 2);
  const pb = ev.bindInterdomain(2, 1, pa);
  if (pa < 0 || pb < 0) throw new Error(`Cannot connect the domains: ${pa}, ${pb}`);
  return [
    { boot: a, port: pa },
    { boot: b, port: pb },
  ];
}

/** What a peer worker posts: ready, then its result, or its error. */
export type PeerMessage = { ready: true } | { ok: true } | { ok: false; error: string };

function nextMessage<R>(w: Worker): Promise<R> {
  return new Promise((res, rej) => {
    const onError = (err: Error): void => {
      w.off("message", onMessage);
      rej(err);
    };
    const onMessage = (m: R): void => {
      w.off("error", onError);
      res(m);
    };
    w.once("message", onMessage);
    w.once("error", onError);
  });
}

/**
 * Waits until both workers are ready, sends "go" (to `second` first), and returns both results;
 * a peer's error is thrown as `label: error`. Both workers are terminated in the end.
 */
export async function runPair<R extends PeerMessage>(
  first: Worker,
  second: Worker,
  label: string,
): Promise<[R, R]> {
  try {
    const r = await Promise.all([nextMessage<R>(first), nextMessage<R>(second)]);
    for (const m of r) if (!("ready" in m)) throw new Error(`A peer did not start: ${JSON.stringify(m)}`);
    const done = Promise.all([nextMessage<R>(first), nextMessage<R>(second)]);
    second.postMessage("go");
    first.postMessage("go");
    const results = await done;
    for (const m of results as PeerMessage[]) {
      if ("ok" in m && !m.ok) throw new Error(`${label}: ${m.error}`);
    }
    return results;
  } finally {
    await Promise.all([first.terminate(), second.terminate()]);
  }
}

/** What a peer worker gets: its side, and for a xenlab side its domain's boot record, whose port it must own. */
export interface PeerWorkerData {
  /** `xenlab`, or the baseline's name. */
  readonly kind: string;
  readonly boot?: { readonly peers: MessagePort };
}

/**
 * Spawns the sibling module `peer` (e.g. `evtchn-peer`) once for each of the two configurations
 * `C` (its workerData), transferring a xenlab side's peer port to its worker, and runs the pair
 * (runPair) for replies `R`.
 */
export function runPeers<R extends PeerMessage, C extends PeerWorkerData>(
  peer: string,
  first: C,
  second: C,
  label: string,
): Promise<[R, R]> {
  const entry = siblingModule(import.meta.url, peer);
  const spawn = (c: C): Worker => spawnWorker(entry, c, c.boot === undefined ? [] : [c.boot.peers]);
  return runPair<R>(spawn(first), spawn(second), label);
}
