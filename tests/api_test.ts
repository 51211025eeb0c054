/**
 * Every example of the contract (../shared/seed/train-api.md) through `app.request()`:
 * the documented fields, with their exact names and types. No supervisor: the HTTP layer
 * works without one; a LocalPort plays the worker where a job must be running.
 */
import assert from "node:assert/strict";
import { isAbsolute, join } from "node:path";
import { LocalPort } from "../jobs/worker_port.ts";
import { buildApp, type TestApp } from "./helpers/app.ts";
import { startedData } from "./helpers/jobs.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Claims the oldest waiting job and records its (pretend) process, as a worker would. */
async function startOne(t: TestApp): Promise<string> {
  const port = new LocalPort(t.store);
  const [job] = await port.claim(1);
  assert.ok(job, "a job to claim");
  await port.started(job.job_id, startedData());
  return job.job_id;
}

Deno.test("contract examples", async (t) => {
  await using app = await buildApp();
  let xgbId = "";

  await t.step("POST /train/xgboost", async () => {
    const res = await app.request("POST", "/train/xgboost");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    const { status, message, data } = res.body;
    assert.deepEqual({ status, message }, {
      status: "success",
      message: "Training initiated for xgboost",
    });
    assert.match(data.job_id, UUID);
    assert.equal(data.model_type, "xgboost");
    assert.equal(data.status, "started");
    xgbId = data.job_id;
  });

  await t.step("POST /train with the contract's full configuration", async () => {
    const res = await app.request("POST", "/train", {
      json: {
        model_type: "all",
        retrain: true,
        use_cv: true,
        hyperparameters: { learning_rate: 0.01, max_depth: 5 },
      },
    });
    assert.equal(res.status, 200);
    assert.match(res.body.job_id, UUID);
    assert.equal(res.body.status, "started");
    assert.equal(res.body.message, "Training initiated for all model types");
    assert.equal(res.body.model_type, "all");
    assert.equal(res.body.children.length, 3);
  });

  await t.step("GET /train/status/{job_id}", async () => {
    const res = await app.request("GET", `/train/status/${xgbId}`);
    assert.equal(res.status, 200);
    assert.equal(res.body.status, "success");
    assert.equal(res.body.message, "Job status retrieved successfully");
    const d = res.body.data;
    assert.deepEqual(
      {
        job_id: d.job_id,
        status: d.status,
        model_type: d.model_type,
        started_at: d.started_at,
        completed_at: d.completed_at,
        model_path: d.model_path,
        error: d.error,
        logs: d.logs,
      },
      {
        job_id: xgbId,
        status: "started",
        model_type: "xgboost",
        started_at: null,
        completed_at: null,
        model_path: null,
        error: null,
        logs: "",
      },
    );
  });

  await t.step("GET /train/status of a running job has a start time", async () => {
    assert.equal(await startOne(app), xgbId);
    const { body } = await app.request("GET", `/train/status/${xgbId}`);
    assert.equal(body.data.status, "running");
    assert.match(body.data.started_at, ISO);
    assert.equal(body.data.completed_at, null);
  });

  await t.step("GET /train/jobs?limit=5&status=running", async () => {
    for (let i = 0; i < 6; i++) await app.request("POST", "/train/random-forest");
    await startOne(app); // the "all" parent's first child
    const res = await app.request("GET", "/train/jobs?limit=5&status=running");
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body).sort(), ["filtered_count", "jobs", "total_count"]);
    assert.equal(res.body.total_count, 1 + 4 + 6);
    // The started child makes its "all" parent running too.
    assert.equal(res.body.filtered_count, 3);
    assert.deepEqual(res.body.jobs.map((j: { model_type: string }) => j.model_type).sort(), [
      "all",
      "neural-net",
      "xgboost",
    ]);
    for (const job of res.body.jobs) {
      assert.match(job.job_id, UUID);
      assert.equal(job.status, "running");
      assert.equal(typeof job.model_type, "string");
    }
    const page = await app.request("GET", "/train/jobs?limit=5");
    assert.equal(page.body.jobs.length, 5);
    assert.equal(page.body.filtered_count, 11);
  });

  for (const path of ["/train/job/cancel/", "/train/job/"]) {
    await t.step(`DELETE ${path}{job_id}`, async () => {
      const { body: sub } = await app.request("POST", "/train/neural-net");
      const id = sub.data.job_id;
      const res = await app.request("DELETE", `${path}${id}`);
      assert.equal(res.status, 200);
      assert.equal(res.body.status, "success");
      assert.equal(res.body.message, `Job ${id} cancelled successfully`);
      assert.equal(res.body.data.job_id, id);
      const after = await app.request("GET", `/train/status/${id}`);
      assert.equal(after.body.data.status, "cancelled");
      assert.match(after.body.data.completed_at, ISO);
    });
  }

  await t.step("GET /train/models/available", async () => {
    await Deno.mkdir(app.modelsDir, { recursive: true });
    const name = "xgboost_model_2025-10-30.joblib";
    await Deno.writeFile(join(app.modelsDir, name), new Uint8Array(24576));
    await Deno.writeTextFile(join(app.modelsDir, "notes.txt"), "not a model");
    const res = await app.request("GET", "/train/models/available");
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body.available_models), [name]);
    const m = res.body.available_models[name];
    assert.equal(m.type, "xgboost");
    assert.equal(m.size, 24576);
    assert.match(m.modified, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
    assert.ok(m.path.endsWith(`models/${name}`));
    assert.equal(res.body.models_directory, app.modelsDir);
    assert.ok(isAbsolute(res.body.models_directory));
    assert.equal(m.status, "unrecorded", "a file made before records existed");
  });
});

Deno.test("GET /train/models/available with no models directory yet", async () => {
  await using app = await buildApp();
  const res = await app.request("GET", "/train/models/available");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {
    available_models: {},
    models_directory: app.modelsDir,
    artifact_store: `folder ${app.modelsDir}`,
    checked: false,
    counts: { ok: 0, missing: 0, corrupt: 0, unrecorded: 0 },
  });
});

Deno.test("GET /health", async (t) => {
  await using app = await buildApp();
  await app.request("POST", "/train/xgboost");
  await app.request("POST", "/train/xgboost");
  await startOne(app);
  await t.step("reports the database, the queue and each model type", async () => {
    const res = await app.request("GET", "/health");
    assert.equal(res.status, 200);
    const b = res.body;
    assert.equal(b.status, "ok");
    assert.equal(b.database, "ok");
    assert.equal(b.queue_depth, 1);
    assert.equal(b.running, 1);
    assert.equal(b.max_concurrent_jobs, 2);
    assert.deepEqual(Object.keys(b.model_types).sort(), ["neural-net", "random-forest", "xgboost"]);
    assert.equal(typeof b.uptime_seconds, "number");
  });
  await t.step("answers 503 once the server is shutting down", async () => {
    app.lifecycle.shuttingDown = true;
    const res = await app.request("GET", "/health");
    assert.equal(res.status, 503);
    assert.equal(res.body.status, "error");
    const post = await app.request("POST", "/train/xgboost");
    assert.equal(post.status, 503);
  });
});
