/**
 * Hypercalls: a domain's worker calls into the hypervisor (the main thread) and blocks until
 * the answer comes, as a vCPU does in a real hypercall.
 *
 * One channel per domain: a MessagePort pair for the request and the reply (so a reply can
 * carry a SharedArrayBuffer, e.g. a page mapped by a grant) and a 4-byte control word for
 * the blocking. The worker posts the request, then sleeps in Atomics.wait until the
 * hypervisor sets the word to REPLIED; it then takes the reply synchronously with
 * receiveMessageOnPort. The hypervisor answers from its event loop.
 *
 *   worker:  store(PENDING) ─ post(req) ─ wait(≠PENDING) ─ receive() ─ store(IDLE)
 *   main:    on message ─ handle ─ post(reply) ─ store(REPLIED) ─ notify
 */
import { type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import { errorMessage } from "../lib/errors.ts";

const IDLE = 0;
const PENDING = 1;
const REPLIED = 2;

export interface HypercallRequest {
  readonly op: string;
  readonly args: readonly unknown[];
}

export type HypercallReply = { ok: true; value: unknown } | { ok: false; error: string };

/** What a domain's worker holds: call() blocks until the hypervisor answers. */
export class HypercallClient {
  readonly #port: MessagePort;
  readonly #ctl: Int32Array;

  constructor(port: MessagePort, control: SharedArrayBuffer) {
    this.#port = port;
    this.#ctl = new Int32Array(control);
  }

  call(op: string, ...args: unknown[]): unknown {
    const req: HypercallRequest = { op, args };
    // PENDING before posting: the hypervisor may answer before postMessage returns.
    Atomics.store(this.#ctl, 0, PENDING);
    this.#port.postMessage(req);
    while (Atomics.load(this.#ctl, 0) === PENDING) Atomics.wait(this.#ctl, 0, PENDING, 1000);
    let m = receiveMessageOnPort(this.#port);
    // The reply was posted before the word was set; allow for a delayed queue all the same.
    while (m === undefined) {
      Atomics.wait(this.#ctl, 0, REPLIED, 1);
      m = receiveMessageOnPort(this.#port);
    }
    Atomics.store(this.#ctl, 0, IDLE);
    const reply = m.message as HypercallReply;
    if (!reply.ok) throw new Error(reply.error);
    return reply.value;
  }
}

/** The hypervisor's end of one domain's channel. */
export class HypercallServer {
  readonly #port: MessagePort;
  readonly #ctl: Int32Array;

  constructor(port: MessagePort, control: SharedArrayBuffer, handle: (req: HypercallRequest) => unknown) {
    this.#port = port;
    this.#ctl = new Int32Array(control);
    port.on("message", (req: HypercallRequest) => {
      let value: unknown;
      try {
        value = handle(req);
      } catch (e) {
        this.#reply({ ok: false, error: errorMessage(e) });
        return;
      }
      // A hypercall that blocks the vCPU until the hypervisor decides (SCHEDOP_shutdown suspend).
      if (value instanceof Promise) {
        value.then(
          (v: unknown) => this.#reply({ ok: true, value: v }),
          (e: unknown) => this.#reply({ ok: false, error: errorMessage(e) }),
        );
        return;
      }
      this.#reply({ ok: true, value });
    });
  }

  #reply(reply: HypercallReply): void {
    this.#port.postMessage(reply);
    Atomics.store(this.#ctl, 0, REPLIED);
    Atomics.notify(this.#ctl, 0);
  }

  close(): void {
    this.#port.close();
  }
}

export function newControlWord(): SharedArrayBuffer {
  return new SharedArrayBuffer(4);
}
