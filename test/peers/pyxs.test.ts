/**
 * pyxs (Debian's python3-pyxs, run with /usr/bin/python3: the `python3` on PATH may be
 * another interpreter without it) against xenlab: test/peers/pyxs_session.py does reads,
 * writes, permissions, transactions with a conflicting writer, and watches, and its results
 * must equal those of the same session against the reference C xenstored.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { type RunningDaemon, requirePeer } from "../helpers/peers.ts";
import { REFERENCE, requireDaemon, SUBJECT, subjectName } from "../helpers/subject.ts";
import { runTool } from "../helpers/tools.ts";

const PYTHON = "/usr/bin/python3";
const SESSION = join(dirname(fileURLToPath(import.meta.url)), "pyxs_session.py");

interface Result {
  step: string;
  result: unknown;
}

async function pyxsSession(socket: string): Promise<Result[]> {
  const r = await runTool(PYTHON, [SESSION, socket], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, `pyxs_session.py exited ${r.code ?? r.signal}:\n${r.stdout}${r.stderr}`);
  return r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Result);
}

async function pyxsPresent(): Promise<boolean> {
  if (!existsSync(PYTHON)) return false;
  return (await runTool(PYTHON, ["-c", "import pyxs"])).code === 0;
}

function resultOf(results: readonly Result[], step: string, nth = 0): unknown {
  const found = results.filter((r) => r.step === step)[nth];
  assert.ok(found, `step "${step}" #${nth} missing from the session`);
  return found.result;
}

describe(`pyxs against ${SUBJECT.name}`, () => {
  let ref: RunningDaemon | null = null;
  let sub: RunningDaemon | null = null;
  let present = false;
  let refResults: Result[] = [];
  let subResults: Result[] = [];
  before(async () => {
    present = await pyxsPresent();
    if (REFERENCE.available()) ref = await REFERENCE.start();
    if (SUBJECT.available()) sub = await SUBJECT.start();
    if (present && ref !== null) refResults = await pyxsSession(ref.socket);
    if (present && sub !== null) subResults = await pyxsSession(sub.socket);
  });
  after(async () => {
    await ref?.stop();
    await sub?.stop();
  });

  const ready = (t: TestContext): boolean =>
    requirePeer(t, `pyxs (${PYTHON} -c 'import pyxs', package python3-pyxs)`, present) &&
    requireDaemon(t, REFERENCE, ref) &&
    requireDaemon(t, SUBJECT, sub);

  it("gives the reference's result for every step of the session", (t) => {
    if (!ready(t)) return;
    const diffs: string[] = [];
    for (let i = 0; i < Math.max(refResults.length, subResults.length); i++) {
      const a = JSON.stringify(refResults[i]);
      const b = JSON.stringify(subResults[i]);
      if (a !== b) diffs.push(`#${i + 1}\n    reference: ${a}\n    ${subjectName()}: ${b}`);
    }
    assert.equal(diffs.length, 0, `${diffs.length} steps differ:\n${diffs.join("\n")}`);
  });

  it("reads and writes, with implicit parents and PyXSError(ENOENT) for a missing node", (t) => {
    if (!ready(t)) return;
    assert.equal(resultOf(subResults, "read /pyxs/foo"), "bar");
    assert.equal(resultOf(subResults, "read implicit parent /pyxs/deep"), "");
    assert.equal(resultOf(subResults, "read missing"), "PyXSError(2)");
  });

  it("sets and gets permissions; new children inherit their parent's", (t) => {
    if (!ready(t)) return;
    assert.deepEqual(resultOf(subResults, "get_perms /pyxs/foo", 1), ["n0", "r3", "w4", "b5"]);
    assert.deepEqual(resultOf(subResults, "get_perms inherited /pyxs/child"), ["n7", "r0"]);
  });

  it("commits a transaction (True) and fails the commit after a conflicting write (False)", (t) => {
    if (!ready(t)) return;
    assert.equal(resultOf(subResults, "other connection reads outside tx"), "<missing>");
    assert.equal(resultOf(subResults, "commit"), true);
    assert.equal(resultOf(subResults, "commit after conflict"), false);
    assert.equal(resultOf(subResults, "read after failed commit"), "2");
    assert.equal(resultOf(subResults, "read after rollback"), "2");
  });

  it("delivers the initial watch event, then one event per change", (t) => {
    if (!ready(t)) return;
    assert.deepEqual(resultOf(subResults, "initial event"), ["/pyxs", "tok"]);
    assert.deepEqual(resultOf(subResults, "event", 0), ["/pyxs/foo", "tok"]);
    assert.deepEqual(resultOf(subResults, "event", 1), ["/pyxs/new/leaf", "tok"]);
    assert.deepEqual(resultOf(subResults, "initial event", 1), ["rel", "tok2"]);
    assert.deepEqual(resultOf(subResults, "event", 4), ["rel/x", "tok2"]);
  });
});
