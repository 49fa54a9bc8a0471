/**
 * A XenStore client over any byte channel (Unix socket, ring, in-memory pipe).
 *
 * One request path (`#call`): every request gets a fresh `req_id`, its reply is matched
 * by that id (so many requests may be in flight), and an `XS_ERROR` reply becomes an
 * `XsError` carrying the daemon's error name (an unknown name becomes EINVAL, as Linux
 * and libxenstore do). Unsolicited `XS_WATCH_EVENT`s go to the `XsWatch` that owns their
 * token. Requests issued in the same tick are coalesced into one channel write.
 * (Linux `xenbus_xs.c` `xs_talkv`; libxenstore `xs.c`; ocaml-xenstore client.)
 */

import { type WatchRegistry, XsWatch } from "./client-watch.ts";
import {
  ConnectionClosedError,
  isXsErrorName,
  PayloadTooLargeError,
  XsError,
  XsProtocolError,
} from "./errors.ts";
import { Perm, type PermEntry, parsePerm as parseEntry, permLetter } from "./perms.ts";
import {
  concatBytes,
  firstString,
  fromUtf8,
  HEADER_SIZE,
  joinStrings,
  PacketReader,
  splitStrings,
  typeName,
  utf8,
  writeHeader,
  XENSTORE_PAYLOAD_MAX,
  type XsPacket,
  XsType,
} from "./wire.ts";

// ---------------------------------------------------------------------------------------
// Channel

/** What a channel delivers to the client. */
export interface XsChannelSink {
  /** Bytes from the daemon, in order; the chunk may be reused after the call. */
  data(chunk: Uint8Array): void;
  /** The channel is closed (by either side); called once. */
  closed(error?: Error): void;
}

/** A duplex byte stream to xenstored. */
export interface XsChannel {
  /** Called once, before the first write, with the receiver of incoming bytes. */
  attach(sink: XsChannelSink): void;
  /** Queues bytes for the daemon. */
  write(bytes: Uint8Array): void;
  /** Flushes queued bytes, then closes; the channel then calls `sink.closed()`. */
  close(): void;
}

// ---------------------------------------------------------------------------------------
// Permissions

/** One permission entry: the first of a node's list names the owner (and everyone's default). */
export interface XsPerm {
  readonly id: number;
  readonly read: boolean;
  readonly write: boolean;
}

/**
 * `"r5"` → `{id: 5, read: true, write: false}`: a letter and a decimal domid of at most 32
 * bits (perms.ts, strict). Throws RangeError on anything else.
 */
export function parsePerm(s: string): XsPerm {
  const p = parseEntry(s, STRICT);
  if (p === null) {
    throw new RangeError(`Cannot parse permission "${s}": expected n, r, w or b and a domid`);
  }
  return { id: p.id, read: (p.perms & Perm.READ) !== 0, write: (p.perms & Perm.WRITE) !== 0 };
}

const STRICT = { strict: true } as const;

/** The entry as perms.ts holds it: READ | WRITE bits. */
export function permEntry(p: XsPerm): PermEntry {
  return { id: p.id, perms: (p.read ? Perm.READ : 0) | (p.write ? Perm.WRITE : 0) };
}

/**
 * `{id: 7, read: false, write: true}` → `"w7"`, the domid as the number it is (C tools print
 * it as an int: perms.ts `formatPerm(permEntry(p))`).
 */
export function formatPerm(p: XsPerm): string {
  return `${permLetter(permEntry(p).perms)}${p.id}`;
}

// ---------------------------------------------------------------------------------------
// Payload helpers

/** A reply that is a list of NUL-terminated strings ("a\0b\0"). */
function replyList(b: Uint8Array): string[] {
  return splitStrings(b).parts;
}

function domidString(domid: number): string {
  if (!Number.isInteger(domid) || domid < 0 || domid > 0xffffffff) {
    throw new RangeError(`Cannot use domid ${domid}: expected an integer from 0 to 4294967295`);
  }
  return String(domid);
}

function isErrno(e: unknown, name: string): e is XsError {
  return e instanceof XsError && e.errno === name;
}

// ---------------------------------------------------------------------------------------
// Operations valid in and out of a transaction

/** The data operations; `XsClient` runs them outside a transaction, `XsTransaction` inside. */
export abstract class XsOps {
  /** The transaction id these operations carry (0: none). */
  abstract readonly txId: number;
  protected abstract call(type: number, body: Uint8Array, what: string): Promise<Uint8Array>;

  /** The value of `path` as bytes (binary-safe). */
  readBytes(path: string): Promise<Uint8Array> {
    return this.call(XsType.READ, joinStrings([path]), path);
  }

  /** The value of `path` decoded as UTF-8. */
  async read(path: string): Promise<string> {
    return fromUtf8(await this.readBytes(path));
  }

  /** The value of `path`, or undefined if it does not exist (ENOENT). */
  async tryRead(path: string): Promise<string | undefined> {
    try {
      return await this.read(path);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return undefined;
      throw e;
    }
  }

  /** True if `path` can be read (xenstore-exists). */
  async exists(path: string): Promise<boolean> {
    return (await this.tryRead(path)) !== undefined;
  }

  /** Writes `value` (a string is UTF-8 encoded); missing parents are created empty. */
  async write(path: string, value: string | Uint8Array): Promise<void> {
    const bytes = typeof value === "string" ? utf8(value) : value;
    await this.call(XsType.WRITE, joinStrings([path], bytes), path);
  }

  /** Creates `path` with an empty value; does nothing if it exists. */
  async mkdir(path: string): Promise<void> {
    await this.call(XsType.MKDIR, joinStrings([path]), path);
  }

  /** Removes `path` and its subtree; succeeds if `path` is missing but its parent exists. */
  async rm(path: string): Promise<void> {
    await this.call(XsType.RM, joinStrings([path]), path);
  }

  /**
   * The names of the children of `path`. When the list is too big for one reply (E2BIG), it
   * is fetched in parts with DIRECTORY_PART, as libxenstore's `xs_directory` does.
   */
  async directory(path: string): Promise<string[]> {
    try {
      return replyList(await this.call(XsType.DIRECTORY, joinStrings([path]), path));
    } catch (e) {
      if (!isErrno(e, "E2BIG")) throw e;
    }
    return this.#directoryByParts(path);
  }

  async #directoryByParts(path: string): Promise<string[]> {
    for (;;) {
      const names: string[] = [];
      let generation: string | undefined;
      let offset = 0;
      for (;;) {
        let part: XsDirectoryPart;
        try {
          part = await this.directoryPart(path, offset);
        } catch (e) {
          // A daemon without DIRECTORY_PART: the list simply does not fit (libxenstore).
          if (isErrno(e, "ENOSYS")) throw new XsError("E2BIG", `Cannot list "${path}": E2BIG`);
          throw e;
        }
        if (generation === undefined) generation = part.generation;
        else if (generation !== part.generation) break; // changed underneath: start over
        names.push(...part.names);
        for (const n of part.names) offset += utf8(n).byteLength + 1;
        if (part.complete) return names;
      }
    }
  }

  /**
   * One slice of the child list of `path`, starting at byte `offset` of the list
   * `"a\0b\0..."`. An unchanged `generation` between calls proves the list did not change.
   */
  async directoryPart(path: string, offset: number): Promise<XsDirectoryPart> {
    const reply = await this.call(XsType.DIRECTORY_PART, joinStrings([path, String(offset)]), path);
    // "gen\0" then whole "name\0" entries; an extra "\0" (an empty name) marks the end.
    const { parts, terminated } = splitStrings(reply);
    const generation = parts[0];
    if (generation === undefined || !terminated) {
      throw new XsProtocolError(
        `Cannot parse DIRECTORY_PART reply for "${path}": ${JSON.stringify(fromUtf8(reply))}`,
      );
    }
    const rest = parts.slice(1);
    const complete = rest.length > 0 && rest[rest.length - 1] === "";
    return { generation, names: complete ? rest.slice(0, -1) : rest, complete };
  }

  /** The permissions of `path`, owner first. */
  async getPerms(path: string): Promise<XsPerm[]> {
    const strings = replyList(await this.call(XsType.GET_PERMS, joinStrings([path]), path));
    try {
      return strings.map(parsePerm);
    } catch (e) {
      throw new XsProtocolError(`Cannot parse GET_PERMS reply for "${path}": ${(e as Error).message}`);
    }
  }

  /** Sets the permissions of `path`; entries are `XsPerm`s or strings like `"r5"`. */
  async setPerms(path: string, perms: readonly (XsPerm | string)[]): Promise<void> {
    const strings = perms.map((p) => (typeof p === "string" ? p : formatPerm(p)));
    await this.call(XsType.SET_PERMS, joinStrings([path, ...strings]), path);
  }
}

export interface XsDirectoryPart {
  generation: string;
  names: string[];
  /** True when the slice reaches the end of the list. */
  complete: boolean;
}

export interface XsTransactionOptions {
  /** How many times to run `fn` before giving up on EAGAIN (default 64). */
  attempts?: number;
}

export interface XsWaitOptions {
  signal?: AbortSignal;
}

/** What `wait()` resolves with: anything but "not yet" (`undefined`, `null`, `false`). */
type Ready<T> = Exclude<T, undefined | null | false>;

interface Pending {
  type: number;
  what: string;
  resolve(body: Uint8Array): void;
  reject(err: Error): void;
}

// ---------------------------------------------------------------------------------------
// Client

export class XsClient extends XsOps implements WatchRegistry {
  readonly txId = 0;
  readonly #channel: XsChannel;
  readonly #reader = new PacketReader();
  readonly #pending = new Map<number, Pending>();
  /** Watches by token; several `XsWatch`es may share one. */
  readonly #watches = new Map<string, Set<XsWatch>>();
  #nextReqId = 1;
  #nextToken = 1;
  #outbox: Uint8Array[] = [];
  #flushQueued = false;
  #closedWith: Error | null = null;
  readonly #closed: Promise<Error>;
  #onClosed!: (e: Error) => void;

  constructor(channel: XsChannel) {
    super();
    this.#channel = channel;
    this.#closed = new Promise((res) => {
      this.#onClosed = res;
    });
    channel.attach({ data: (chunk) => this.#receive(chunk), closed: (err) => this.#shutdown(err) });
  }

  /** Resolves with the reason once the connection is closed. */
  get closed(): Promise<Error> {
    return this.#closed;
  }

  /** Closes the connection; requests still in flight reject with ConnectionClosedError. */
  close(): void {
    if (this.#closedWith !== null) return;
    this.#flush();
    this.#channel.close();
  }

  // -- one request path ------------------------------------------------------------------

  protected override call(type: number, body: Uint8Array, what: string): Promise<Uint8Array> {
    return this.request(type, 0, body, what);
  }

  /**
   * Sends one request and resolves with the reply payload; an `XS_ERROR` reply rejects with
   * `XsError`. A payload over 4096 bytes rejects with E2BIG without being sent (libxenstore).
   */
  request(type: number, txId: number, body: Uint8Array, what = ""): Promise<Uint8Array> {
    if (this.#closedWith !== null) return Promise.reject(this.#closedWith);
    if (body.byteLength > XENSTORE_PAYLOAD_MAX) {
      return Promise.reject(
        new XsError(
          "E2BIG",
          `Cannot send ${typeName(type)}: payload of ${body.byteLength} bytes is over 4096`,
        ),
      );
    }
    const reqId = this.#allocReqId();
    const packet = new Uint8Array(HEADER_SIZE + body.byteLength);
    writeHeader(packet, 0, type, reqId, txId, body.byteLength);
    packet.set(body, HEADER_SIZE);
    return new Promise((resolve, reject) => {
      this.#pending.set(reqId, { type, what, resolve, reject });
      this.#enqueue(packet);
    });
  }

  #allocReqId(): number {
    // 0 is what watch events carry; skip it and any id still waiting for its reply.
    let id = this.#nextReqId;
    while (id === 0 || this.#pending.has(id)) id = (id + 1) >>> 0;
    this.#nextReqId = (id + 1) >>> 0;
    return id;
  }

  /** Corks: every packet queued in this tick goes out in one channel write. */
  #enqueue(packet: Uint8Array): void {
    this.#outbox.push(packet);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushQueued = false;
    const box = this.#outbox;
    if (box.length === 0 || this.#closedWith !== null) return;
    this.#outbox = [];
    if (box.length === 1) {
      this.#channel.write(box[0]!);
      return;
    }
    this.#channel.write(concatBytes(box));
  }

  #receive(chunk: Uint8Array): void {
    if (this.#closedWith !== null) return;
    const packets = this.#reader.push(chunk);
    // A daemon that announces an over-long reply cannot be trusted with anything it sent.
    const tooLarge = this.#reader.error;
    if (tooLarge !== null) {
      this.#fail(tooLarge);
      return;
    }
    for (const p of packets) this.#dispatch(p);
  }

  #dispatch(p: XsPacket): void {
    if (p.type === XsType.WATCH_EVENT) {
      this.#deliverEvent(p.payload);
      return;
    }
    const pending = this.#pending.get(p.reqId);
    if (pending === undefined) {
      this.#fail(
        new XsProtocolError(`Cannot match reply ${typeName(p.type)} with req_id ${p.reqId}: no such request`),
      );
      return;
    }
    this.#pending.delete(p.reqId);
    if (p.type === XsType.ERROR) {
      const name = firstString(p.payload);
      const errno = isXsErrorName(name) ? name : "EINVAL";
      const where =
        pending.what === "" ? typeName(pending.type) : `${typeName(pending.type)} "${pending.what}"`;
      const unknown = errno === name ? "" : ` (unknown error "${name}")`;
      pending.reject(new XsError(errno, `${where}: ${errno}${unknown}`));
    } else if (p.type !== pending.type) {
      pending.reject(
        new XsProtocolError(`Cannot use reply ${typeName(p.type)} to request ${typeName(pending.type)}`),
      );
    } else {
      pending.resolve(p.payload);
    }
  }

  /** A protocol violation: the connection cannot be trusted any more. */
  #fail(err: Error): void {
    this.#shutdown(err);
    this.#channel.close();
  }

  #shutdown(err?: Error): void {
    if (this.#closedWith !== null) return;
    const closedErr =
      err instanceof ConnectionClosedError ||
      err instanceof XsProtocolError ||
      err instanceof PayloadTooLargeError
        ? err
        : new ConnectionClosedError(
            err === undefined ? undefined : `Connection to xenstored closed: ${err.message}`,
          );
    this.#closedWith = closedErr;
    this.#outbox = [];
    for (const p of this.#pending.values()) p.reject(closedErr);
    this.#pending.clear();
    for (const set of this.#watches.values()) for (const w of set) w._end(closedErr);
    this.#watches.clear();
    this.#onClosed(closedErr);
  }

  // -- watches ---------------------------------------------------------------------------

  /**
   * Watches `path` (and its subtree) under `token` (default: a fresh one). The daemon
   * sends one event at once, then one per change:
   *
   *   for await (const ev of client.watch("/local/domain/3/device")) { ... }
   *
   * Leaving the loop (or `close()`) unwatches. Events queue until read.
   */
  watch(path: string, token?: string): XsWatch {
    const w = new XsWatch(this);
    w.ready = w.add(path, token);
    // Surfaced by `await w.ready` or the first next(); never an unhandled rejection.
    w.ready.catch(() => {});
    return w;
  }

  /** A fresh token for this connection. */
  newToken(): string {
    return `xenlab-${this.#nextToken++}`;
  }

  /** @internal Sends WATCH; events for `token` go to `owner` from now on. */
  async _register(path: string, token: string, owner: XsWatch): Promise<void> {
    let set = this.#watches.get(token);
    if (set === undefined) {
      set = new Set();
      this.#watches.set(token, set);
    }
    set.add(owner);
    await this.call(XsType.WATCH, joinStrings([path, token]), path);
  }

  /** @internal `owner` no longer wants events for `token`. */
  _forget(token: string, owner: XsWatch): void {
    const set = this.#watches.get(token);
    if (set === undefined) return;
    set.delete(owner);
    if (set.size === 0) this.#watches.delete(token);
  }

  /** Removes the watch on `path` with `token`; `XsWatch`es using it stop getting its events. */
  async unwatch(path: string, token: string): Promise<void> {
    for (const w of this.#watches.get(token) ?? []) {
      w._drop(path, token);
      if (!w._has(token)) this._forget(token, w);
    }
    await this.call(XsType.UNWATCH, joinStrings([path, token]), path);
  }

  #deliverEvent(body: Uint8Array): void {
    const { parts } = splitStrings(body);
    const [path, token] = parts;
    if (path === undefined || token === undefined) return; // malformed: drop, as Linux does
    const set = this.#watches.get(token);
    if (set === undefined) return; // unwatched while in flight
    const ev = { path, token };
    if (set.size === 1) {
      for (const w of set) w._push(ev);
      return;
    }
    // One token, several owners: give the event to those whose watched path covers it.
    let given = false;
    for (const w of set) {
      if (w._covers(path, token)) {
        w._push(ev);
        given = true;
      }
    }
    if (!given) for (const w of set) w._push(ev);
  }

  // -- transactions ----------------------------------------------------------------------

  async transactionStart(): Promise<XsTransaction> {
    const id = Number(firstString(await this.call(XsType.TRANSACTION_START, joinStrings([""]), "")));
    if (!Number.isInteger(id) || id <= 0 || id > 0xffffffff) {
      throw new XsProtocolError(`Cannot parse TRANSACTION_START reply: "${id}"`);
    }
    return new XsTransaction(this, id);
  }

  /** Commits (`commit` true) or aborts transaction `txId`; a conflict rejects with EAGAIN. */
  async transactionEnd(txId: number, commit: boolean): Promise<void> {
    await this.request(
      XsType.TRANSACTION_END,
      txId,
      joinStrings([commit ? "T" : "F"]),
      commit ? "commit" : "abort",
    );
  }

  /**
   * Runs `fn` in a transaction and commits it; on a conflict (EAGAIN from the commit or from
   * an operation in `fn`) runs `fn` again in a new transaction. If `fn` throws, the
   * transaction is aborted and the error passed on.
   */
  async transaction<T>(
    fn: (tx: XsTransaction) => Promise<T>,
    options: XsTransactionOptions = {},
  ): Promise<T> {
    const attempts = options.attempts ?? 64;
    for (let attempt = 1; ; attempt++) {
      const tx = await this.transactionStart();
      let result: T;
      try {
        result = await fn(tx);
      } catch (e) {
        await tx.abort().catch(() => {});
        if (isErrno(e, "EAGAIN") && attempt < attempts) continue;
        throw e;
      }
      try {
        await tx.commit();
        return result;
      } catch (e) {
        if (isErrno(e, "EAGAIN") && attempt < attempts) continue;
        throw e;
      }
    }
  }

  /**
   * Waits until `pred` returns something other than `undefined`, `null` or `false`, and
   * resolves with it. `pred` runs once the watches on `paths` are in place, then again after
   * each batch of watch events on them, so no change between two runs is missed.
   */
  async wait<T>(
    paths: string | readonly string[],
    pred: (client: XsClient) => T | Promise<T>,
    options: XsWaitOptions = {},
  ): Promise<Ready<T>> {
    const list = typeof paths === "string" ? [paths] : paths;
    const { signal } = options;
    signal?.throwIfAborted();
    const w = new XsWatch(this);
    const token = this.newToken();
    const onAbort = () => w._end(signal?.reason instanceof Error ? signal.reason : new Error("Aborted"));
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (const p of list) await w.add(p, token);
      for (;;) {
        w._drain();
        const v = await pred(this);
        if (v !== undefined && v !== null && v !== false) return v as Ready<T>;
        await w._nextBatch();
        signal?.throwIfAborted();
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      await w.close().catch(() => {});
    }
  }

  // -- domains and daemon ----------------------------------------------------------------

  /** `/local/domain/<domid>`, as the daemon sees it. */
  async getDomainPath(domid: number): Promise<string> {
    return firstString(
      await this.call(XsType.GET_DOMAIN_PATH, joinStrings([domidString(domid)]), String(domid)),
    );
  }

  async isDomainIntroduced(domid: number): Promise<boolean> {
    const r = firstString(
      await this.call(XsType.IS_DOMAIN_INTRODUCED, joinStrings([domidString(domid)]), String(domid)),
    );
    return r !== "F";
  }

  /** Tells the daemon about domain `domid`'s ring page (`gfn`) and event channel `port`. */
  async introduce(domid: number, gfn: number | bigint, port: number): Promise<void> {
    const d = domidString(domid);
    await this.call(XsType.INTRODUCE, joinStrings([d, String(gfn), String(port)]), d);
  }

  async release(domid: number): Promise<void> {
    await this.call(XsType.RELEASE, joinStrings([domidString(domid)]), String(domid));
  }

  async resume(domid: number): Promise<void> {
    await this.call(XsType.RESUME, joinStrings([domidString(domid)]), String(domid));
  }

  /** Lets `domid` act for `target` (a stub domain and its guest). */
  async setTarget(domid: number, target: number): Promise<void> {
    const d = domidString(domid);
    await this.call(XsType.SET_TARGET, joinStrings([d, domidString(target)]), d);
  }

  /** Drops every watch of this connection, in the daemon and here. */
  async resetWatches(): Promise<void> {
    await this.call(XsType.RESET_WATCHES, joinStrings([""]), "");
    for (const set of this.#watches.values()) for (const w of set) w._end(null);
    this.#watches.clear();
  }

  /** `xenstore-control cmd args...`: the daemon's text reply. */
  async control(cmd: string, ...args: string[]): Promise<string> {
    const reply = await this.call(XsType.CONTROL, joinStrings([cmd, ...args]), cmd);
    return firstString(reply);
  }
}

// ---------------------------------------------------------------------------------------

/** Operations inside one transaction; end it with `commit()` or `abort()`. */
export class XsTransaction extends XsOps {
  readonly txId: number;
  readonly #client: XsClient;

  constructor(client: XsClient, txId: number) {
    super();
    this.#client = client;
    this.txId = txId;
  }

  protected override call(type: number, body: Uint8Array, what: string): Promise<Uint8Array> {
    return this.#client.request(type, this.txId, body, what);
  }

  /** Commits; rejects with `XsError` EAGAIN if another change conflicted. */
  commit(): Promise<void> {
    return this.#client.transactionEnd(this.txId, true);
  }

  abort(): Promise<void> {
    return this.#client.transactionEnd(this.txId, false);
  }
}
