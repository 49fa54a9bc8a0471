/**
 * The well-behaved client the fuzzer runs between bursts of bad input: a fixed script of
 * writes, reads, a directory listing, permissions, a watch and a committed transaction, each
 * reply compared exactly with what C xenstored answers. It talks through an `Exchange`, so the
 * same script runs in process, over a socket and over a guest's ring.
 */

import type { XsPacket } from "../xenstore/wire.ts";
import { fromLatin1, latin1, XsType } from "../xenstore/wire.ts";

/**
 * Sends one request and resolves with every packet received up to and including its reply
 * (watch events may come before it).
 */
export type Exchange = (p: XsPacket) => Promise<XsPacket[]>;

/**
 * Runs the script under `base` (a node the client may create: `/fuzz-good-N` for dom0,
 * `/local/domain/<id>/good-N` for a guest) and removes it again. `perms` is what GET_PERMS of
 * a new node there returns. Throws an Error naming the first step that went wrong.
 */
export async function goodClient(exchange: Exchange, base: string, perms: string): Promise<void> {
  let reqId = 0x6000_0000;
  const events: string[] = [];
  const ask = async (type: number, payload: string, txId = 0): Promise<string> => {
    const id = ++reqId;
    const got = await exchange({ type, reqId: id, txId, payload: latin1(payload) });
    const reply = got.at(-1);
    for (const p of got.slice(0, -1)) {
      if (p.type === XsType.WATCH_EVENT) events.push(fromLatin1(p.payload));
    }
    if (reply === undefined || reply.reqId !== id) throw new Error(`good client: no reply to request ${id}`);
    const body = fromLatin1(reply.payload);
    return reply.type === XsType.ERROR ? `ERROR ${body}` : body;
  };
  const expect = async (what: string, got: Promise<string>, want: string) => {
    const g = await got;
    if (g !== want)
      throw new Error(`good client: ${what} answered ${JSON.stringify(g)}, expected ${JSON.stringify(want)}`);
  };
  const k = `${base}/k`;
  await expect("WRITE", ask(XsType.WRITE, `${k}\0v1`), "OK\0");
  await expect("READ", ask(XsType.READ, `${k}\0`), "v1");
  await expect("DIRECTORY", ask(XsType.DIRECTORY, `${base}\0`), "k\0");
  await expect("GET_PERMS", ask(XsType.GET_PERMS, `${k}\0`), perms);
  await expect("WATCH", ask(XsType.WATCH, `${base}\0good\0`), "OK\0");
  const tx = await ask(XsType.TRANSACTION_START, "\0");
  if (!/^[1-9][0-9]*\0$/.test(tx))
    throw new Error(`good client: TRANSACTION_START answered ${JSON.stringify(tx)}`);
  const txId = Number(tx.slice(0, -1));
  await expect("WRITE in a transaction", ask(XsType.WRITE, `${k}\0v2`, txId), "OK\0");
  await expect("READ outside the transaction", ask(XsType.READ, `${k}\0`), "v1");
  await expect("TRANSACTION_END", ask(XsType.TRANSACTION_END, "T\0", txId), "OK\0");
  await expect("READ after commit", ask(XsType.READ, `${k}\0`), "v2");
  await expect("UNWATCH", ask(XsType.UNWATCH, `${base}\0good\0`), "OK\0");
  await expect("RM", ask(XsType.RM, `${base}\0`), "OK\0");
  await expect("READ after RM", ask(XsType.READ, `${k}\0`), "ERROR ENOENT\0");
  for (const want of [`${base}\0good\0`, `${k}\0good\0`]) {
    if (!events.includes(want)) throw new Error(`good client: no watch event ${JSON.stringify(want)}`);
  }
}
