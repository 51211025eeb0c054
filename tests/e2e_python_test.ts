/** E2E: the built-in Python models train for real, report progress and leave loadable files. */
import assert from "node:assert/strict";
import { basename } from "node:path";
import {
  http,
  python,
  requireTrainingPython,
  Server,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

/** Small hyperparameters: each model trains in about a second. */
const FAST: Record<string, Record<string, unknown>> = {
  xgboost: { n_estimators: 20, max_depth: 3 },
  "random-forest": { n_estimators: 30 },
  "neural-net": { epochs: 30, hidden_layer_sizes: [32] },
};

/** Loads a model file with joblib and scores it on the default dataset. */
const SCORE = `import sys, joblib
from sklearn.datasets import load_breast_cancer
X, y = load_breast_cancer(return_X_y=True)
predicted = joblib.load(sys.argv[1]).predict(X)
assert len(predicted) == len(y)
print((predicted == y).mean())`;

type Reply = Awaited<ReturnType<typeof http>>;

Deno.test("e2e: built-in models train with real Python", async (t) => {
  await requireTrainingPython();
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    server = await Server.start(ws.env({ MAX_CONCURRENT_JOBS: "3" }));
    const base = server.base;
    const post = async (path: string, body: unknown): Promise<Reply> => {
      const r = await http(base, "POST", path, body);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r;
    };
    /** Checks a completed job: progress up to its total, metrics, a file that predicts. */
    const checkTrained = async (id: string, type: string, evaluation: string) => {
      const job = await waitTerminal(base, id, 90_000);
      assert.equal(job.status, "completed", `${type}: ${JSON.stringify(job).slice(0, 3000)}`);
      assert.equal(job.model_type, type);
      assert.equal(job.metrics.evaluation, evaluation);
      assert.ok(job.metrics.accuracy > 0.9, `${type} accuracy ${job.metrics.accuracy}`);
      assert.ok(basename(job.model_path).startsWith(`${type}_model_`));
      const events = await http(base, "GET", `/train/job/${id}/events?type=progress&limit=1000`);
      const steps = events.body.events.map((e: { data: { step: number; total: number } }) =>
        e.data
      );
      assert.ok(steps.length >= 2, `${type}: ${steps.length} progress events`);
      for (let i = 1; i < steps.length; i++) {
        assert.ok(steps[i].step > steps[i - 1].step, `${type}: progress went back`);
        assert.equal(steps[i].total, steps[0].total);
      }
      assert.equal(steps.at(-1).step, steps[0].total);
      assert.ok(steps.some((s: { metrics: unknown }) => s.metrics), "progress carries metrics");
      const accuracy = Number(await python(SCORE, job.model_path));
      assert.ok(accuracy > 0.9, `${type}: the loaded model scores ${accuracy}`);
      return job;
    };

    await t.step("each built-in type trains with use_cv true and false", async () => {
      const jobs: [string, string, string][] = [];
      for (const [type, hyperparameters] of Object.entries(FAST)) {
        for (const use_cv of [true, false]) {
          const r = await post(`/train/${type}`, { retrain: true, use_cv, hyperparameters });
          assert.equal(r.body.message, `Training initiated for ${type}`);
          jobs.push([r.body.data.job_id, type, use_cv ? "cv" : "holdout"]);
        }
      }
      const done = await Promise.all(jobs.map(([id, type, ev]) => checkTrained(id, type, ev)));
      const cv = done.find((j) => j.metrics.evaluation === "cv");
      assert.equal(cv.metrics.cv_folds, 5);
      assert.equal(cv.metrics.fold_metrics.length, 5);
      assert.equal(typeof cv.metrics.accuracy_std, "number");
    });

    await t.step("all trains every built-in type", async () => {
      const hyperparameters = Object.assign({}, ...Object.values(FAST));
      const r = await post("/train", { model_type: "all", retrain: true, hyperparameters });
      const parent = await waitTerminal(base, r.body.job_id, 90_000);
      assert.equal(parent.status, "completed", JSON.stringify(parent).slice(0, 3000));
      const types = parent.children.map((c: { model_type: string }) => c.model_type).sort();
      assert.deepEqual(types, Object.keys(FAST).sort());
      await Promise.all(
        parent.children.map((c: { job_id: string; model_type: string }) =>
          checkTrained(c.job_id, c.model_type, "cv")
        ),
      );
    });

    await t.step("the models are listed with their metadata", async () => {
      const r = await http(base, "GET", "/train/models/available");
      assert.equal(r.status, 200);
      const names = Object.keys(r.body.available_models);
      assert.equal(names.length, 9, names.join(", "));
      for (const name of names) {
        const m = r.body.available_models[name];
        assert.ok(name.endsWith(".joblib"), name);
        assert.ok(m.size > 0);
        assert.equal(m.metadata.model_type, m.type);
        assert.ok(m.metadata.metrics.accuracy > 0.9);
      }
    });

    await t.step("a bad hyperparameter is refused with 422", async () => {
      for (const hyperparameters of [{ n_estimators: -1 }, { bogus: 1 }]) {
        const r = await http(base, "POST", "/train/xgboost", { hyperparameters });
        assert.equal(r.status, 422, JSON.stringify(r.body));
        assert.equal(r.body.status, "error");
        assert.ok(r.body.details.length > 0);
      }
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
