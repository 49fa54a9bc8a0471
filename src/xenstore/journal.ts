/**
 * xenstored's state directory (`xenlab xenstored --state DIR`): a snapshot of the whole store
 * plus a journal of every change since, so that after a kill -9 at any moment a restart
 * serves every change that was acknowledged, with its permissions, and nothing that was not.
 * The byte format is src/xenstore/journal-format.ts; the reasoning is docs/journal.md.
 *
 * Write path. The core calls commit() at the end of each request (and of a domain release),
 * before it hands the reply or any watch event to a transport. commit() writes one record,
 * every node the request changed as it now is (a directory that only gained or lost children:
 * its edits, not its whole list), with one `write` to the journal file. When
 * `write` returns, the bytes are in the kernel's page cache, and a kill -9 ends the process
 * but does not lose them: no fsync is needed for this guarantee. `sync: true`
 * (`--state-sync`) adds an fdatasync per record, for a machine that may lose power. A failed
 * write (or compaction) throws, and so does every later request: the daemon dies without
 * acknowledging the change, rather than acknowledge what is not on record. A transaction's writes reach the store at TRANSACTION_END only, so
 * a commit is one record. All or nothing.
 *
 * Compaction. When the journal outgrows `max(maxJournalBytes, 2 × snapshot)` the next
 * commit() ends with compact(), which does four steps, synchronously, so no request runs in
 * between:
 *
 *   1. write the whole store to `snapshot.tmp`, with epoch E+1 in its header;
 *   2. rename `snapshot.tmp` → `snapshot`;
 *   3. write a header with epoch E+1 alone to `journal.tmp`, then rename it → `journal`;
 *   4. append later records to that new journal.
 *
 * Loading takes `snapshot` (epoch S; none: the initial tree, S = 0) and replays `journal`
 * only if its epoch is S. A kill at any point leaves a loadable pair that holds every
 * acknowledged change:
 *
 *   - before the rename in 2: old snapshot E + old journal E, both untouched (a leftover
 *     `snapshot.tmp` is never read, and is deleted at the next start);
 *   - between 2 and the rename in 3: new snapshot E+1, which is the store as it is now,
 *     i.e. after every record of journal E, and nothing else has happened since (step 1 ran
 *     after the last record, inside the same call); journal E is skipped, as its epoch is
 *     not E+1;
 *   - after 3: snapshot E+1 + the empty journal E+1, then its records.
 *
 * A journal whose epoch is ahead of the snapshot's cannot be made by this order; loading
 * refuses it, as it refuses a damaged snapshot. A rename is atomic for every process: after
 * a kill there is either the old file or the new one, never a mix. (With `sync`, each file
 * is also fsynced before its rename and the directory after it, which is what makes the
 * same hold across a power cut.)
 *
 * Kept: every node (path, value, permissions, child order, generation), the generation
 * counter, the introduced domains (domid, gfn, port) and the special nodes' permissions.
 * Not kept: connections, watches and transactions (they die with the process and clients
 * reconnect, as with C xenstored when it restarts), quotas changed at run time (they come
 * from the command line again), SET_TARGET (a property of a domain's connection).
 */

import type { ListOwner } from "./children.ts";
import type { XenStoreCore } from "./core.ts";
import type { StateJournal, XsLogger } from "./daemon.ts";
import {
  type Delta,
  decodeDelta,
  decodeHeader,
  encodeDelta,
  encodeHeader,
  FrameWriter,
  HEADER_SIZE,
  JOURNAL_MAGIC,
  JournalFormatError,
  type Meta,
  readFrames,
  SNAPSHOT_MAGIC,
} from "./journal-format.ts";
import type { Perms } from "./perms.ts";
import { type Node, type NodeChange, Store, WHOLE } from "./store.ts";

export const SNAPSHOT_FILE = "snapshot";
export const JOURNAL_FILE = "journal";

/** A file of the state directory, open for appending. */
export interface StateFile {
  /** Writes all of `b` at the end (one `write` when the kernel takes it whole); throws on failure. */
  append(b: Uint8Array): void;
  /** fdatasync. */
  datasync(): void;
  close(): void;
}

/**
 * The state directory as the journal uses it. The layer does no I/O itself: src/xenstore/state-files.ts
 * implements this over node:fs, the tests over memory (to stop it at every step).
 */
export interface StateFiles {
  /** Where the files are, for messages. */
  readonly where: string;
  /** The file's bytes, or null if there is no such file. */
  read(name: string): Uint8Array | null;
  /**
   * Writes `name.tmp` (fsyncing it when `sync`), renames it to `name`, and returns it open for
   * appending: after a kill there is either the old `name` or the new one.
   */
  replace(name: string, parts: readonly Uint8Array[], sync: boolean): StateFile;
  /** Removes `name` if it exists (leftover `.tmp` files). */
  remove(name: string): void;
  /** fsync of the directory, so renames outlive a power cut. */
  syncDir(): void;
}

export const TMP_SUFFIX = ".tmp";

/** Journals at least this long before compacting, however small the store. */
export const DEFAULT_MAX_JOURNAL_BYTES = 1 << 20;

export interface JournalOptions {
  /** fdatasync each record, fsync around each compaction (`--state-sync`). */
  sync?: boolean;
  /** Compact when the journal passes max(this, 2 × the snapshot). */
  maxJournalBytes?: number;
  log?: XsLogger;
}

/** The state a directory holds, as loaded. */
export interface LoadedState {
  readonly epoch: number;
  readonly nodes: Map<string, Node>;
  /** Who owns the child lists of `nodes` (restoreState hands them to the core's store). */
  readonly owner: ListOwner;
  readonly generation: number;
  /** Null when nothing was ever recorded about domains: the core's defaults stand. */
  readonly meta: Meta | null;
  /** Journal records replayed on top of the snapshot. */
  readonly records: number;
  /** Why the journal was not read to its end (a torn tail), else null. */
  readonly tornTail: string | null;
  /** Bytes of the journal left out after the last valid record. */
  readonly droppedBytes: number;
}

export class StateDirError extends Error {
  override readonly name = "StateDirError";
}

function applyDelta(nodes: Map<string, Node>, d: Delta, owner: ListOwner): void {
  for (const n of d.set) nodes.set(n.name, n);
  for (const e of d.edited) {
    const cur = nodes.get(e.name);
    if (cur === undefined)
      throw new JournalFormatError(`Cannot replay an edit of "${e.name}": no such node before it`);
    let children = cur.children;
    for (const edit of e.edits) children = children.edited(edit, owner);
    nodes.set(e.name, { name: e.name, value: e.value, perms: e.perms, children, generation: e.generation });
  }
  for (const name of d.deleted) nodes.delete(name);
}

/** Reads the directory (nothing there: the initial tree). Throws StateDirError on a damaged or inconsistent pair. */
export function loadState(files: StateFiles): LoadedState {
  const dir = files.where;
  const initial = new Store();
  const owner: ListOwner = initial;
  const nodes = new Map<string, Node>(initial.nodes);
  let generation = 0;
  let meta: Meta | null = null;
  let epoch = 0;
  try {
    const snap = files.read(SNAPSHOT_FILE);
    if (snap !== null) {
      epoch = decodeHeader(snap, SNAPSHOT_MAGIC, "snapshot");
      const f = readFrames(snap, HEADER_SIZE);
      if (f.payloads.length !== 1 || f.stop !== null)
        throw new JournalFormatError(
          `Cannot read snapshot: ${f.stop ?? `${f.payloads.length} frames, want 1`}`,
        );
      const d = decodeDelta(f.payloads[0]!, owner);
      nodes.clear();
      applyDelta(nodes, d, owner);
      generation = d.generation;
      meta = d.meta;
    }
    const jrnl = files.read(JOURNAL_FILE);
    let records = 0;
    let tornTail: string | null = null;
    let droppedBytes = 0;
    if (jrnl !== null) {
      const jepoch = decodeHeader(jrnl, JOURNAL_MAGIC, "journal");
      if (jepoch > epoch)
        throw new StateDirError(
          `Cannot load ${dir}: journal epoch ${jepoch} is ahead of snapshot epoch ${epoch}`,
        );
      if (jepoch === epoch) {
        const f = readFrames(jrnl, HEADER_SIZE);
        for (const p of f.payloads) {
          const d = decodeDelta(p, owner);
          applyDelta(nodes, d, owner);
          generation = d.generation;
          if (d.meta !== null) meta = d.meta;
          records++;
        }
        tornTail = f.stop;
        droppedBytes = jrnl.length - f.end;
      }
    }
    return { epoch, nodes, owner, generation, meta, records, tornTail, droppedBytes };
  } catch (e) {
    if (e instanceof JournalFormatError) throw new StateDirError(`Cannot load ${dir}: ${e.message}`);
    throw e;
  }
}

/** Puts a loaded state into a fresh core: nodes, counters, domains (without rings), special permissions. */
export function restoreState(core: XenStoreCore, s: LoadedState): void {
  const nodes = core.store.nodes;
  nodes.clear();
  for (const [name, n] of s.nodes) {
    n.children.adopt(s.owner, core.store);
    nodes.set(name, n);
  }
  let maxGen = s.generation;
  for (const n of nodes.values()) if (n.generation > maxGen) maxGen = n.generation;
  core.store.generation = maxGen;
  core.entries.clear();
  for (const n of nodes.values()) {
    const owner = n.perms[0]!.id;
    core.entries.set(owner, (core.entries.get(owner) ?? 0) + 1);
  }
  if (s.meta === null) return;
  for (const d of s.meta.domains) {
    if (d.domid === 0 || core.domains.has(d.domid)) continue;
    // As INTRODUCE without a hypervisor: the domain exists for the tools, with no ring.
    core.domains.set(d.domid, {
      domid: d.domid,
      conn: core.connectDomain(d.domid),
      gfn: d.gfn,
      port: d.port,
      shutdown: false,
    });
  }
  for (const sp of s.meta.special) core.specialPerms.set(sp.name, sp.perms);
}

function metaOf(core: XenStoreCore): Meta {
  const domains = [];
  for (const d of core.domains.values())
    if (d.domid !== 0) domains.push({ domid: d.domid, gfn: d.gfn, port: d.port });
  const special: { name: string; perms: Perms }[] = [];
  for (const [name, perms] of core.specialPerms) special.push({ name, perms });
  return { domains, special };
}

export interface JournalStats {
  /** Records appended since open. */
  records: number;
  /** Bytes in the current journal file, header included. */
  journalBytes: number;
  /** Bytes of the last snapshot. */
  snapshotBytes: number;
  compactions: number;
  epoch: number;
}

/**
 * The journal of one core. `Journal.open(files)` loads what the directory holds; pass the
 * journal as the core's `journal` option, then `attach(core)` restores the state into it,
 * writes a fresh snapshot (dropping any torn tail for good) and starts recording.
 */
export class Journal implements StateJournal {
  readonly files: StateFiles;
  readonly loaded: LoadedState;
  readonly stats: JournalStats;
  readonly #sync: boolean;
  readonly #maxJournal: number;
  readonly #log: XsLogger | null;
  readonly #w = new FrameWriter();
  #core: XenStoreCore | null = null;
  #changes: Map<string, NodeChange> | null = null;
  #metaDirty = false;
  #file: StateFile | null = null;
  /** Set when a write failed: nothing more may be acknowledged, so every later commit throws. */
  #broken: Error | null = null;

  private constructor(files: StateFiles, loaded: LoadedState, opts: JournalOptions) {
    this.files = files;
    this.loaded = loaded;
    this.#sync = opts.sync ?? false;
    this.#maxJournal = opts.maxJournalBytes ?? DEFAULT_MAX_JOURNAL_BYTES;
    this.#log = opts.log ?? null;
    this.stats = { records: 0, journalBytes: 0, snapshotBytes: 0, compactions: 0, epoch: loaded.epoch };
  }

  /** Loads the directory; throws StateDirError if it cannot be trusted. */
  static open(files: StateFiles, opts: JournalOptions = {}): Journal {
    const loaded = loadState(files);
    for (const f of [SNAPSHOT_FILE, JOURNAL_FILE]) files.remove(f + TMP_SUFFIX);
    return new Journal(files, loaded, opts);
  }

  /** Restores the loaded state into `core`, a fresh one (whatever it holds is replaced), and starts recording. */
  attach(core: XenStoreCore): void {
    if (this.#core !== null) throw new Error("Cannot attach a journal twice");
    restoreState(core, this.loaded);
    this.#core = core;
    const l = this.loaded;
    const where = this.files.where;
    if (l.tornTail !== null)
      this.#log?.warn(
        { dir: where, droppedBytes: l.droppedBytes, reason: l.tornTail },
        `journal: dropped a torn tail of ${l.droppedBytes} bytes (never acknowledged)`,
      );
    this.#log?.info(
      { dir: where, nodes: l.nodes.size, records: l.records, epoch: l.epoch },
      `state: ${l.nodes.size} nodes from ${where} (snapshot epoch ${l.epoch} + ${l.records} journal records)`,
    );
    this.compact();
    this.#changes = new Map();
    core.store.nodes.changes = this.#changes;
  }

  metaChanged(): void {
    this.#metaDirty = true;
  }

  /** One record of what changed since the last call; see the header for when it runs. */
  commit(): void {
    if (this.#broken !== null) throw this.#broken;
    const changes = this.#changes;
    if (changes === null || (changes.size === 0 && !this.#metaDirty)) return;
    const core = this.#core!;
    const nodes = core.store.nodes;
    const w = this.#w;
    w.begin();
    w.u8(this.#metaDirty ? 1 : 0);
    w.f64(core.store.generation);
    w.u32(changes.size);
    for (const [name, change] of changes) {
      const n = nodes.get(name);
      if (n === undefined) w.deleteNode(name);
      else if (change === WHOLE) w.setNode(n);
      else w.editNode(n, change);
    }
    if (this.#metaDirty) w.meta(metaOf(core));
    changes.clear();
    this.#metaDirty = false;
    const frame = w.frame();
    const file = this.#file!;
    try {
      file.append(frame);
      if (this.#sync) file.datasync();
    } catch (e) {
      this.#broken = e instanceof Error ? e : new Error(String(e));
      this.#log?.error(
        { dir: this.files.where, err: this.#broken.message },
        "journal: write failed; stopping rather than acknowledge a change that is not on record",
      );
      throw this.#broken;
    }
    this.stats.records++;
    this.stats.journalBytes += frame.byteLength;
    if (this.stats.journalBytes > Math.max(this.#maxJournal, 2 * this.stats.snapshotBytes)) this.compact();
  }

  /**
   * Snapshot + fresh journal, in the order the header proves safe. A failure breaks the
   * journal for good: after step 2 the old journal no longer counts, so appending to it
   * would lose writes.
   */
  compact(): void {
    if (this.#broken !== null) throw this.#broken;
    try {
      this.#compact();
    } catch (e) {
      this.#broken = e instanceof Error ? e : new Error(String(e));
      this.#log?.error({ dir: this.files.where, err: this.#broken.message }, "journal: compaction failed");
      throw this.#broken;
    }
  }

  #compact(): void {
    const core = this.#core;
    if (core === null) throw new Error("Cannot compact a journal before attach()");
    const epoch = this.stats.epoch + 1;
    const snap = encodeDelta({
      generation: core.store.generation,
      set: [...core.store.nodes.values()],
      edited: [],
      deleted: [],
      meta: metaOf(core),
    });
    // Steps 1 and 2.
    this.files.replace(SNAPSHOT_FILE, [encodeHeader(SNAPSHOT_MAGIC, epoch), snap], this.#sync).close();
    if (this.#sync) this.files.syncDir();
    // Step 3; step 4 appends to the file it returns.
    const file = this.files.replace(JOURNAL_FILE, [encodeHeader(JOURNAL_MAGIC, epoch)], this.#sync);
    if (this.#sync) this.files.syncDir();
    this.#file?.close();
    this.#file = file;
    this.stats.epoch = epoch;
    this.stats.snapshotBytes = HEADER_SIZE + snap.byteLength;
    this.stats.journalBytes = HEADER_SIZE;
    this.stats.compactions++;
  }

  /** Stops recording; the files stay as they are (every acknowledged change is in them). */
  close(): void {
    if (this.#core !== null) this.#core.store.nodes.changes = null;
    this.#changes = null;
    this.#file?.close();
    this.#file = null;
  }
}
