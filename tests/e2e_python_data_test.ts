/** E2E: a CSV regression dataset given by configuration; cancel mid-training leaves nothing. */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import {
  groupAlive,
  http,
  pollUntil,
  processesWithEnv,
  python,
  requireTrainingPython,
  Server,
  waitJob,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

/** Writes sklearn's diabetes data as a CSV with a `progression` target column. */
const WRITE_CSV = `import csv, sys
from sklearn.datasets import load_diabetes
d = load_diabetes()
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(list(d.feature_names) + ["progression"])
    for row, target in zip(d.data, d.target):
        w.writerow([*row, target])`;

/** Loads a regression model and prints its r2 on the CSV. */
const R2 = `import csv, sys, joblib
import numpy as np
from sklearn.metrics import r2_score
rows = list(csv.reader(open(sys.argv[2])))[1:]
X = np.array([[float(v) for v in r[:-1]] for r in rows])
y = np.array([float(r[-1]) for r in rows])
print(r2_score(y, joblib.load(sys.argv[1]).predict(X)))`;

Deno.test("e2e: CSV regression dataset and cancel mid-training", async (t) => {
  await requireTrainingPython();
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const csv = join(ws.dir, "diabetes.csv");
    await python(WRITE_CSV, csv);
    server = await Server.start(ws.env({
      DATASET_PATH: csv,
      DATASET_TARGET: "progression",
      CANCEL_GRACE_SECONDS: "1",
    }));
    const base = server.base;

    await t.step("xgboost trains a regression model on the CSV and reports r2", async () => {
      const r = await http(base, "POST", "/train/xgboost", {
        use_cv: false,
        hyperparameters: { n_estimators: 20, max_depth: 3 },
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const job = await waitTerminal(base, r.body.data.job_id, 90_000);
      assert.equal(job.status, "completed", JSON.stringify(job).slice(0, 3000));
      assert.equal(job.metrics.task, "regression");
      assert.equal(typeof job.metrics.r2, "number");
      assert.ok(job.metrics.r2 > 0, `r2 ${job.metrics.r2}`);
      assert.equal(job.metrics.accuracy, undefined);
      assert.equal(job.metrics.n_samples, 442);
      const r2 = Number(await python(R2, job.model_path, csv));
      assert.ok(r2 > 0.2, `the loaded model's r2 on the data is ${r2}`);
      const models = await http(base, "GET", "/train/models/available");
      const meta = models.body.available_models[basename(job.model_path)].metadata;
      assert.equal(meta.dataset.target, "progression");
      assert.match(meta.dataset.sha256, /^[0-9a-f]{64}$/);
    });

    await t.step("cancel mid-training leaves no python process and no model file", async () => {
      const r = await http(base, "POST", "/train/neural-net", {
        retrain: true,
        hyperparameters: { epochs: 5000, hidden_layer_sizes: [32] },
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const id = r.body.data.job_id;
      const job = await waitJob(base, id, (d) => d.status === "running" && d.progress?.step > 0);
      const pids = processesWithEnv("TRAIN_JOB_ID", id);
      assert.equal(pids.length, 1, `python processes of the job: ${pids}`);
      const environ = Deno.readTextFileSync(`/proc/${pids[0]}/environ`);
      const artifact = /(?:^|\0)TRAIN_ARTIFACT_PATH=([^\0]*)/.exec(environ)![1];
      const stem = basename(artifact).replace(/\.joblib$/, "");

      const cancelled = await http(base, "DELETE", `/train/job/${id}`);
      assert.equal(cancelled.status, 200);
      assert.equal(cancelled.body.data.status, "cancelled");
      await pollUntil(
        "the python process gone",
        () => {
          return !groupAlive(job.process.pgid) && processesWithEnv("TRAIN_JOB_ID", id).length === 0;
        },
        2_000,
        20,
      );
      const ended = await waitJob(base, id, (d) => d.process.alive === false);
      assert.equal(ended.status, "cancelled");
      assert.equal(ended.model_path, null);
      const left = [...Deno.readDirSync(ws.modelsDir)].map((e) => e.name)
        .filter((name) => name.startsWith(stem));
      assert.deepEqual(left, []);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
