/**
 * The daemon under test: `xenlab xenstored`, or, with XENLAB_DIFF_SUBJECT=refxs, a second
 * reference C xenstored. The latter proves a test harness itself: every comparison with the
 * reference must then pass.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { REPO, type RunningDaemon, refxsAvailable, requirePeer, startRefxs, startXenlab } from "./peers.ts";

/** True when `xenlab xenstored` exists in this tree. */
export function xenlabAvailable(): boolean {
  return existsSync(join(REPO, "src/cli/xenstored.ts"));
}

export type SubjectKind = "xenlab" | "refxs";

export function subjectKind(): SubjectKind {
  return process.env.XENLAB_DIFF_SUBJECT === "refxs" ? "refxs" : "xenlab";
}

/** "xenlab", or "refxs#2" when the subject is a second reference daemon. */
export function subjectName(): string {
  return subjectKind() === "refxs" ? "refxs#2" : "xenlab";
}

export function subjectAvailable(): boolean {
  return subjectKind() === "refxs" ? refxsAvailable() : xenlabAvailable();
}

export function startSubject(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunningDaemon> {
  return subjectKind() === "refxs" ? startRefxs(args, env) : startXenlab(args, env);
}

/** A daemon to run a peer against: the reference, or the subject. */
export interface Target {
  name: string;
  available: () => boolean;
  start: () => Promise<RunningDaemon>;
}

export const REFERENCE: Target = {
  name: "the reference C xenstored",
  available: refxsAvailable,
  start: () => startRefxs(),
};

export const SUBJECT: Target = {
  name:
    subjectKind() === "refxs" ? "a second reference daemon (XENLAB_DIFF_SUBJECT=refxs)" : "xenlab xenstored",
  available: subjectAvailable,
  start: () => startSubject(),
};

/** requirePeer() for a target daemon that may not have started. */
export function requireDaemon(t: TestContext, target: Target, d: RunningDaemon | null): d is RunningDaemon {
  return requirePeer(t, target.name, d !== null);
}
