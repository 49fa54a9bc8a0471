/**
 * What the three fuzz targets share: their options, the state of one run (its seeded
 * generator, the batch being sent, the failure that replays it) and the logger that keeps
 * what the core complains about.
 */
import type { XsLogger } from "../xenstore/daemon.ts";
import { FuzzFailure, type FuzzStats } from "./check.ts";
import { makeBatch } from "./gen.ts";
import { hex } from "./mutate.ts";
import { Prng } from "./prng.ts";

/** Requests per session: a target then starts a fresh daemon, so the store stays small. */
const SESSION_PACKETS = 5_000;

export interface TargetOptions {
  readonly seed: number;
  /** Requests to deliver (framed packets), at least. */
  readonly count: number;
  readonly corpus: readonly Uint8Array[];
  readonly stats: FuzzStats;
  /** Instead of generated batches: these bytes, once, on a dom0 connection. */
  readonly replay?: Uint8Array;
}

/** One target's run: its generator, its counters, the batch being sent, its failure. */
export class FuzzRun {
  readonly rng: Prng;
  readonly stats: FuzzStats;
  readonly #target: string;
  readonly #o: TargetOptions;
  readonly #t0 = performance.now();
  #reqId = 1;
  #sessionStart: number;
  /** The batch being sent, counted from 1. */
  batchNo = 0;
  /** Its bytes: what a failure prints to replay it. */
  current: Uint8Array = new Uint8Array(0);

  /** `salt` keeps the targets' generators apart for the same seed. */
  constructor(target: string, o: TargetOptions, salt: number) {
    this.#target = target;
    this.#o = o;
    this.rng = new Prng(o.seed ^ salt);
    this.stats = o.stats;
    this.#sessionStart = o.stats.packets;
  }

  /** True once every SESSION_PACKETS requests: time for a fresh session. */
  sessionDue(): boolean {
    if (this.stats.packets - this.#sessionStart < SESSION_PACKETS) return false;
    this.#sessionStart = this.stats.packets;
    return true;
  }

  /** Throws the FuzzFailure that names this target, seed and batch. */
  readonly fail = (msg: string): never => {
    throw new FuzzFailure(this.#target, this.#o.seed, this.batchNo, hex(this.current), msg);
  };

  /**
   * The next batch for a connection whose open transactions are `ownTx` (other connections':
   * `otherTx`), counted, and current from now on.
   */
  batch(ownTx: readonly number[], otherTx: readonly number[], pathMax: number, maxItems: number): Uint8Array {
    const batch = makeBatch({
      rng: this.rng,
      corpus: this.#o.corpus,
      ownTx,
      otherTx,
      pathMax,
      stats: this.stats,
      maxItems,
      reqId: this.#reqId,
    });
    this.#reqId += batch.items;
    this.current = batch.bytes;
    this.stats.batches++;
    this.stats.bytes += batch.bytes.byteLength;
    return batch.bytes;
  }

  /** Adds the run's time to the counters. */
  finish(): void {
    this.stats.seconds += (performance.now() - this.#t0) / 1000;
  }
}

/**
 * Logs nothing and keeps the errors the core logs that `counts` selects (CONTROL check's
 * findings among them), for the target to fail on.
 */
export class ProblemLog implements XsLogger {
  readonly errors: string[] = [];
  readonly #counts: (msg: string) => boolean;

  constructor(counts: (msg: string) => boolean = () => true) {
    this.#counts = counts;
  }

  info(): void {}
  warn(): void {}
  debug(): void {}
  error(obj: object, msg: string): void {
    if (this.#counts(msg)) this.errors.push(`${msg} ${JSON.stringify(obj)}`);
  }
}
