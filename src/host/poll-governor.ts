/**
 * Whether the domains may halt-poll now: the host's side of "halt polling gives way when a core
 * is contended" (the vCPU's side is in src/kernel/evtchn.ts).
 *
 * A poll pays only while the poller has a core nobody else wants. So the host samples, every
 * SAMPLE_MS, the machine's runnable threads (the fourth field of /proc/loadavg, "running/total":
 * every thread running or waiting for a core, ours and everyone else's) and takes away the
 * threads that are only polling (the hypervisor's count) and itself (the sampling thread):
 *
 *   working = runnable − polling − 1
 *
 * If, in any of the last WINDOW samples, `working` was at least the number of cores, every core
 * was wanted by a thread with work, and a poll would only have held one of them off: the limit of
 * polling threads goes to 0 and every halt sleeps (in a blocking wait for its window first, the
 * cheapest wake-up). Otherwise one thread per core may poll, as before. The maximum over the
 * window is there because a sample sees an instant: a busy neighbour is in every sample, a domain
 * serving a request in some.
 *
 * Worked example, 2 cores. A guest polls while dom0 serves its request: runnable 2 (+1 sampler),
 * polling 1 → working 1 < 2: polling stays allowed. The same beside a busy neighbour: runnable 3
 * (+1), polling 1 → working 2: no polling. With polling off and the neighbour there, the guest
 * and dom0 take turns: working is 1 or 2, and the 2s keep it off; when the neighbour stops,
 * working stays at 1 or below for a window, and polling comes back.
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

/** What the governor needs of the hypervisor: its count of polling threads and their limit. */
export type PollTarget = Pick<Hypervisor, "pollingThreads" | "pollLimit">;

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
  /** The last WINDOW samples of `working`, a ring. */
  readonly #working: number[] = [];
  #next = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Samples that found every core wanted, and all samples taken (for `xenlab bench`). */
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
    const working = Math.max(0, runnable - this.#target.pollingThreads - 1);
    this.samples++;
    if (working >= this.#cores) this.contendedSamples++;
    this.#working[this.#next] = working;
    this.#next = (this.#next + 1) % WINDOW;
    const busiest = Math.max(...this.#working);
    const limit = busiest >= this.#cores ? 0 : this.#cores;
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
