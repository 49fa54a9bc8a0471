/**
 * Whether the domains may halt-poll now: the host's side of "halt polling gives way when a core
 * is contended" (the vCPU's side is in src/kernel/evtchn.ts).
 *
 * A poll pays only while the poller has a core nobody else wants. So the host samples, every
 * SAMPLE_MS, the machine's runnable threads (the fourth field of /proc/loadavg, "running/total":
 * every thread running or waiting for a core, ours and everyone else's) and the domain threads
 * awake now (working or polling: the kernels count themselves, POLLERS.awake), and splits them:
 *
 *   others = runnable − awake − 1          (the 1: the sampling thread itself)
 *   demand = median(others) + max(awake)   over the last WINDOW samples (max(awake) at least 1:
 *                                          a domain that wakes up to poll wants a core too)
 *
 * Polling is allowed (one thread per core, as before) while demand ≤ cores: the busy domains
 * could each keep a core, polling between requests, beside what the other threads want; else no
 * domain polls and every halt sleeps at once. `others` is a median so that a thread that runs for
 * an instant (a daemon, a GC helper) does not stop polling, while a busy neighbour, there in every
 * sample, does; `awake` is a maximum, since two domains that pass requests to each other are
 * rarely awake in the same instant once they sleep, but both want a core as soon as they poll.
 *
 * Worked example, 2 cores. A guest streams from dom0: both awake (polling or working), nobody
 * else: demand 0 + 2 = 2 → polling allowed. The same beside one busy neighbour: 1 + 2 = 3 → no
 * polling. The machine loaded by other people's builds: others ≥ 2 → no polling whatever ours do.
 * With polling off beside the neighbour, the guest and dom0 take turns; if no sample catches them
 * awake together for a window, polling comes back and they are (3 > 2) switched off again: the
 * cost is one window of polling now and then.
 *
 * Where /proc/loadavg cannot be read (not Linux), the limit stays one per core.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { Hypervisor } from "../hv/hypervisor.ts";

/** Sampling period, ms, and how many samples the decision looks back over (50 ms). */
export const SAMPLE_MS = 10;
export const WINDOW = 5;

/**
 * Reads the machine's runnable threads now (running or waiting for a core) from /proc/loadavg
 * ("0.52 0.58 0.59 3/210 4567": the 3). The file stays open and is read again at offset 0, and
 * parsed from its bytes: 5 µs of CPU a sample here, against 80 µs for readFileSync and a regex.
 */
export class RunnableThreads {
  #fd: number | undefined;
  readonly #buf = new Uint8Array(128);

  /** The count, or undefined where /proc/loadavg cannot be read (not Linux). */
  read(): number | undefined {
    try {
      this.#fd ??= openSync("/proc/loadavg", "r");
      const b = this.#buf;
      const n = readSync(this.#fd, b, 0, b.length, 0);
      let i = 0;
      for (let spaces = 0; i < n && spaces < 3; i++) if (b[i] === 0x20) spaces++;
      let v = 0;
      let digits = 0;
      for (; i < n && b[i]! >= 0x30 && b[i]! <= 0x39; i++, digits++) v = v * 10 + b[i]! - 0x30;
      return digits > 0 && b[i] === 0x2f ? v : undefined;
    } catch {
      return undefined;
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** What the governor needs of the hypervisor: its count of awake domain threads, the limit. */
export type PollTarget = Pick<Hypervisor, "awakeThreads" | "pollLimit">;

export interface PollGovernorOptions {
  readonly target: PollTarget;
  /** Default availableParallelism(). */
  readonly cores?: number;
  /** Default a RunnableThreads of /proc/loadavg (tests give their own). */
  readonly sample?: () => number | undefined;
}

export class PollGovernor {
  readonly #target: PollTarget;
  readonly #cores: number;
  readonly #sample: () => number | undefined;
  readonly #proc: RunnableThreads | undefined;
  /** The last WINDOW samples of `others` and `awake`, rings. */
  readonly #others: number[] = [];
  readonly #awake: number[] = [];
  #next = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Samples after which polling was off, and all samples taken (for `xenlab bench`). */
  contendedSamples = 0;
  samples = 0;

  constructor(opts: PollGovernorOptions) {
    this.#target = opts.target;
    this.#cores = opts.cores ?? availableParallelism();
    if (opts.sample === undefined) {
      const proc = new RunnableThreads();
      this.#proc = proc;
      this.#sample = () => proc.read();
    } else this.#sample = opts.sample;
  }

  /** Takes one sample and sets the limit (see the module comment). */
  step(): void {
    const runnable = this.#sample();
    if (runnable === undefined) return;
    const awake = this.#target.awakeThreads;
    const others = Math.max(0, runnable - awake - 1);
    this.#others[this.#next] = others;
    this.#awake[this.#next] = awake;
    this.#next = (this.#next + 1) % WINDOW;
    // At least 1: a domain that wakes up to poll wants a core too.
    const demand = median(this.#others) + Math.max(1, ...this.#awake);
    this.samples++;
    if (demand > this.#cores) this.contendedSamples++;
    const limit = demand > this.#cores ? 0 : this.#cores;
    if (this.#target.pollLimit !== limit) this.#target.pollLimit = limit;
  }

  /** Samples every SAMPLE_MS until stop(); the timer does not keep the process alive. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.step(), SAMPLE_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#proc?.close();
    this.#target.pollLimit = this.#cores;
  }
}

/** The median of a short list (the lower middle one of an even count). */
function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1]!;
}
