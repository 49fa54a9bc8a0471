/**
 * Measurements a guest (or any holder of a NetStack) makes of its network, for `xenlab bench net`
 * and the inet module's host calls: a TCP send of N bytes to a sink that answers when it has them
 * all, and UDP echo round trips. The same code runs in the guest and in the bench's baseline.
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
