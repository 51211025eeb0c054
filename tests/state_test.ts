/** evolve() and deriveParent(): the read side of the state machine, without a database. */
import assert from "node:assert/strict";
import type { JobEvent } from "../jobs/events.ts";
import { deriveParent, evolve, isTerminal, type JobState } from "../jobs/state.ts";
import {
  apply,
  cancel,
  exit,
  given,
  JOB,
  logLines,
  start,
  stored,
  submit,
  when,
} from "./helpers/jobs.ts";

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

Deno.test("evolve", async (t) => {
  await t.step("a job is submitted once; events of unknown jobs are refused", () => {
    const s = given([submit()]);
    assert.throws(() => apply(s, [{ type: "submitted", data: s as never }]), /submitted twice/);
    const log: JobEvent = { type: "log", data: { stream: "stdout", lines: [] } };
    assert.throws(() => evolve(undefined, stored(JOB, 1, log)), /unknown job/);
  });
  await t.step("never mutates the state it is given", () => {
    const before = deepFreeze(given([submit(), start()]));
    const copy = structuredClone(before);
    when(before, logLines("x"));
    when(before, { type: "output", events: [{ type: "metrics", data: { metrics: { a: 1 } } }] });
    when(before, exit());
    assert.deepEqual(before, copy);
  });
  await t.step("versions and times follow the events", () => {
    const s = given([submit(), start(), logLines("a")]);
    assert.equal(s.version, 3);
    assert.ok(s.created_at < s.updated_at);
  });
  await t.step(
    "output accumulates: log lines, merged metrics, latest progress, capped warnings",
    () => {
      let s = given([submit(), start(), logLines("a", "b"), logLines("c")]);
      assert.equal(s.log_lines, 3);
      s = apply(s, [
        { type: "metrics", data: { metrics: { a: 1, b: 1 } } },
        { type: "metrics", data: { metrics: { b: 2 } } },
        { type: "progress", data: { step: 1, total: 4, message: null, metrics: null } },
        { type: "progress", data: { step: 3, total: 4, message: "m", metrics: { loss: 1 } } },
        { type: "artifact", data: { path: "/models/other.joblib" } },
      ])!;
      assert.deepEqual(s.metrics, { a: 1, b: 2 });
      assert.deepEqual({ ...s.progress, at: null }, {
        step: 3,
        total: 4,
        message: "m",
        metrics: { loss: 1 },
        at: null,
      });
      assert.equal(s.artifact_path, "/models/other.joblib");
      const warnings: JobEvent[] = Array.from({ length: 25 }, (_, i) => ({
        type: "warning",
        data: { message: `w${i}` },
      }));
      s = apply(s, warnings)!;
      assert.equal(s.warnings.length, 20);
      assert.equal(s.warnings[0], "w5");
      assert.equal(s.warnings.at(-1), "w24");
    },
  );
  await t.step("a process that ends after its cancel keeps the cancel's status and times", () => {
    const cancelled = given([submit(), start(), cancel]);
    const { state } = when(
      cancelled,
      exit({ exit_code: null, signal: "SIGKILL", stopped_with: "SIGKILL" }),
    );
    assert.equal(state.status, "cancelled");
    assert.equal(state.completed_at, cancelled.completed_at);
    assert.deepEqual(
      [state.process?.alive, state.process?.signal, state.process?.stopped_with],
      [false, "SIGKILL", "SIGKILL"],
    );
  });
  await t.step("isTerminal", () => {
    assert.deepEqual(
      ["started", "running", "completed", "failed", "cancelled"].map((s) => isTerminal(s as never)),
      [false, false, true, true, true],
    );
  });
});

const CHILDREN = ["c-nn", "c-xgb", "c-rf"];
const TYPES = ["neural-net", "xgboost", "random-forest"];

function parent(...more: Parameters<typeof given>[0]): JobState {
  return given([submit({ model_type: "all", children: CHILDREN, artifact_path: null }), ...more]);
}

function child(i: number, ...more: Parameters<typeof given>[0]): JobState {
  return given([submit({ model_type: TYPES[i], parent_id: JOB }), ...more], CHILDREN[i]);
}

const ok = [start(), exit()];
const failing = [start(), exit({ exit_code: 1, artifact: null, stderr_tail: "bad" })];

Deno.test("deriveParent", async (t) => {
  await t.step("all children waiting -> started", () => {
    const p = deriveParent(parent(), [child(0), child(1), child(2)]);
    assert.equal(p.status, "started");
    assert.equal(p.message, "Training initiated for all model types");
    assert.equal(p.started_at, null);
  });
  await t.step("all children completed -> completed, times span the children", () => {
    const kids = [child(0, ...ok), child(1, ...ok), child(2, ...ok)];
    const p = deriveParent(parent(), kids);
    assert.equal(p.status, "completed");
    assert.equal(p.started_at, kids.map((k) => k.started_at!).sort()[0]);
    assert.equal(p.completed_at, kids.map((k) => k.completed_at!).sort().at(-1));
    assert.equal(p.error, null);
    assert.equal(p.failure_reason, null);
    assert.equal(p.model_path, null);
    assert.deepEqual(Object.keys(p.metrics).sort(), [...TYPES].sort());
  });
  await t.step("all finished with any failed -> failed with child_failed and each error", () => {
    const p = deriveParent(parent(), [child(0, ...ok), child(1, ...failing), child(2, cancel)]);
    assert.equal(p.status, "failed");
    assert.equal(p.failure_reason, "child_failed");
    assert.match(p.error ?? "", /^xgboost: the script exited with code 1\nbad$/);
    assert.ok(p.completed_at);
  });
  await t.step("a failed child while others run -> running, not failed yet", () => {
    const p = deriveParent(parent(), [child(0, start()), child(1, ...failing), child(2)]);
    assert.equal(p.status, "running");
    assert.equal(p.completed_at, null);
    assert.equal(p.failure_reason, null);
    assert.equal(p.error, null);
  });
  await t.step("a mix of waiting, running and completed -> running", () => {
    const p = deriveParent(parent(), [child(0, ...ok), child(1, start()), child(2)]);
    assert.equal(p.status, "running");
    assert.match(p.message, /in progress \(neural-net: completed, xgboost: running/);
  });
  await t.step("parent cancelled -> cancelled at its own time, whatever the children", () => {
    const cancelled = parent(cancel);
    const p = deriveParent(cancelled, [child(0, ...ok), child(1, start()), child(2)]);
    assert.equal(p.status, "cancelled");
    assert.equal(p.completed_at, cancelled.cancelled_at);
  });
  await t.step("children cancelled one by one -> cancelled", () => {
    const p = deriveParent(parent(), [child(0, cancel), child(1, cancel), child(2, cancel)]);
    assert.equal(p.status, "cancelled");
  });
  await t.step("progress counts each child the same, whatever its own total", () => {
    const step = (s: number, total: number) => ({
      type: "output" as const,
      events: [{
        type: "progress" as const,
        data: { step: s, total, message: null, metrics: null },
      }],
    });
    assert.equal(deriveParent(parent(), [child(0), child(1), child(2)]).progress, null);
    // 1,800 small steps must not outweigh 180: each child is a third of the parent.
    const partial = deriveParent(parent(), [
      child(0, start(), step(900, 1800)),
      child(1, start(), step(18, 180)),
      child(2),
    ]);
    assert.deepEqual([partial.progress?.step, partial.progress?.total], [600, 3000]);
    assert.equal(partial.progress?.message, "neural-net 50%, xgboost 10%, random-forest 0%");
    // A child at its last step is not done until it completes: the parent is not at 100%.
    const last = deriveParent(parent(), [
      child(0, ...ok),
      child(1, start(), step(10, 10)),
      child(2, start(), step(1999, 2000)),
    ]);
    assert.deepEqual([last.progress?.step, last.progress?.total], [1000 + 999 + 999, 3000]);
    // A completed child counts in full, even one that never reported progress.
    const p = deriveParent(parent(), [child(0, ...ok), child(1, start(), step(5, 10)), child(2)]);
    assert.deepEqual([p.progress?.step, p.progress?.total], [1500, 3000]);
  });
  await t.step("deriving twice equals deriving once, and the inputs are not changed", () => {
    const cases = [
      [parent(), [child(0), child(1), child(2)]],
      [parent(), [child(0, ...ok), child(1, ...failing), child(2, start())]],
      [parent(), [child(0, ...ok), child(1, ...failing), child(2, cancel)]],
      [parent(cancel), [child(0, ...ok), child(1, cancel), child(2, cancel)]],
    ] as const;
    for (const [p, kids] of cases) {
      const frozen = deepFreeze(structuredClone([p, kids] as const));
      const once = deriveParent(frozen[0], [...frozen[1]]);
      assert.deepEqual(deriveParent(once, [...frozen[1]]), once);
      assert.deepEqual(frozen, [p, kids]);
    }
  });
});
