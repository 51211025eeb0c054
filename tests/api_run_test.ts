/**
 * Jobs that really run: the app built as main.ts builds it (Supervisor + LocalPort) with a
 * MODEL_REGISTRY of small shell scripts, driven through `app.request()`.
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import {
  buildApp,
  ensureRecorded,
  liveGroupMembers,
  SCRIPTS,
  type TestApp,
  waitForJob,
} from "./helpers/app.ts";

const sh = (script: string, ...args: string[]) => ({
  command: ["/bin/sh", `./${script}`, ...args],
});

const terminal = (d: { status: string }) => ["completed", "failed", "cancelled"].includes(d.status);

async function train(t: TestApp, type: string, json: unknown = { retrain: true }) {
  const res = await t.request("POST", `/train/${type}`, { json });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

Deno.test("a job that completes and one that fails", async (t) => {
  await using app = await buildApp({
    supervisor: true,
    files: SCRIPTS,
    registry: { ok: sh("ok.sh"), broken: sh("fail.sh") },
  });

  await t.step(
    "exit 0 with the model file -> completed, with logs, progress and metrics",
    async () => {
      const job = await train(app, "ok", {
        retrain: true,
        hyperparameters: { depth: 2, any: [1] },
      });
      const done = await waitForJob(app, job.job_id, terminal);
      assert.equal(done.status, "completed", done.error);
      assert.equal(done.message, "Training completed successfully");
      assert.match(
        basename(done.model_path),
        /^ok_model_\d{4}-\d{2}-\d{2}_\d{6}_[0-9a-f]{8}\.joblib$/,
      );
      assert.equal(await Deno.readTextFile(done.model_path), "model");
      assert.match(done.started_at, /Z$/);
      assert.ok(done.completed_at >= done.started_at);
      assert.equal(done.exit_code, 0);
      assert.equal(done.error, null);
      assert.deepEqual(done.metrics, { accuracy: 0.9 });
      assert.deepEqual([done.progress.step, done.progress.total], [1, 1]);
      const lines = done.logs.split("\n");
      assert.ok(lines.includes("training ok"), done.logs);
      assert.ok(lines.includes('hp={"depth":2,"any":[1]}'), done.logs);
      assert.ok(!done.logs.includes("@@trainer"), "protocol lines are not log lines");
    },
  );

  await t.step("its log and events can be paged", async () => {
    const { body } = await app.request("GET", "/train/jobs?model_type=ok");
    const id = body.jobs[0].job_id;
    const logs = await app.request("GET", `/train/logs/${id}?limit=1`);
    assert.equal(logs.status, 200);
    assert.equal(logs.body.entries.length, 1);
    assert.equal(logs.body.next_after, logs.body.entries[0].seq);
    const next = await app.request("GET", `/train/logs/${id}?after=${logs.body.next_after}`);
    assert.equal(next.status, 200);
    // stdout and stderr are read apart: which of the two lines was logged first is not fixed.
    const paged = [logs, next].flatMap((r) =>
      r.body.entries.flatMap((e: { lines: string[] }) => e.lines)
    );
    assert.deepEqual(paged.sort(), ['hp={"depth":2,"any":[1]}', "training ok"]);
    const events = await app.request("GET", `/train/job/${id}/events?type=submitted,completed`);
    assert.equal(events.status, 200);
    assert.deepEqual(events.body.events.map((e: { type: string }) => e.type), [
      "submitted",
      "completed",
    ]);
  });

  await t.step("a non-zero exit -> failed with the code, the reason and stderr", async () => {
    const job = await train(app, "broken");
    const done = await waitForJob(app, job.job_id, terminal);
    assert.equal(done.status, "failed");
    assert.equal(done.failure_reason, "exit_nonzero");
    assert.equal(done.exit_code, 3);
    assert.match(done.error, /exited with code 3\nsomething broke/);
    assert.equal(done.model_path, null);
    const models = await app.request("GET", "/train/models/available");
    assert.deepEqual(
      Object.values(models.body.available_models).map((m) => (m as { type: string }).type),
      ["ok"],
    );
  });
});

Deno.test("retrain: a reused model, then a new one; files are never overwritten", async (t) => {
  await using app = await buildApp({
    supervisor: true,
    files: SCRIPTS,
    registry: { ok: sh("ok.sh") },
  });
  const first = await waitForJob(app, (await train(app, "ok")).job_id, terminal);
  assert.equal(first.status, "completed");
  await ensureRecorded(app, first.model_path);

  await t.step("retrain:false completes at once with the existing model", async () => {
    const job = await train(app, "ok", { retrain: false });
    assert.equal(job.status, "completed");
    assert.equal(job.model_path, first.model_path);
  });
  await t.step("retrain:true trains a new model into a new file", async () => {
    const job = await train(app, "ok", { retrain: true });
    assert.equal(job.status, "started");
    const done = await waitForJob(app, job.job_id, terminal);
    assert.equal(done.status, "completed");
    assert.notEqual(done.model_path, first.model_path);
    await ensureRecorded(app, done.model_path);
    const models = await app.request("GET", "/train/models/available");
    assert.equal(Object.keys(models.body.available_models).length, 2);
    const reuse = await train(app, "ok", { retrain: false });
    assert.equal(reuse.model_path, done.model_path, "the newest model is reused");
  });
});

Deno.test('"all" runs one child per type; its status follows them', async () => {
  await using app = await buildApp({
    supervisor: true,
    files: SCRIPTS,
    maxConcurrent: 3,
    registry: { "neural-net": sh("ok.sh"), "xgboost": sh("ok.sh"), "random-forest": sh("fail.sh") },
  });
  const res = await app.request("POST", "/train", { json: { model_type: "all", retrain: true } });
  assert.equal(res.status, 200);
  const done = await waitForJob(app, res.body.job_id, terminal);
  assert.equal(done.status, "failed");
  assert.equal(done.failure_reason, "child_failed");
  assert.match(done.error, /^random-forest: the script exited with code 3/);
  const byType = Object.fromEntries(
    done.children.map((c: { model_type: string; status: string }) => [c.model_type, c.status]),
  );
  assert.deepEqual(byType, {
    "neural-net": "completed",
    xgboost: "completed",
    "random-forest": "failed",
  });
  assert.ok(done.started_at && done.completed_at);
});

Deno.test("cancelling a running parent stops its children's processes", async () => {
  await using app = await buildApp({
    supervisor: true,
    files: SCRIPTS,
    maxConcurrent: 3,
    graceSeconds: 5,
    registry: {
      "neural-net": sh("hold.sh", "./release"),
      "xgboost": sh("hold.sh", "./release"),
      "random-forest": sh("hold.sh", "./release"),
    },
  });
  const res = await app.request("POST", "/train", { json: { model_type: "all", retrain: true } });
  const parent = res.body.job_id;
  const running = await waitForJob(
    app,
    parent,
    (d) => d.children.every((c: { status: string }) => c.status === "running"),
    "every child running",
  );
  assert.equal(running.status, "running");
  const cancel = await app.request("DELETE", `/train/job/${parent}`);
  assert.equal(cancel.status, 200);
  assert.equal(cancel.body.data.status, "cancelled");
  for (const child of running.children) {
    const gone = await waitForJob(
      app,
      child.job_id,
      (d) => d.process && !d.process.alive,
      "process gone",
    );
    assert.equal(gone.status, "cancelled");
    assert.equal(gone.process.stopped_with, "SIGTERM");
    assert.equal(gone.process.group_gone, true);
    assert.deepEqual(liveGroupMembers(gone.process.pgid), [], "the process group is gone");
    assert.equal(gone.model_path, null);
  }
  const models = await app.request("GET", "/train/models/available");
  assert.deepEqual(models.body.available_models, {});
  await Deno.writeTextFile(join(app.dir, "release"), "");
});

Deno.test("a job over its time limit is stopped and fails with timeout", async () => {
  await using app = await buildApp({
    supervisor: true,
    files: SCRIPTS,
    registry: { slow: sh("hold.sh", "./release") },
  });
  const job = await train(app, "slow", { retrain: true, timeout_seconds: 1 });
  const done = await waitForJob(app, job.job_id, (d) => terminal(d) && !d.process.alive);
  assert.equal(done.status, "failed");
  assert.equal(done.failure_reason, "timeout");
  assert.match(done.error, /time limit of 1 s exceeded/);
  assert.equal(done.timeout_seconds, 1);
  assert.equal(done.process.stopped_with, "SIGTERM");
  assert.deepEqual(liveGroupMembers(done.process.pgid), []);
});
