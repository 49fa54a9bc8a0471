/**
 * A pair of daemons for differential tests: the reference C xenstored (../shared/refxs) and
 * the subject, `xenlab xenstored`. Each test plays the same steps against both and fails on
 * the first difference, listing every differing step with both replies.
 *
 * XENLAB_DIFF_SUBJECT=refxs makes the subject a second reference daemon (see subject.ts).
 * XENLAB_DIFF_DUMP=1 prints both transcripts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import { type RunningDaemon, refxsAvailable, requirePeer, startRefxs } from "./peers.ts";
import { startSubject, subjectAvailable, subjectName } from "./subject.ts";
import {
  formatTranscript,
  ScriptRunner,
  type Step,
  type StepRecord,
  transcriptDifferences,
} from "./xs-script.ts";

export class DiffPair {
  readonly subjectName = subjectName();
  #ref: RunningDaemon | null = null;
  #sub: RunningDaemon | null = null;
  #refRunner: ScriptRunner | null = null;
  #subRunner: ScriptRunner | null = null;
  readonly #args: string[];
  readonly #refEnv: NodeJS.ProcessEnv;

  /** `args`: daemon arguments for both (the C xenstored's flags, which xenlab shares). */
  constructor(opts: { args?: string[]; refEnv?: NodeJS.ProcessEnv } = {}) {
    this.#args = opts.args ?? [];
    this.#refEnv = opts.refEnv ?? {};
  }

  /** Starts whichever daemons are available (for `before()`). */
  async start(): Promise<void> {
    if (refxsAvailable()) {
      this.#ref = await startRefxs(this.#args, this.#refEnv);
      this.#refRunner = new ScriptRunner(this.#ref.socket);
    }
    if (subjectAvailable()) {
      this.#sub = await startSubject(this.#args);
      this.#subRunner = new ScriptRunner(this.#sub.socket);
    }
  }

  /** For each test: both daemons must be there (fails under CI, skips elsewhere). */
  require(t: TestContext): boolean {
    return (
      requirePeer(t, "reference C xenstored (../shared/refxs, gcc)", this.#ref !== null) &&
      requirePeer(
        t,
        this.subjectName === "xenlab" ? "xenlab xenstored (src/cli/xenstored.ts)" : "second reference daemon",
        this.#sub !== null,
      )
    );
  }

  get refSocket(): string {
    assert.ok(this.#ref, "reference daemon not started");
    return this.#ref.socket;
  }

  get subjectSocket(): string {
    assert.ok(this.#sub, "subject daemon not started");
    return this.#sub.socket;
  }

  /** Plays `steps` on both daemons (reference first) and fails listing every differing step. */
  async check(steps: readonly Step[]): Promise<{ ref: StepRecord[]; sub: StepRecord[] }> {
    assert.ok(this.#refRunner && this.#subRunner, "daemons not started");
    const ref = await this.#refRunner.run(steps);
    const sub = await this.#subRunner.run(steps);
    if (process.env.XENLAB_DIFF_DUMP) {
      process.stderr.write(
        `--- reference ---\n${formatTranscript(ref)}\n--- ${this.subjectName} ---\n${formatTranscript(sub)}\n`,
      );
    }
    const diffs = transcriptDifferences(steps, ref, sub, this.subjectName);
    if (diffs.length > 0) {
      const shown = diffs.slice(0, 40).join("\n");
      const more = diffs.length > 40 ? `\n... and ${diffs.length - 40} more` : "";
      assert.fail(
        `${diffs.length} of ${steps.length} steps differ from the reference C xenstored:\n${shown}${more}`,
      );
    }
    return { ref, sub };
  }

  async stop(): Promise<void> {
    await this.#refRunner?.close();
    await this.#subRunner?.close();
    await this.#ref?.stop();
    await this.#sub?.stop();
    this.#ref = this.#sub = null;
  }
}

/** Named step tables, each one test. */
export type DiffTables = ReadonlyArray<readonly [string, readonly Step[]]>;

/**
 * One suite of differential tests: a daemon pair for the suite (started with `opts`) and
 * one test per table, failing on the first step where the two daemons differ.
 */
export function describeDiff(
  title: string,
  tables: DiffTables,
  opts: ConstructorParameters<typeof DiffPair>[0] = {},
): void {
  describe(title, () => {
    const pair = new DiffPair(opts);
    before(() => pair.start());
    after(() => pair.stop());
    for (const [name, steps] of tables) {
      it(`gives the reference's replies and events: ${name}`, async (t) => {
        if (!pair.require(t)) return;
        await pair.check(steps);
      });
    }
  });
}
