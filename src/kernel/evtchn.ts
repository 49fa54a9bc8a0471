/**
 * Event channels, the guest side: what runs in the thread of one vCPU of a domain (its worker, or
 * for dom0's vCPU 1 the host's main thread). It sends on the domain's ports without the hypervisor,
 * masks and unmasks them, and runs Xen's upcall for its vCPU, which calls the handler bound to each
 * pending port that notifies this vCPU.
 *
 * Sending (EVTCHNOP_send's work, done in the sender's thread): read the port's entry in the
 * domain's own port table (written only by the hypervisor); interdomain → set the peer port's
 * pending bit in the peer's event memory with Xen's set-pending algorithm, which kicks the peer
 * only if the bit, then the selector bit, were clear and the port is unmasked; IPI → the same on our
 * own memory; unbound → dropped; anything else → -EINVAL. The peer's event memory arrives on the
 * boot record's MessagePort; the hypervisor posts it before it writes the port entry, so when the
 * entry is seen the message is queued and receiveMessageOnPort takes it synchronously.
 *
 * Upcall of vCPU v (Linux's 2-level `xen_evtchn_handle_events` on CPU v):
 *
 *   do {
 *     vcpu_info[v].upcall_pending = 0             // first: a later set-pending re-raises it
 *     sel = xchg(vcpu_info[v].pending_sel, 0)
 *     for each bit w of sel:
 *       for each port p in pending[w] & ~mask[w] with notify_vcpu[p] == v:
 *         if test-and-clear pending[p]:           // before the handler: an event sent while it runs
 *           handler(p)                            //   sets the bit again and is not lost
 *   } while (vcpu_info[v].upcall_pending)
 *
 * Ports of other vCPUs are left pending for them, as Linux's per-CPU `cpu_evtchn_mask` leaves
 * them; here the filter is the port's vCPU byte the hypervisor keeps in the event memory. The
 * test-and-clear makes one handler run when the old and the new vCPU of a port being moved by
 * EVTCHNOP_bind_vcpu both look at it.
 *
 * Worked example: port 5 masked, peer sends → pending[5] = 1, no selector bit, no kick. unmask(5)
 * → mask cleared, pending seen, selector bit 0 newly set → upcall_pending = 1 + kick; the next
 * block() or async-loop turn runs handler(5). Had the peer sent twice while masked, the handler runs
 * once (events are edges that coalesce, as in Xen).
 *
 * unmask() is done locally, for any port of the domain: the same algorithm as the hypervisor's
 * EVTCHNOP_unmask, on our own event memory, raising the selector of the port's vCPU and kicking that
 * vCPU, whichever thread it runs in. (Linux unmasks locally only on the port's own CPU and asks Xen
 * otherwise, because it cannot send an IPI from there; the kick here is an Atomics.notify that any
 * thread may do.) `evtchn_upcall_mask` is laid out but not consulted: a vCPU takes upcalls only in
 * block() and the async loop, its delivery points.
 *
 * Waiting, two ways (Node 20's limits, measured in docs/platform.md):
 * - block(timeoutMs), like SCHEDOP_block: Atomics.wait on the wake word, then the upcall. The
 *   cheapest wake-up (waitAsync and postMessage add 7–16 µs of event-loop work to each); the
 *   thread does nothing else meanwhile.
 * - start()/stop(): an async loop on Atomics.waitAsync for event-driven code. A pending waitAsync
 *   does not keep a Node event loop alive, so start() holds a ref'd timer until stop().
 *
 * Halt polling (the async loop only, `haltPollUs` > 0): before it sleeps, the loop polls for an
 * upcall for a while, yielding to the event loop between looks (setImmediate), so promises,
 * timers, file I/O and messages go on while it polls. An event that comes during the poll is
 * taken with no sleep and no wake-up: on a 2-vCPU KVM guest a wake-up costs the sleeper 10–90 µs
 * (the slow end when its vCPU had gone idle) and its waker as much (docs/platform.md), more than
 * a blkif or XenStore request costs to serve. The window adapts as KVM's halt_poll_ns does
 * (virt/kvm/kvm_main.c, with its defaults): it starts at 0; a halt that ended within
 * `haltPollUs` but after the window grows it (×2, at least 10 µs, at most `haltPollUs`); a halt
 * longer than `haltPollUs` shrinks it (÷2, to 0 below 10 µs). So a busy domain polls and an idle
 * one sleeps at once, costing one window's CPU per idle period.
 *
 * Giving way on a contended core. Polling pays only while the poller and its peer each have a
 * core; when another runnable thread wants the core (a busy neighbour, or the very peer the poll
 * waits for, on a 2-vCPU machine), a poll holds that thread off for a scheduler slice (ms) and
 * every request waits for it: `bench blk --busy 1` fell to a tenth of node:fs. Two guards:
 * - The host's poll governor (src/host/poll-governor.ts) sets the limit of polling threads
 *   (`pollers`) to 0 while every core of the machine is wanted by a thread with work.
 * - A poll sees it lose its core itself: two looks, normally microseconds apart, are more than
 *   CONTENDED_GAP_US apart (the kernel's steal, seen from inside). Such a poll ends and the halt
 *   sleeps; the vCPU then does not poll for a back-off (10 ms, doubling while polls keep losing
 *   their core, up to 1 s; a poll that keeps its core resets it).
 * Without polling, dom0's halt sleeps in waitAsync at once. A guest's (UpcallOptions.doze) first
 * dozes while it is busy (its dozing window, adapted as the polling window is, above 0): once its
 * event loop has run what it holds (one setImmediate), one blocking Atomics.wait on the wake word
 * of at most DOZE_MS. A blocked thread leaves its core to whoever wants it, and the kick that ends
 * it is a futex wake, cheaper for both ends than a waitAsync's. What it costs: while a guest
 * dozes its timers wait (at most DOZE_MS, once its events stop); the host's messages do not, the
 * hypervisor nudges the wake word as it posts one. Not dom0: its loop serves sockets and files.
 * `bench evtchn --busy 1`, async: 43.6–53.0k round trips a second against 40.2–45.4k in waitAsync
 * (eight alternated pairs, docs/speed.md). A quick doze skips the loop's turn when the loop turned
 * less than QUICK_TURN_MS ago: it lets the microtasks the handlers began run (QUICK_FLUSH_TICKS
 * ticks), then waits. Beside a busy thread, a turn of the loop before each wait halves a blocking
 * ping-pong's rate (docs/platform.md §1); quick dozes took `bench evtchn --busy 1` async from
 * 0.44–0.56 to 0.60–0.73 (five alternated pairs). Work that needs the loop (a timer, a longer
 * promise chain, a setImmediate) still gets it: the loop turns at least every QUICK_TURN_MS while
 * events keep coming, and a quick doze that held such work up (it timed out, and the loop's turn
 * after it had work at once) stops quick dozes for QUICK_BACKOFF_MS.
 * Earlier tries: the whole window in one blocking wait before the loop had turned (sequential blk
 * fell to 0.14 against 0.33, the loop's own work held up), and 100 µs slices (half of waitAsync's
 * rate: beside a busy thread a wait with a timeout under ~3 ms is woken slowly, docs/platform.md §1).
 *
 * Worked example (haltPollUs 1000): window 1000 µs; a look at t and the next at t + 3 ms → the
 * poll ends, contended + 1, no polling until t + 13 ms; the first poll after that which keeps its
 * core resets the back-off to 10 ms; one that loses it again backs off 20 ms.
 */
import { type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import { POLLERS } from "../xen/domain-boot.ts";
import {
  type DomainEventsBoot,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHN_LAYOUT,
  EVTCHN_MAX_VCPUS,
  EVTCHNSTAT,
  type EventMemory,
  eventMemory,
  nudgedSince,
  type PeerEvents,
  type PortEntry,
  portVcpu,
  readPortEntry,
  setPending,
  testBit,
  unmaskPort,
  W_MASK,
  W_PENDING,
  W_SEL,
  W_VCPU_STRIDE,
  W_WAKE,
  XEN_ERRNO,
} from "../xen/evtchn-abi.ts";

export type EventHandler = (port: number) => void;

/** A vCPU's event-channel boot record, as the guest sees it (`DomainEventsBoot`). */
export type GuestEventsBoot = DomainEventsBoot;

export interface UpcallOptions {
  /**
   * Called with a handler's exception; the upcall goes on with the other ports. Without it, the
   * upcall finishes its pass and then throws the first exception (in the async loop: stop() and
   * the loop's promise reject).
   */
  onError?: (err: unknown, port: number) => void;
  /** Longest halt-polling window of the async loop, µs (see the module comment); 0, the default, never polls. */
  haltPollUs?: number;
  /**
   * The host's words POLLERS (xen/domain-boot.ts), shared by every vCPU: the threads polling now
   * and how many may poll now. A vCPU that would be one too many does not poll (polling threads
   * beyond the free cores only take time from the threads with work). Without it, no limit.
   */
  pollers?: Int32Array;
  /**
   * Two looks of a poll this far apart, µs, end it as contended (default CONTENDED_GAP_US;
   * Infinity: never). Tests of the window alone turn it off on a loaded machine.
   */
  contendedGapUs?: number;
  /**
   * Doze when polling is not allowed (see the module comment): a guest's vCPU, whose event loop
   * has no I/O of its own and whose host wakes it when it posts a message (`nudge`). Not dom0's:
   * its loop serves sockets and files that a blocking wait would hold up. Default false.
   */
  doze?: boolean;
}

/** KVM's halt_poll_ns_grow_start (10 µs), halt_poll_ns_grow and halt_poll_ns_shrink (2). */
const POLL_GROW_START_US = 10;
const POLL_GROW = 2;
const POLL_SHRINK = 2;
/** Two looks of a poll this far apart: the thread lost its core in between (see above). */
export const CONTENDED_GAP_US = 500;
/** The first back-off from polling after a contended poll, and the longest, ms. */
const BACKOFF_START_MS = 10;
const BACKOFF_MAX_MS = 1000;
/**
 * A doze's blocking wait, ms: at most this long the vCPU's event loop waits with it. Not shorter:
 * beside a busy thread, an `Atomics.wait` with a timeout of 1 ms was woken at half the rate of an
 * untimed one, 2 ms at two thirds, 5 ms and more at the same (a two-worker ping-pong, 2026-12-04;
 * docs/platform.md §1), so a doze in short slices lost to waitAsync.
 */
export const DOZE_MS = 5;
/**
 * A quick doze (see #dozeHalt): the event loop has turned within this long, ms, so the doze may
 * skip the turn; at least once this often a dozing vCPU's loop still turns while events keep it busy.
 */
const QUICK_TURN_MS = 1;
/** The microtask ticks a quick doze lets run before it waits (promise chains its handlers began). */
const QUICK_FLUSH_TICKS = 16;
/** No quick dozes for this long, ms, after one that timed out (work may have waited for the loop). */
const QUICK_BACKOFF_MS = 1000;

/** Counters of the async loop's halts (each time it found no upcall due). */
export interface HaltStats {
  /** Halts that ended during the poll: no sleep. */
  polled: number;
  /** Halts that slept in Atomics.waitAsync. */
  slept: number;
  /** Halts that did not poll because the host's limit of polling threads was reached. */
  crowded: number;
  /** Polls that ended because the thread lost its core (two looks CONTENDED_GAP_US apart). */
  contended: number;
  /** Halts that ended in a doze (a blocking wait, when polling was not allowed; guests only). */
  dozed: number;
  /** Of those, the dozes that skipped the event loop's turn (it had turned within QUICK_TURN_MS). */
  quick: number;
  /** The current polling window, µs. */
  windowUs: number;
}

interface WaitAsyncResult {
  async: boolean;
  value: Promise<"ok" | "timed-out"> | "not-equal" | "timed-out";
}
type WaitAsync = (a: Int32Array, index: number, value: number, timeout?: number) => WaitAsyncResult;
// ES2024 (Node ≥ 16); absent from the ES2023 lib this project compiles against.
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

function noop(): void {}

/** How a poll ended: an upcall due, the window passed, the thread lost its core, or no room to poll. */
type PollEnd = "event" | "window" | "contended" | "crowded";

export class EventChannelUpcall {
  readonly domid: number;
  /** The vCPU whose upcall this runs. */
  readonly vcpu: number;
  readonly #mem: EventMemory;
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  /** This vCPU's `upcall_pending` byte, `pending_sel` int32 word and wake word. */
  readonly #upcallByte: number;
  readonly #selWord: number;
  readonly #wakeWord: number;
  readonly #table: Int32Array;
  readonly #peerPort: MessagePort;
  readonly #peers = new Map<number, EventMemory>();
  readonly #handlers = new Map<number, EventHandler>();
  readonly #onError: ((err: unknown, port: number) => void) | undefined;
  readonly #entry: PortEntry = { state: 0, remoteDom: 0, remotePort: 0, remoteSerial: 0 };
  #running = false;
  /** Incremented by each start(), so that a loop that outlives stop() never runs again. */
  #generation = 0;
  #keepAlive: ReturnType<typeof setInterval> | undefined;
  #loop: Promise<void> | undefined;
  readonly #pollMaxUs: number;
  readonly #pollers: Int32Array | undefined;
  readonly #gapMs: number;
  #pollUs = 0;
  readonly #doze: boolean;
  /** Dozing's window, µs: adapted as the polling window is; the vCPU dozes while it is above 0. */
  #dozeUs = 0;
  readonly #halts: Omit<HaltStats, "windowUs"> = {
    polled: 0,
    slept: 0,
    crowded: 0,
    contended: 0,
    dozed: 0,
    quick: 0,
  };
  /** No polling before this performance.now() (ms): backing off after a contended poll. */
  #quietUntil = 0;
  /** No polling before this performance.now() (ms): a driver asked so (holdPolling). */
  #holdUntil = 0;
  #backoffMs = BACKOFF_START_MS;
  /** performance.now() (ms) when the loop was last seen to turn (a doze's setImmediate, a waitAsync). */
  #turnAt = 0;
  /** The wake word as read before the loop's last noted turn: a nudge after it is a message not taken yet. */
  #wakeAtTurn = 0;
  /** No quick dozes before this performance.now() (ms). */
  #quickOffUntil = 0;
  /** performance.now() (ms) when the last quick doze timed out, until the halt after it ends; else 0. */
  #quickTimedOutAt = 0;

  constructor(boot: GuestEventsBoot, opts: UpcallOptions = {}) {
    const v = boot.vcpu;
    if (!Number.isInteger(v) || v < 0 || v >= EVTCHN_MAX_VCPUS) {
      throw new RangeError(`vCPU ${v} is out of range: 0 to ${EVTCHN_MAX_VCPUS - 1}`);
    }
    this.domid = boot.domid;
    this.vcpu = v;
    this.#upcallByte = EVTCHN_LAYOUT.vcpuInfo * v + EVTCHN_LAYOUT.upcallPending;
    this.#selWord = W_SEL + W_VCPU_STRIDE * v;
    this.#wakeWord = W_WAKE + v;
    this.#mem = eventMemory(boot.events);
    this.#words = this.#mem.words;
    this.#bytes = this.#mem.bytes;
    this.#table = new Int32Array(boot.ports);
    this.#peerPort = boot.peers;
    this.#peers.set(boot.serial, this.#mem);
    this.#onError = opts.onError;
    const poll = opts.haltPollUs ?? 0;
    if (!(Number.isFinite(poll) && poll >= 0))
      throw new RangeError(`haltPollUs ${poll} is not a number of µs >= 0`);
    this.#pollMaxUs = poll;
    this.#pollers = opts.pollers;
    this.#gapMs = (opts.contendedGapUs ?? CONTENDED_GAP_US) / 1000;
    this.#doze = opts.doze === true;
  }

  /** The async loop's halts so far, and its polling window now. */
  get halts(): HaltStats {
    return { ...this.#halts, windowUs: this.#pollUs };
  }

  /**
   * Whether the host's vCPUs may halt-poll now: polling is on (haltPollUs > 0), the host's limit of
   * polling threads is above 0, and this vCPU is not backing off from a contended poll. A backend
   * uses it to guess whether its frontend polls (blkif-back.ts).
   */
  get pollingAllowed(): boolean {
    const p = this.#pollers;
    return (
      this.#pollMaxUs > 0 &&
      (p === undefined || Atomics.load(p, POLLERS.limit) > 0) &&
      performance.now() >= this.#quietUntil
    );
  }

  /**
   * No halt-polling on this vCPU for the next `ms` ms: its halts sleep at once. For a driver that
   * has just handed work to another process on the same machine (netback writing a frame to
   * passt): the answer needs a core, and a poll would hold one. Not part of pollingAllowed (it
   * says nothing about the host).
   */
  holdPolling(ms: number): void {
    const until = performance.now() + ms;
    if (until > this.#holdUntil) this.#holdUntil = until;
  }

  /** Run `handler(port)` for each event on `port` (replacing any earlier handler). */
  bind(port: number, handler: EventHandler): void {
    checkPort(port);
    this.#handlers.set(port, handler);
  }

  unbind(port: number): void {
    this.#handlers.delete(port);
  }

  /**
   * EVTCHNOP_send from this domain, without the hypervisor. 0 on success (also when the port is
   * unbound: the event is dropped), -EINVAL for a port that is free, out of range or not sendable.
   */
  send(port: number): number {
    if (!(port >= 0 && port < EVTCHN_2L_NR_CHANNELS)) return -XEN_ERRNO.EINVAL;
    const e = readPortEntry(this.#table, port | 0, this.#entry);
    switch (e.state) {
      case EVTCHNSTAT.interdomain:
        setPending(this.#peer(e.remoteSerial), e.remotePort);
        return 0;
      case EVTCHNSTAT.ipi:
        setPending(this.#mem, port);
        return 0;
      case EVTCHNSTAT.unbound:
        return 0;
      default:
        return -XEN_ERRNO.EINVAL;
    }
  }

  /** Mask `port`: its events stay pending and are not delivered until unmask(). */
  mask(port: number): void {
    checkPort(port);
    Atomics.or(this.#words, W_MASK + (port >>> 5), 1 << (port & 31));
  }

  /**
   * Unmask `port` locally with Xen's algorithm; an event that came while masked is delivered to the
   * port's vCPU, this one or another.
   */
  unmask(port: number): void {
    checkPort(port);
    unmaskPort(this.#mem, port);
  }

  isPending(port: number): boolean {
    checkPort(port);
    return testBit(this.#mem, W_PENDING, port);
  }

  isMasked(port: number): boolean {
    checkPort(port);
    return testBit(this.#mem, W_MASK, port);
  }

  /** Whether an upcall is due on this vCPU (its `evtchn_upcall_pending`). */
  get upcallPending(): boolean {
    return Atomics.load(this.#bytes, this.#upcallByte) !== 0;
  }

  /**
   * Run this vCPU's upcall now (see the module comment) and return how many events were handled.
   * A port with no handler has its event consumed and ignored, as a spurious one; a port of another
   * vCPU is left alone.
   */
  upcall(): number {
    const mem = this.#mem;
    const words = this.#words;
    const bytes = this.#bytes;
    const up = this.#upcallByte;
    const vcpu = this.vcpu;
    let handled = 0;
    let failed = false;
    let failure: unknown;
    while (Atomics.load(bytes, up) !== 0) {
      Atomics.store(bytes, up, 0);
      for (let half = 0; half < 2; half++) {
        let sel = Atomics.exchange(words, this.#selWord + half, 0);
        while (sel !== 0) {
          const sb = 31 - Math.clz32(sel & -sel);
          sel &= sel - 1;
          // u64 word w of the bitmaps = int32 words 2w (ports 64w…64w+31) and 2w+1.
          const w = half * 32 + sb;
          for (let k = 2 * w; k <= 2 * w + 1; k++) {
            let bits = Atomics.load(words, W_PENDING + k) & ~Atomics.load(words, W_MASK + k);
            while (bits !== 0) {
              const b = 31 - Math.clz32(bits & -bits);
              bits &= bits - 1;
              const port = k * 32 + b;
              if (portVcpu(mem, port) !== vcpu) continue;
              // Test-and-clear: another vCPU may have taken it (a port moved by bind_vcpu).
              if (!(Atomics.and(words, W_PENDING + k, ~(1 << b)) & (1 << b))) continue;
              handled++;
              const h = this.#handlers.get(port);
              if (h === undefined) continue;
              try {
                h(port);
              } catch (err) {
                if (this.#onError !== undefined) this.#onError(err, port);
                else if (!failed) {
                  failed = true;
                  failure = err;
                }
              }
            }
          }
        }
      }
    }
    if (failed) throw failure;
    return handled;
  }

  /**
   * Sleep until an event is due (SCHEDOP_block), run the upcall, and return the number of events
   * handled; 0 only when `timeoutMs` passed first. A kick that finds nothing to handle (its event
   * was already taken by an earlier upcall, between the sender's setting of upcall_pending and its
   * bump of the wake word) sends it back to sleep for the rest of the time.
   */
  block(timeoutMs = Number.POSITIVE_INFINITY): number {
    const words = this.#words;
    const finite = timeoutMs !== Number.POSITIVE_INFINITY;
    const t0 = finite ? performance.now() : 0;
    let left = timeoutMs;
    for (;;) {
      const seen = Atomics.load(words, this.#wakeWord);
      if (
        Atomics.load(this.#bytes, this.#upcallByte) === 0 &&
        Atomics.wait(words, this.#wakeWord, seen, left) === "timed-out"
      ) {
        return this.upcall();
      }
      const n = this.upcall();
      if (n > 0 || left <= 0) return n;
      // Spurious: sleep again for what is left of the timeout.
      if (finite) left = timeoutMs - (performance.now() - t0);
    }
  }

  /**
   * Start the async loop: wait with Atomics.waitAsync and run the upcall on each kick. Returns the
   * loop, which resolves after stop() and rejects with a handler's exception when there is no
   * onError (left unhandled, that ends the worker, as an oops would end the guest).
   */
  start(): Promise<void> {
    if (this.#running && this.#loop !== undefined) return this.#loop;
    this.#running = true;
    // A pending waitAsync alone does not keep the worker's event loop alive: hold a ref'd timer.
    this.#keepAlive = setInterval(noop, 0x7fffffff);
    this.#loop = this.#run(++this.#generation);
    return this.#loop;
  }

  /** Stop the async loop; resolves when it has ended (its errors go to start()'s promise). */
  async stop(): Promise<void> {
    const loop = this.#loop;
    if (loop === undefined) return;
    this.#loop = undefined;
    if (this.#running) {
      this.#running = false;
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
      // Wake our own wait so that the loop sees #running and ends now.
      Atomics.add(this.#words, this.#wakeWord, 1);
      Atomics.notify(this.#words, this.#wakeWord);
    }
    await loop.catch(noop);
  }

  /** The async loop; on a handler's uncaught error it drops its keep-alive and ends. */
  async #run(generation: number): Promise<void> {
    const live = (): boolean => this.#running && this.#generation === generation;
    // The host's count of awake domain threads (POLLERS.awake): this one, but while it sleeps.
    const awake = this.#pollers;
    if (awake !== undefined) Atomics.add(awake, POLLERS.awake, 1);
    try {
      while (live()) {
        if (Atomics.load(this.#bytes, this.#upcallByte) === 0) {
          const t0 = performance.now();
          const held = t0 < this.#holdUntil;
          // The host's limit is read first without a promise hop: beside a busy neighbour it is 0
          // and every halt would pay one (bench evtchn --busy 1 async 0.59–0.73 with this read,
          // 0.52–0.63 without, five alternated pairs).
          const poll =
            this.#pollUs > 0 && t0 >= this.#quietUntil && !held
              ? this.#limitReached()
                ? "crowded"
                : await this.#pollHalt(t0, live)
              : "none";
          if (poll === "event") {
            this.#halts.polled++;
          } else if (
            this.#doze &&
            poll !== "window" &&
            !held &&
            this.#dozeUs > 0 &&
            (await this.#dozeHalt(live))
          ) {
            this.#halts.dozed++;
          } else {
            // The sleep itself, inline: this is the path of every halt without polling, and
            // each async call on it costs the round trip a promise hop.
            const seen = Atomics.load(this.#words, this.#wakeWord);
            if (live() && Atomics.load(this.#bytes, this.#upcallByte) === 0) {
              const r = waitAsync(this.#words, this.#wakeWord, seen);
              if (r.async) {
                if (awake === undefined) await r.value;
                else {
                  Atomics.sub(awake, POLLERS.awake, 1);
                  try {
                    await r.value;
                  } finally {
                    Atomics.add(awake, POLLERS.awake, 1);
                  }
                }
                this.#turnAt = performance.now();
                this.#wakeAtTurn = seen;
                // A quick doze timed out and the loop's turn then had work within the millisecond:
                // the doze held it up (see #quickDoze). A guest that was idle does not back off.
                if (this.#quickTimedOutAt > 0 && this.#turnAt - this.#quickTimedOutAt < QUICK_TURN_MS)
                  this.#quickOffUntil = this.#turnAt + QUICK_BACKOFF_MS;
              }
              this.#quickTimedOutAt = 0;
              this.#halts.slept++;
            }
          }
          if (!live()) return;
          if (this.#pollMaxUs > 0) {
            const haltUs = (performance.now() - t0) * 1000;
            this.#pollUs = nextPollWindow(this.#pollUs, haltUs, this.#pollMaxUs);
            if (this.#doze) this.#dozeUs = nextPollWindow(this.#dozeUs, haltUs, this.#pollMaxUs);
          }
        }
        this.upcall();
      }
    } catch (err) {
      if (live()) {
        this.#running = false;
        clearInterval(this.#keepAlive);
        this.#keepAlive = undefined;
      }
      throw err;
    } finally {
      if (awake !== undefined) Atomics.sub(awake, POLLERS.awake, 1);
    }
  }

  /**
   * A halt's poll, from `t0`, for the current window: "event" when it caught an upcall (no sleep);
   * "window" when the window passed, "crowded" when the host's limit was reached, "contended" when
   * the thread lost its core (then the vCPU backs off from polling, see the module comment).
   */
  async #pollHalt(t0: number, live: () => boolean): Promise<PollEnd> {
    const r = await this.#pollLimited(t0 + this.#pollUs / 1000, live);
    if (r === "event" || r === "window") this.#backoffMs = BACKOFF_START_MS;
    else if (r === "contended") {
      this.#halts.contended++;
      this.#quietUntil = performance.now() + this.#backoffMs;
      this.#backoffMs = Math.min(BACKOFF_MAX_MS, this.#backoffMs * 2);
    }
    return r;
  }

  /**
   * A halt's doze: once the event loop has run what it holds (one setImmediate), one blocking wait
   * on the wake word of at most DOZE_MS. True when an upcall is due after it (or the loop was
   * stopped); false when it timed out or the host nudged the vCPU for a message, and the halt then
   * sleeps in waitAsync, the loop free. The host's count of awake domain threads leaves this one
   * out while it waits.
   */
  #dozeHalt(live: () => boolean): Promise<boolean> {
    const words = this.#words;
    const bytes = this.#bytes;
    const wake = this.#wakeWord;
    const at = this.#upcallByte;
    const now = performance.now();
    if (
      now - this.#turnAt < QUICK_TURN_MS &&
      now >= this.#quickOffUntil &&
      !nudgedSince(this.#wakeAtTurn, Atomics.load(words, wake))
    )
      return this.#quickDoze(live);
    return new Promise((resolve) => {
      this.#turn(() => {
        const seen = Atomics.load(words, wake);
        if (Atomics.load(bytes, at) !== 0 || !live()) return resolve(true);
        this.#dozeWait(seen);
        const due = (): void => resolve(Atomics.load(bytes, at) !== 0 || !live());
        // A message the host posted meanwhile goes before the events that came with it.
        if (nudgedSince(seen, Atomics.load(words, wake))) this.#turn(due);
        else due();
      });
    });
  }

  /**
   * A doze's blocking wait on the wake word while it still reads `seen`, at most DOZE_MS; the
   * host's count of awake domain threads leaves this one out meanwhile.
   */
  #dozeWait(seen: number): "ok" | "not-equal" | "timed-out" {
    const awake = this.#pollers;
    if (awake !== undefined) Atomics.sub(awake, POLLERS.awake, 1);
    const r = Atomics.wait(this.#words, this.#wakeWord, seen, DOZE_MS);
    if (awake !== undefined) Atomics.add(awake, POLLERS.awake, 1);
    return r;
  }

  /**
   * Runs `fn` after one turn of the event loop (setImmediate), which takes the host's messages
   * posted before now; notes the turn (#turnAt) and the wake word read before it (#wakeAtTurn).
   */
  #turn(fn: () => void): void {
    const before = Atomics.load(this.#words, this.#wakeWord);
    setImmediate(() => {
      this.#turnAt = performance.now();
      this.#wakeAtTurn = before;
      fn();
    });
  }

  /**
   * A doze without the loop's turn, when it turned less than QUICK_TURN_MS ago: the microtasks the
   * handlers began run first (QUICK_FLUSH_TICKS ticks), then the same blocking wait. A wait that
   * times out either found the guest idle or held up work that needed the loop (a longer promise
   * chain, a timer); the halt then sleeps in waitAsync, and when that sleep ends within
   * QUICK_TURN_MS (the loop's turn had work) quick dozes stop for QUICK_BACKOFF_MS. Same result as
   * #dozeHalt.
   */
  async #quickDoze(live: () => boolean): Promise<boolean> {
    for (let i = 0; i < QUICK_FLUSH_TICKS; i++) await undefined;
    const bytes = this.#bytes;
    const at = this.#upcallByte;
    const seen = Atomics.load(this.#words, this.#wakeWord);
    if (Atomics.load(bytes, at) === 0 && live() && this.#dozeWait(seen) === "timed-out")
      this.#quickTimedOutAt = performance.now();
    // A message the host posted meanwhile goes before the events that came with it.
    if (nudgedSince(seen, Atomics.load(this.#words, this.#wakeWord)))
      await new Promise<void>((resolve) => this.#turn(resolve));
    const due = Atomics.load(bytes, at) !== 0 || !live();
    if (due) this.#halts.quick++;
    return due;
  }

  /** Whether the host's limit of polling threads is reached now (counted as a crowded halt). */
  #limitReached(): boolean {
    const p = this.#pollers;
    if (p === undefined || Atomics.load(p, POLLERS.polling) < Atomics.load(p, POLLERS.limit)) return false;
    this.#halts.crowded++;
    return true;
  }

  /** #poll, if fewer than the limit of threads are polling; else "crowded" at once. */
  async #pollLimited(deadline: number, live: () => boolean): Promise<PollEnd> {
    const p = this.#pollers;
    if (p === undefined) return this.#poll(deadline, live);
    if (Atomics.add(p, POLLERS.polling, 1) >= Atomics.load(p, POLLERS.limit)) {
      Atomics.sub(p, POLLERS.polling, 1);
      this.#halts.crowded++;
      return "crowded";
    }
    try {
      return await this.#poll(deadline, live);
    } finally {
      Atomics.sub(p, POLLERS.polling, 1);
    }
  }

  /**
   * Polls for an upcall until `deadline` (performance.now() ms), one look per event-loop turn:
   * "event" when one is due (or the loop was stopped), "window" when the window passed,
   * "contended" when two looks were CONTENDED_GAP_US apart (the thread lost its core).
   */
  #poll(deadline: number, live: () => boolean): Promise<PollEnd> {
    const words = this.#bytes;
    const at = this.#upcallByte;
    const gapMs = this.#gapMs;
    let last = performance.now();
    return new Promise((resolve) => {
      const look = (): void => {
        const now = performance.now();
        if (Atomics.load(words, at) !== 0 || !live()) resolve("event");
        else if (now - last > gapMs) resolve("contended");
        else if (now >= deadline) resolve("window");
        else {
          last = now;
          setImmediate(look);
        }
      };
      setImmediate(look);
    });
  }

  /** The event memory of the peer incarnation `serial`, taking hand-offs from the port if new. */
  #peer(serial: number): EventMemory {
    const known = this.#peers.get(serial);
    if (known !== undefined) return known;
    for (;;) {
      const m = receiveMessageOnPort(this.#peerPort);
      if (m === undefined) {
        throw new Error(
          `Cannot send: no event memory for peer serial ${serial}; the hypervisor posts it first`,
        );
      }
      const p = m.message as PeerEvents;
      const mem = eventMemory(p.events);
      this.#peers.set(p.serial, mem);
      if (p.serial === serial) return mem;
    }
  }
}

/**
 * KVM's update of a vCPU's halt_poll_ns after a halt (kvm_vcpu_halt's grow/shrink), in µs: the
 * window `cur` after a halt of `haltUs` (poll and sleep together) with the longest window `max`.
 * Unchanged when the poll caught it; shrunk when the halt outlasted `max` (polling could not have
 * helped); grown when a longer window would have caught it.
 */
export function nextPollWindow(cur: number, haltUs: number, max: number): number {
  if (haltUs <= cur) return cur;
  if (cur > 0 && haltUs > max) {
    const next = cur / POLL_SHRINK;
    return next < POLL_GROW_START_US ? 0 : next;
  }
  if (cur < max && haltUs < max) return Math.min(max, Math.max(POLL_GROW_START_US, cur * POLL_GROW));
  return cur;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port >= EVTCHN_2L_NR_CHANNELS) {
    throw new RangeError(`Port ${port} is out of range: 0 to ${EVTCHN_2L_NR_CHANNELS - 1}`);
  }
}
