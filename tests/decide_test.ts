/** decide(): given events / when command / then events, for every command and status. */
import assert from "node:assert/strict";
import { decide } from "../jobs/decide.ts";
import { ConflictError, NotFoundError } from "../errors.ts";
import {
  cancel,
  exit,
  exitReport,
  given,
  JOB,
  logLines,
  start,
  startedData,
  submit,
  submittedData,
  when,
} from "./helpers/jobs.ts";

const running = () => given([submit(), start()]);

Deno.test("submit", async (t) => {
  await t.step("a new job is submitted and waits", () => {
    const { events, state } = when(undefined, submit());
    assert.deepEqual(events, [{ type: "submitted", data: submittedData() }]);
    assert.equal(state.status, "started");
    assert.equal(state.message, "Training initiated for xgboost");
  });
  await t.step("reusing a model completes at once and says so", () => {
    const { events, state } = when(undefined, {
      type: "submit",
      data: submittedData({ retrain: false }),
      reuse: { path: "/models/old.joblib", fingerprint: "0123456789abcdef" },
    });
    assert.deepEqual(events.map((e) => e.type), ["submitted", "completed"]);
    assert.equal(state.status, "completed");
    assert.equal(state.model_path, "/models/old.joblib");
    assert.match(state.message, /^reused old\.joblib: trained with the same spec 01234567; not/);
    assert.ok(state.completed_at);
  });
  await t.step("an existing job cannot be submitted again", () => {
    assert.throws(() => decide(submit(), running(), JOB), ConflictError);
  });
});

Deno.test("start", async (t) => {
  await t.step("a waiting job starts running and records its process", () => {
    const { events, state } = when(given([submit()]), start());
    assert.deepEqual(events, [{ type: "started", data: startedData() }]);
    assert.equal(state.status, "running");
    assert.ok(state.started_at);
    assert.equal(state.process?.pid, 4242);
    assert.equal(state.process?.alive, true);
  });
  await t.step("a job cancelled before start records the process but stays cancelled", () => {
    const { events, state } = when(given([submit(), cancel]), start());
    assert.deepEqual(events.map((e) => e.type), ["started"]);
    assert.equal(state.status, "cancelled");
    assert.equal(state.started_at, null);
    assert.equal(state.process?.alive, true);
  });
  await t.step("a running job cannot start twice", () => {
    assert.throws(() => decide(start(), running(), JOB), ConflictError);
  });
  await t.step("finished jobs cannot start", () => {
    const failed = given([submit(), { type: "fail", reason: "spawn_failed", error: "x" }]);
    assert.throws(() => decide(start(), failed, JOB), /is failed, it cannot start/);
    const reused = given([{
      type: "submit",
      data: submittedData(),
      reuse: { path: "/m.joblib", fingerprint: "f" },
    }]);
    assert.throws(() => decide(start(), reused, JOB), ConflictError);
  });
  await t.step("a parent job has no process of its own", () => {
    const parent = given([submit({ model_type: "all", children: ["c1", "c2"] })]);
    assert.throws(() => decide(start(), parent, JOB), ConflictError);
  });
  await t.step("an unknown job is not found", () => {
    assert.throws(() => decide(start(), undefined, JOB), NotFoundError);
  });
});

Deno.test("output", async (t) => {
  const out = logLines("a", "b");
  await t.step("is recorded while the process is alive", () => {
    const { events, state } = when(running(), out);
    assert.deepEqual(events, [{ type: "log", data: { stream: "stdout", lines: ["a", "b"] } }]);
    assert.equal(state.log_lines, 2);
  });
  await t.step("is recorded after a cancel while the process still runs", () => {
    assert.equal(when(given([submit(), start(), cancel]), out).events.length, 1);
  });
  await t.step("is ignored before the process started", () => {
    assert.deepEqual(decide(out, given([submit()]), JOB), []);
  });
  await t.step("is ignored once the process has exited", () => {
    assert.deepEqual(decide(out, given([submit(), start(), exit()]), JOB), []);
    assert.deepEqual(decide(out, given([submit(), start(), cancel, exit()]), JOB), []);
  });
});

Deno.test("exit report mapping", async (t) => {
  type Report = Partial<ReturnType<typeof exitReport>>;
  const ended = (over: Report) => when(running(), exit(over));
  await t.step("exit 0 with the artifact -> completed", () => {
    const { events, state } = ended({});
    assert.deepEqual(events.map((e) => e.type), ["completed", "process_exited"]);
    assert.equal(state.status, "completed");
    assert.equal(state.model_path, "/models/xgboost_model_x.joblib");
    assert.equal(state.exit_code, 0);
    assert.equal(state.error, null);
    assert.equal(state.process?.alive, false);
  });
  const cases: [string, Report, string, RegExp][] = [
    [
      "output that could not be stored, even with exit 0 and the artifact",
      { output_failure: "the job's output could not be stored after 8 tries: disk I/O error" },
      "output_failed",
      /could not be stored after 8 tries: disk I\/O error/,
    ],
    ["exit 0 without artifact", { artifact: null }, "artifact_missing", /wrote no model file/],
    [
      "exit 0 with a refused artifact",
      { artifact: null, artifact_refused: "the model file /m/x is a symlink" },
      "artifact_refused",
      /\/m\/x is a symlink; the model is not accepted/,
    ],
    [
      "non-zero exit",
      { exit_code: 3, artifact: null, stderr_tail: "boom" },
      "exit_nonzero",
      /code 3\nboom/,
    ],
    [
      "non-zero exit with the script's reason",
      { exit_code: 2, script_failure: { reason: "dataset_not_found", message: "no data" } },
      "dataset_not_found",
      /^no data$/,
    ],
    [
      "timeout",
      { exit_code: null, signal: "SIGTERM", stopped_for: "timeout", timeout_seconds: 7 },
      "timeout",
      /7 s exceeded/,
    ],
    [
      "shutdown",
      { exit_code: null, signal: "SIGTERM", stopped_for: "shutdown" },
      "interrupted",
      /shut down/,
    ],
    [
      "killed by a signal",
      { exit_code: null, signal: "SIGKILL", artifact: null },
      "killed",
      /SIGKILL/,
    ],
    ["killed even with an artifact", { exit_code: null, signal: "SIGSEGV" }, "killed", /SIGSEGV/],
  ];
  await t.step("a shutdown names who shut down: the server, or the remote worker", () => {
    const shutdown = exit({ exit_code: null, signal: "SIGTERM", stopped_for: "shutdown" });
    assert.equal(
      when(running(), shutdown).state.error,
      "the server shut down while the job was running",
    );
    const remote = given([submit(), start({ worker_name: "gpu-box-1" })]);
    assert.match(
      when(remote, shutdown).state.error ?? "",
      /worker gpu-box-1 shut down while the job was running/,
    );
  });
  await t.step("a remote worker's stop requeues a job with attempts left", () => {
    const report = {
      exit_code: 143,
      signal: null,
      stopped_for: "shutdown" as const,
      group_gone: true,
    };
    const shutdown = exit(report);
    const remote = given([
      submit({ max_attempts: 2 }),
      start({ worker_name: "spot-1", worker_id: "spot-1-ab", attempt: 1 }),
    ]);
    const { events, state } = when(remote, shutdown);
    assert.deepEqual(events.map((e) => e.type), ["process_exited", "requeued"]);
    assert.deepEqual(events[1].data, {
      attempt: 1,
      reason: "worker_stopped",
      worker_id: "spot-1-ab",
      worker_name: "spot-1",
    });
    assert.equal(state.status, "started");
    assert.equal(state.process, null);
    assert.equal(state.exit_code, null, "the stopped attempt's exit code is not the job's");
    // A group that outlived the stop could overlap a second run: that attempt ends the job.
    const survived = when(remote, exit({ ...report, group_gone: false }));
    assert.equal(survived.state.status, "failed");
    assert.equal(survived.state.failure_reason, "interrupted");
    // The server's own supervisor: no other worker to take it.
    const local = given([submit({ max_attempts: 2 }), start({ attempt: 1 })]);
    assert.equal(when(local, shutdown).state.failure_reason, "interrupted");
  });
  for (const [name, report, reason, error] of cases) {
    await t.step(`${name} -> failed (${reason})`, () => {
      const { events, state } = ended(report);
      assert.deepEqual(events.map((e) => e.type), ["failed", "process_exited"]);
      assert.equal(state.status, "failed");
      assert.equal(state.failure_reason, reason);
      assert.match(state.error ?? "", error);
      assert.equal(state.model_path, null);
      assert.equal(state.exit_code, exitReport(report).exit_code);
      assert.equal(state.process?.alive, false);
    });
  }
  await t.step("a stop is recorded as evidence", () => {
    const { events } = ended({ exit_code: null, stopped_for: "timeout", stopped_with: "SIGKILL" });
    const failed = events[0];
    assert.equal(failed.type, "failed");
    assert.deepEqual(failed.type === "failed" && failed.data.evidence, {
      stopped_for: "timeout",
      stopped_with: "SIGKILL",
      group_gone: true,
    });
  });
  await t.step("escaped processes killed at the end are recorded", () => {
    const { events } = ended({ strays_killed: [71, 72], group_gone: true });
    const exited = events.find((e) => e.type === "process_exited");
    assert.deepEqual(exited?.data, {
      exit_code: 0,
      signal: null,
      stopped_with: null,
      group_gone: true,
      strays_killed: [71, 72],
    });
    const stopped = ended({ stopped_for: "timeout", strays_killed: [73] }).events[0];
    assert.deepEqual(stopped.type === "failed" && stopped.data.evidence?.strays_killed, [73]);
    const none = ended({ strays_killed: [] }).events.find((e) => e.type === "process_exited");
    assert.equal(none && "strays_killed" in none.data, false, "old shape when none escaped");
  });
  await t.step("a cancelled job's exit only records how the process ended", () => {
    const before = given([submit(), start(), cancel]);
    const { events, state } = when(before, exit({ signal: "SIGTERM", stopped_with: "SIGTERM" }));
    assert.deepEqual(events.map((e) => e.type), ["process_exited"]);
    assert.equal(state.status, "cancelled");
    assert.equal(state.process?.stopped_with, "SIGTERM");
    assert.equal(state.process?.alive, false);
  });
  await t.step("a second exit report changes nothing", () => {
    assert.deepEqual(decide(exit(), given([submit(), start(), exit()]), JOB), []);
  });
  await t.step("an exit of a job that never ran changes nothing", () => {
    assert.deepEqual(decide(exit(), given([submit()]), JOB), []);
    const parent = given([submit({ model_type: "all", children: ["c1"] })]);
    assert.deepEqual(decide(exit(), { ...parent, status: "running" }, JOB), []);
  });
});

Deno.test("cancel", async (t) => {
  await t.step("a waiting job is cancelled without having run", () => {
    const { events, state } = when(given([submit()]), cancel);
    assert.deepEqual(events, [{
      type: "cancelled",
      data: { reason: "by test", was_running: false },
    }]);
    assert.equal(state.status, "cancelled");
    assert.ok(state.cancelled_at);
    assert.equal(state.completed_at, state.cancelled_at);
  });
  await t.step("a running job is cancelled at once; its process is still alive", () => {
    const { events, state } = when(running(), cancel);
    assert.deepEqual(events, [{
      type: "cancelled",
      data: { reason: "by test", was_running: true },
    }]);
    assert.equal(state.status, "cancelled");
    assert.equal(state.process?.alive, true);
  });
  for (
    const [status, finish] of [
      ["completed", [exit()]],
      ["failed", [exit({ exit_code: 1 })]],
      ["cancelled", [cancel]],
    ] as const
  ) {
    await t.step(`a ${status} job -> ConflictError`, () => {
      const done = given([submit(), start(), ...finish]);
      assert.throws(() => decide(cancel, done, JOB), (e) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.status, 409);
        assert.match(e.message, new RegExp(`already ${status}`));
        return true;
      });
    });
  }
  await t.step("an unknown job -> NotFoundError", () => {
    assert.throws(() => decide(cancel, undefined, JOB), NotFoundError);
  });
});

Deno.test("fail", async (t) => {
  const fail = { type: "fail", reason: "runtime_missing", error: "no python" } as const;
  await t.step("a waiting job fails with the reason", () => {
    const { state } = when(given([submit()]), fail);
    assert.equal(state.status, "failed");
    assert.equal(state.failure_reason, "runtime_missing");
    assert.equal(state.error, "no python");
  });
  await t.step("a finished job is left alone", () => {
    assert.deepEqual(decide(fail, given([submit(), cancel]), JOB), []);
    assert.deepEqual(decide(fail, given([submit(), start(), exit()]), JOB), []);
  });
  await t.step("an unknown job -> NotFoundError", () => {
    assert.throws(() => decide(fail, undefined, JOB), NotFoundError);
  });
});

Deno.test("strays_killed", async (t) => {
  await t.step("an ended job records the kill as a warning naming the pids", () => {
    const { events, state } = when(given([submit(), start(), exit()]), {
      type: "strays_killed",
      pids: [81, 82],
    });
    assert.equal(events.length, 1);
    assert.equal(events[0].type, "warning");
    assert.match(state.warnings.at(-1) ?? "", /killed 2 process\(es\).*pids 81, 82/);
    assert.equal(state.status, "completed");
  });
  await t.step("nothing killed, nothing recorded", () => {
    const done = given([submit(), start(), exit()]);
    assert.deepEqual(decide({ type: "strays_killed", pids: [] }, done, JOB), []);
  });
});
