/**
 * Watches as async iterators (`XsClient.watch()`, `wait()`): the events of one or more
 * registrations, queued until read. Which registration an event belongs to is told by its
 * token; several `XsWatch`es may share one (libxenstore's `xs_watch` allows that too).
 */
import { ConnectionClosedError } from "./errors.ts";

/** A watch event: the path that changed (as the daemon sent it) and the watch's token. */
export interface XsWatchEvent {
  path: string;
  token: string;
}

/** What an `XsWatch` needs of its client (`XsClient`). */
export interface WatchRegistry {
  /** A fresh token for this connection. */
  newToken(): string;
  /** Sends WATCH; events for `token` go to `owner` from now on. */
  _register(path: string, token: string, owner: XsWatch): Promise<void>;
  /** `owner` no longer wants events for `token`. */
  _forget(token: string, owner: XsWatch): void;
  unwatch(path: string, token: string): Promise<void>;
}

interface Registration {
  path: string;
  token: string;
}

/** True if `child` is `parent` or below it (libxenstore `xs_path_is_subpath`). */
function isSubpath(parent: string, child: string): boolean {
  return child === parent || (child.startsWith(parent) && child.charAt(parent.length) === "/");
}

/**
 * The events of one or more watch registrations, as an async iterator. Ends (done) after
 * `close()`/`resetWatches()`; throws ConnectionClosedError if the connection goes.
 */
export class XsWatch implements AsyncIterableIterator<XsWatchEvent> {
  /** Resolves once the first registration is acknowledged; rejects with its XsError. */
  ready: Promise<void> = Promise.resolve();
  readonly #client: WatchRegistry;
  readonly #regs: Registration[] = [];
  readonly #queue: XsWatchEvent[] = [];
  /** Callers of next()/_nextBatch() waiting for an event or the end. */
  #waiting: (() => void)[] = [];
  /** null: open; "done": closed normally; Error: failed. */
  #end: Error | "done" | null = null;

  constructor(client: WatchRegistry) {
    this.#client = client;
  }

  /** Watches one more path, into the same event stream. */
  async add(path: string, token: string = this.#client.newToken()): Promise<void> {
    if (this.#end !== null)
      throw this.#end === "done" ? new TypeError("Cannot add to a closed watch") : this.#end;
    const reg = { path, token };
    this.#regs.push(reg);
    try {
      await this.#client._register(path, token, this);
    } catch (e) {
      this.#regs.splice(this.#regs.indexOf(reg), 1);
      if (!this._has(token)) this.#client._forget(token, this);
      if (this.#regs.length === 0) this._end(e as Error);
      throw e;
    }
  }

  /** Unwatches every registration and ends the iterator. */
  async close(): Promise<void> {
    if (this.#end === null) this._end(null);
    const regs = this.#regs.splice(0);
    await Promise.all(regs.map((r) => this.#client.unwatch(r.path, r.token).catch(() => {})));
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<XsWatchEvent> {
    return this;
  }

  async next(): Promise<IteratorResult<XsWatchEvent>> {
    for (;;) {
      const ev = this.#queue.shift();
      if (ev !== undefined) return { value: ev, done: false };
      if (this.#end === "done") return { value: undefined, done: true };
      if (this.#end !== null) throw this.#end;
      await new Promise<void>((res) => {
        this.#waiting.push(res);
      });
    }
  }

  async return(): Promise<IteratorResult<XsWatchEvent>> {
    await this.close();
    return { value: undefined, done: true };
  }

  // -- for XsClient (not public API) -----------------------------------------------------

  /** @internal */
  _push(ev: XsWatchEvent): void {
    if (this.#end !== null) return;
    this.#queue.push(ev);
    this.#poke();
  }

  /** @internal Ends the stream: `null` normally, or with an error. */
  _end(err: Error | null): void {
    if (this.#end !== null) return;
    this.#end = err ?? "done";
    if (err !== null) this.#queue.length = 0;
    this.#poke();
  }

  /** @internal */
  _has(token: string): boolean {
    return this.#regs.some((r) => r.token === token);
  }

  /** @internal */
  _drop(path: string, token: string): void {
    const i = this.#regs.findIndex((r) => r.path === path && r.token === token);
    if (i !== -1) this.#regs.splice(i, 1);
  }

  /** @internal */
  _covers(path: string, token: string): boolean {
    return this.#regs.some((r) => r.token === token && isSubpath(r.path, path));
  }

  /** @internal Discards queued events (wait(): the predicate is about to look anyway). */
  _drain(): void {
    this.#queue.length = 0;
  }

  /** @internal Resolves when at least one event is queued; throws if the watch ended. */
  async _nextBatch(): Promise<void> {
    for (;;) {
      if (this.#queue.length > 0) return;
      if (this.#end === "done") throw new ConnectionClosedError("Watch closed while waiting");
      if (this.#end !== null) throw this.#end;
      await new Promise<void>((res) => {
        this.#waiting.push(res);
      });
    }
  }

  #poke(): void {
    for (const w of this.#waiting.splice(0)) w();
  }
}
