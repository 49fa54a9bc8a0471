/**
 * Measurements a guest (or any holder of a NetStack) makes of its network, for `xenlab bench net`
 * and the inet module's host calls: a TCP send of N bytes to a sink that answers when it has them
 * all, and UDP echo round trips. The same code runs in the guest and in the bench's baseline; the
 * round trips come in two waits: on the event loop (udpRtt, for a thread that also serves other
 * work, as the bench's own thread does) or blocking the caller's thread between a send and its
 * answer (udpRttBlocking, as a guest process in a blocking recvfrom() sleeps in its kernel).
 */
import type { NetStack } from "./stack.ts";
import type { Ip4 } from "./wire.ts";

/** Sends `bytes` over a new TCP connection; resolves with ms from connect to the sink's answer. */
export async function tcpSend(
  stack: NetStack,
  dst: Ip4,
  port: number,
  bytes: number,
  timeoutMs = 60_000,
): Promise<number> {
  const t0 = performance.now();
  const { conn } = await stack.tcpConnect(dst, port);
  const answered = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no answer from the sink after ${timeoutMs} ms`)),
      timeoutMs,
    );
    conn.onData = () => {
      clearTimeout(timer);
      resolve();
    };
    void conn.closed.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  for (let left = bytes; left > 0; left -= chunk.length) {
    conn.write(left >= chunk.length ? chunk : chunk.subarray(0, left));
    // Keep the queue to about a window's worth: write more as it drains.
    while (conn.buffered > 256 * 1024) await new Promise((r) => setTimeout(r, 1));
  }
  await answered;
  const ms = performance.now() - t0;
  conn.abort();
  return ms;
}

/** `count` UDP echo round trips, one after another; each one's µs (a lost one: NaN). */
export async function udpRtt(
  stack: NetStack,
  dst: Ip4,
  port: number,
  count: number,
  size = 64,
): Promise<number[]> {
  const sock = stack.udpBind();
  const data = new Uint8Array(size);
  const out: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      const ok = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 1000);
        sock.onMessage = () => {
          clearTimeout(timer);
          resolve(true);
        };
        sock.send(dst, port, data);
      });
      out.push(ok ? (performance.now() - t0) * 1000 : Number.NaN);
    }
  } finally {
    sock.close();
  }
  return out;
}

/**
 * udpRtt for a caller that owns its thread: between a send and its echo the thread sleeps in
 * `block(ms)` (a domain's SCHEDOP_block: Atomics.wait, then the upcall, which runs the driver and
 * the stack, so the echo arrives inside it). A round trip with no echo within 1 s is NaN.
 */
export function udpRttBlocking(
  stack: NetStack,
  dst: Ip4,
  port: number,
  count: number,
  block: (timeoutMs: number) => void,
  size = 64,
): number[] {
  const sock = stack.udpBind();
  const data = new Uint8Array(size);
  const out: number[] = [];
  let answered = false;
  sock.onMessage = () => {
    answered = true;
  };
  try {
    for (let i = 0; i < count; i++) {
      answered = false;
      const t0 = performance.now();
      sock.send(dst, port, data);
      for (let left = 1000; !answered && left > 0; left = 1000 - (performance.now() - t0)) block(left);
      out.push(answered ? (performance.now() - t0) * 1000 : Number.NaN);
    }
  } finally {
    sock.close();
  }
  return out;
}
