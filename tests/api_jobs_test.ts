/** Request semantics through `app.request()`: reuse, "all", hyperparameters, idempotency. */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { metadataPathFor } from "../models/artifacts.ts";
import { LocalPort } from "../jobs/worker_port.ts";
import { buildApp, recordTrainedModel, type TestApp, writeTrainedModel } from "./helpers/app.ts";
import { startedData } from "./helpers/jobs.ts";

/** A model a finished job stored and recorded: only recorded models are reused. */
async function writeModel(t: TestApp, name: string, mtime: Date): Promise<string> {
  const m = { model_type: "xgboost", mtime };
  return (await recordTrainedModel(t.store, t.modelsDir, name, m)).path;
}

async function status(t: TestApp, id: string) {
  const res = await t.request("GET", `/train/status/${id}`);
  assert.equal(res.status, 200);
  return res.body.data;
}

Deno.test("retrain", async (t) => {
  await using app = await buildApp();
  const base = Date.parse("2025-06-01T10:00:00Z");
  await writeModel(app, "xgboost_model_2025-06-01_100000_aaaaaaaa.joblib", new Date(base));
  // Newer by a fraction of a second, and its name sorts first: only the time tells.
  const newest = await writeModel(
    app,
    "xgboost_model_2025-06-01_100000_00000000.joblib",
    new Date(base + 600),
  );
  await writeModel(
    app,
    "random-forest_model_2030-01-01_000000_ffffffff.joblib",
    new Date(base + 9e6),
  );

  await t.step(
    "retrain:false with a model file completes at once, pointing at the newest",
    async () => {
      const res = await app.request("POST", "/train/xgboost", { json: { retrain: false } });
      assert.equal(res.status, 200);
      assert.equal(res.body.data.status, "completed");
      assert.equal(res.body.data.model_path, newest);
      assert.match(
        res.body.message,
        /^reused xgboost_model_\S+_00000000\.joblib: trained with the same spec [0-9a-f]{8}.*retrain/,
      );
      const job = await status(app, res.body.data.job_id);
      assert.equal(job.status, "completed");
      assert.equal(job.model_path, newest);
      assert.match(job.completed_at, /Z$/);
      assert.match(job.message, /same spec.*not retrained/);
    },
  );
  await t.step("retrain defaults to false, on POST /train too", async () => {
    const res = await app.request("POST", "/train", { json: { model_type: "xgboost" } });
    assert.equal(res.body.status, "completed");
    assert.equal(res.body.model_path, newest);
    assert.match(res.body.message, /^reused .*same spec/);
  });
  await t.step("retrain:true starts a new training job", async () => {
    const res = await app.request("POST", "/train/xgboost", { json: { retrain: true } });
    assert.equal(res.body.data.status, "started");
    assert.equal(res.body.message, "Training initiated for xgboost");
    assert.equal(res.body.data.model_path, null);
  });
  await t.step("retrain:false without a model of that type trains", async () => {
    const res = await app.request("POST", "/train/neural-net", { json: { retrain: false } });
    assert.equal(res.body.data.status, "started");
  });
});

Deno.test("retrain:false reuses only a model trained with the same spec", async (t) => {
  await using app = await buildApp();
  const name = (n: number) => `xgboost_model_2025-06-01_10000${n}_0000000${n}.joblib`;
  const when = (n: number) => new Date(Date.parse("2025-06-01T10:00:00Z") + n * 1000);
  const reuse = (json: unknown) => app.request("POST", "/train/xgboost", { json });

  await t.step("a model recorded with another dataset sha256 is not reused", async () => {
    await recordTrainedModel(app.store, app.modelsDir, name(1), {
      model_type: "xgboost",
      dataset: { path: "/data/other.csv", sha256: "ab".repeat(32), target: null, task: "auto" },
      mtime: when(1),
    });
    const res = await reuse({ retrain: false });
    assert.equal(res.body.data.status, "started");
  });
  await t.step("nor one with other hyperparameters or another use_cv", async () => {
    const hp = { model_type: "xgboost", hyperparameters: { max_depth: 3 } };
    await recordTrainedModel(app.store, app.modelsDir, name(2), { ...hp, mtime: when(2) });
    const cv = { ...hp, use_cv: false, mtime: when(3) };
    await recordTrainedModel(app.store, app.modelsDir, name(3), cv);
    assert.equal((await reuse({ retrain: false })).body.data.status, "started");
    assert.equal(
      (await reuse({ retrain: false, use_cv: false })).body.data.status,
      "started",
      "the newest model has max_depth 3",
    );
  });
  await t.step("nor a model without metadata, or with metadata that is not JSON", async () => {
    await Deno.writeTextFile(join(app.modelsDir, name(4)), "model");
    const broken = join(app.modelsDir, name(5));
    await Deno.writeTextFile(broken, "model");
    await Deno.writeTextFile(metadataPathFor(broken), "{not json");
    assert.equal((await reuse({ retrain: false })).body.data.status, "started");
  });
  await t.step("nor an unrecorded file, though its metadata has the spec", async () => {
    await writeTrainedModel(app.modelsDir, name(6), { model_type: "xgboost", mtime: when(6) });
    assert.equal((await reuse({ retrain: false })).body.data.status, "started");
  });
  await t.step("the newest model with the same spec is, however old", async () => {
    const res = await reuse({ retrain: false, hyperparameters: { max_depth: 3 } });
    assert.equal(res.body.data.status, "completed");
    assert.equal(res.body.data.model_path, join(app.modelsDir, name(2)));
    assert.match(res.body.message, new RegExp(`^reused ${name(2)}: trained with the same spec`));
  });
});

Deno.test("retrain:false does not reuse the file of a job still running", async () => {
  await using app = await buildApp();
  const older = await writeModel(
    app,
    "xgboost_model_2025-01-01_000000_00000000.joblib",
    new Date(),
  );
  const res = await app.request("POST", "/train/xgboost", { json: { retrain: true } });
  const port = new LocalPort(app.store);
  const [claimed] = await port.claim(1);
  assert.equal(claimed?.job_id, res.body.data.job_id);
  await port.started(claimed!.job_id, startedData());
  // The script has written its file but has not exited: it may still fail.
  await writeTrainedModel(app.modelsDir, basename(claimed!.artifact_path!), {
    model_type: "xgboost",
    mtime: new Date(Date.now() + 60_000),
  });
  const again = await app.request("POST", "/train/xgboost", { json: { retrain: false } });
  assert.equal(again.body.data.status, "completed");
  assert.equal(again.body.data.model_path, older);
});

Deno.test('model_type "all"', async (t) => {
  await using app = await buildApp();
  let parent = "";
  let children: { job_id: string; model_type: string; status: string }[] = [];

  await t.step("one child per registered type, hyperparameters split per type", async () => {
    const res = await app.request("POST", "/train", {
      json: {
        model_type: "all",
        retrain: true,
        hyperparameters: { learning_rate: 0.05, max_depth: 4, epochs: 7, n_estimators: 9 },
      },
    });
    assert.equal(res.status, 200);
    parent = res.body.job_id;
    children = res.body.children;
    assert.deepEqual(children.map((c) => c.model_type).sort(), [
      "neural-net",
      "random-forest",
      "xgboost",
    ]);
    const hp = async (type: string) =>
      (await status(app, children.find((c) => c.model_type === type)!.job_id)).hyperparameters;
    const [nn, xgb, rf] = [await hp("neural-net"), await hp("xgboost"), await hp("random-forest")];
    assert.equal(nn.learning_rate, 0.05);
    assert.equal(nn.epochs, 7);
    assert.equal(nn.max_depth, undefined);
    assert.equal(xgb.learning_rate, 0.05);
    assert.equal(xgb.max_depth, 4);
    assert.equal(xgb.n_estimators, 9);
    assert.equal(xgb.epochs, undefined);
    assert.equal(rf.max_depth, 4);
    assert.equal(rf.learning_rate, undefined);
  });
  await t.step("the parent's status shows its children", async () => {
    const job = await status(app, parent);
    assert.equal(job.status, "started");
    assert.equal(job.model_type, "all");
    assert.deepEqual(
      job.children.map((c: { job_id: string }) => c.job_id),
      children.map((c) => c.job_id),
    );
    const list = await app.request("GET", `/train/jobs?parent_id=${parent}`);
    assert.equal(list.body.filtered_count, 3);
  });
  await t.step("a key no model knows -> 422", async () => {
    const res = await app.request("POST", "/train", {
      json: { model_type: "all", hyperparameters: { max_depth: 4, warp_factor: 9 } },
    });
    assert.equal(res.status, 422);
    assert.match(res.body.message, /warp_factor/);
    assert.doesNotMatch(res.body.message, /max_depth/);
  });
  await t.step("cancelling the parent cancels its children", async () => {
    const res = await app.request("DELETE", `/train/job/cancel/${parent}`);
    assert.equal(res.status, 200);
    assert.equal((await status(app, parent)).status, "cancelled");
    for (const c of children) {
      const child = await status(app, c.job_id);
      assert.equal(child.status, "cancelled");
      assert.match(child.message, /parent job was cancelled/);
    }
    assert.equal((await app.request("DELETE", `/train/job/${parent}`)).status, 409);
  });
  await t.step("POST /train/all works too", async () => {
    const res = await app.request("POST", "/train/all", { json: { retrain: true } });
    assert.equal(res.status, 200);
    assert.equal(res.body.message, "Training initiated for all model types");
    assert.equal(res.body.data.model_type, "all");
    assert.equal(res.body.data.children.length, 3);
  });
});

Deno.test("Idempotency-Key", async (t) => {
  await using app = await buildApp();
  const post = (key: string, json: unknown, path = "/train") =>
    app.request("POST", path, { json, headers: { "idempotency-key": key } });
  await t.step("the same key and body return the same job, marked as a replay", async () => {
    const body = { model_type: "xgboost", retrain: true, hyperparameters: { max_depth: 3 } };
    const first = await post("key-1", body);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("idempotent-replayed"), null);
    const again = await post("key-1", {
      hyperparameters: { max_depth: 3 },
      retrain: true,
      model_type: "xgboost",
    });
    assert.equal(again.status, 200);
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.equal(again.body.job_id, first.body.job_id);
    const list = await app.request("GET", "/train/jobs");
    assert.equal(list.body.total_count, 1);
  });
  await t.step("the same key with a different body -> 409", async () => {
    const res = await post("key-1", {
      model_type: "xgboost",
      retrain: true,
      hyperparameters: { max_depth: 4 },
    });
    assert.equal(res.status, 409);
    assert.equal(res.body.status, "error");
    assert.match(res.body.message, /different request body/);
  });
  await t.step("concurrent requests with one key create one job", async () => {
    const results = await Promise.all(
      Array.from({ length: 5 }, () => post("key-2", { retrain: true }, "/train/random-forest")),
    );
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200]);
    assert.equal(new Set(results.map((r) => r.body.data.job_id)).size, 1);
    assert.equal(results.filter((r) => r.headers.get("idempotent-replayed") === "true").length, 4);
  });
  await t.step('an "all" job replays with its children', async () => {
    const first = await post("key-3", { model_type: "all", retrain: true });
    const again = await post("key-3", { model_type: "all", retrain: true });
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.equal(again.body.job_id, first.body.job_id);
    assert.deepEqual(again.body.children, first.body.children);
  });
});
