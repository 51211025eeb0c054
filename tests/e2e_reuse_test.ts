/**
 * E2E: `retrain: false` reuses a real xgboost model only when it was trained the same way:
 * same effective hyperparameters, evaluation and dataset content.
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { http, requireTrainingPython, Server, waitTerminal, Workspace } from "./helpers/server.ts";

/** A small separable CSV: the label is 1 when x + y > 10. */
function csv(rows: number): string {
  const lines = ["x,y,label"];
  for (let i = 0; i < rows; i++) {
    const x = i % 11;
    const y = (i * 7) % 13;
    lines.push(`${x},${y},${x + y > 10 ? 1 : 0}`);
  }
  return lines.join("\n") + "\n";
}

Deno.test("e2e: a model is reused only for the same training spec", async (t) => {
  await requireTrainingPython();
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const data = join(ws.dir, "data.csv");
    await Deno.writeTextFile(data, csv(60));
    server = await Server.start(ws.env({ DATASET_PATH: data }));
    const base = server.base;
    const submit = async (body: unknown) => {
      const r = await http(base, "POST", "/train/xgboost", body);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    };
    const hp = { n_estimators: 5, max_depth: 2 };

    const first = await submit({ retrain: true, use_cv: false, hyperparameters: hp });
    const trained = await waitTerminal(base, first.data.job_id, 90_000);
    assert.equal(trained.status, "completed", JSON.stringify(trained).slice(0, 2000));
    const meta = JSON.parse(
      await Deno.readTextFile(trained.model_path.replace(/\.joblib$/, ".meta.json")),
    );

    await t.step("the script records the spec and its fingerprint in the metadata", () => {
      assert.match(meta.spec_fingerprint, /^[0-9a-f]{64}$/);
      assert.equal(meta.spec.model_type, "xgboost");
      assert.equal(meta.spec.hyperparameters.n_estimators, 5);
      assert.equal(meta.spec.hyperparameters.learning_rate, 0.1, "defaults are part of it");
      assert.equal(meta.spec.use_cv, false);
      assert.equal(meta.spec.dataset.sha256, meta.dataset.sha256);
    });

    await t.step("the same spec, defaults spelled out, is reused and says why", async () => {
      const again = await submit({
        retrain: false,
        use_cv: false,
        hyperparameters: { ...hp, learning_rate: 0.1, subsample: 1 },
      });
      assert.equal(again.data.status, "completed");
      assert.equal(again.data.model_path, trained.model_path);
      assert.equal(
        again.message.split(";")[0],
        `reused ${basename(trained.model_path)}: trained with the same spec ${
          meta.spec_fingerprint.slice(0, 8)
        }`,
      );
    });

    await t.step("other hyperparameters train anew", async () => {
      const other = await submit({
        retrain: false,
        use_cv: false,
        hyperparameters: { ...hp, max_depth: 3 },
      });
      assert.equal(other.data.status, "started");
      const done = await waitTerminal(base, other.data.job_id, 90_000);
      assert.equal(done.status, "completed", done.error);
      assert.notEqual(done.model_path, trained.model_path);
    });

    await t.step("other evaluation (use_cv) trains anew", async () => {
      const cv = await submit({ retrain: false, use_cv: true, hyperparameters: hp });
      assert.equal(cv.data.status, "started");
      await waitTerminal(base, cv.data.job_id, 90_000);
    });

    await t.step("a changed dataset file trains anew", async () => {
      await Deno.writeTextFile(data, csv(70));
      const changed = await submit({ retrain: false, use_cv: false, hyperparameters: hp });
      assert.equal(changed.data.status, "started", changed.message);
      const done = await waitTerminal(base, changed.data.job_id, 90_000);
      assert.equal(done.status, "completed", done.error);
      const newMeta = JSON.parse(
        await Deno.readTextFile(done.model_path.replace(/\.joblib$/, ".meta.json")),
      );
      assert.notEqual(newMeta.spec.dataset.sha256, meta.spec.dataset.sha256);
      const reused = await submit({ retrain: false, use_cv: false, hyperparameters: hp });
      assert.equal(reused.data.model_path, done.model_path, "the model of this data is reused");
    });
  } finally {
    await server?.kill("SIGTERM");
    await ws.dispose();
  }
});
