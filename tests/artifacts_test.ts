/** removeArtifacts() and acceptArtifact() on real files: exact names, inside MODELS_DIR only. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { acceptArtifact, jobFileNames, removeArtifacts } from "../models/artifacts.ts";

async function workspace() {
  const dir = await Deno.makeTempDir({ prefix: "trainer_artifacts_" });
  const models = join(dir, "models");
  const outside = join(dir, "outside");
  await Deno.mkdir(models);
  await Deno.mkdir(outside);
  const touch = (path: string) => Deno.writeTextFile(path, "x");
  const names = (folder: string) => [...Deno.readDirSync(folder)].map((e) => e.name).sort();
  return { dir, models, outside, touch, names };
}

Deno.test("jobFileNames: the model, its metadata and their temp files", () => {
  assert.deepEqual(jobFileNames("/m/a_model.joblib", 42), [
    "/m/a_model.joblib",
    "/m/a_model.joblib.tmp",
    "/m/a_model.joblib.tmp-42",
    "/m/a_model.meta.json",
    "/m/a_model.meta.json.tmp",
    "/m/a_model.meta.json.tmp-42",
  ]);
});

Deno.test("removeArtifacts removes exactly the job's files", async (t) => {
  const w = await workspace();
  const log: string[] = [];
  try {
    await t.step("never by prefix", async () => {
      const mine = join(w.models, "xgb_model_1.joblib");
      for (
        const name of [
          "xgb_model_1.joblib",
          "xgb_model_1.meta.json",
          "xgb_model_1.joblib.tmp",
          "xgb_model_1.joblib.tmp-7",
          "xgb_model_1.joblib.tmp-8",
          "xgb_model_10.joblib",
          "xgb_model_1.joblib.bak",
        ]
      ) await w.touch(join(w.models, name));
      const removed = await removeArtifacts(w.models, mine, { pid: 7, log: (m) => log.push(m) });
      assert.equal(removed.length, 4);
      assert.deepEqual(w.names(w.models), [
        "xgb_model_1.joblib.bak",
        "xgb_model_1.joblib.tmp-8",
        "xgb_model_10.joblib",
      ]);
      assert.equal(log.length, 4);
      assert.match(log[0], /^removed \S+xgb_model_1\.joblib$/);
    });
    await t.step("an artifact named .x removes .x only", async () => {
      await w.touch(join(w.models, ".x"));
      await removeArtifacts(w.models, ".x");
      assert.equal(w.names(w.models).length, 3);
    });
    await t.step("not through a symlinked folder that leads outside", async () => {
      await Deno.symlink(w.outside, join(w.models, "link"));
      await w.touch(join(w.outside, "v.joblib"));
      assert.deepEqual(await removeArtifacts(w.models, join(w.models, "link", "v.joblib")), []);
      assert.deepEqual(w.names(w.outside), ["v.joblib"]);
    });
    await t.step("a symlinked model file is unlinked, its target kept", async () => {
      const link = join(w.models, "s_model.joblib");
      await Deno.symlink(join(w.outside, "v.joblib"), link);
      assert.deepEqual(await removeArtifacts(w.models, link), [link]);
      assert.deepEqual(w.names(w.outside), ["v.joblib"]);
    });
    await t.step("files older than the job are not its own", async () => {
      const old = join(w.models, "xgb_model_10.joblib");
      assert.deepEqual(
        await removeArtifacts(w.models, old, { writtenSince: Date.now() + 1000 }),
        [],
      );
      assert.deepEqual(await removeArtifacts(w.models, old, { writtenSince: 0 }), [old]);
    });
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});

Deno.test("acceptArtifact takes regular files inside MODELS_DIR only", async () => {
  const w = await workspace();
  try {
    const model = join(w.models, "a.joblib");
    await w.touch(model);
    assert.deepEqual(await acceptArtifact(w.models, model), { path: model });
    assert.equal(await acceptArtifact(w.models, join(w.models, "missing.joblib")), null);
    const link = join(w.models, "b.joblib");
    await Deno.symlink(model, link);
    const refused = await acceptArtifact(w.models, link);
    assert.match(refused && "refused" in refused ? refused.refused : "", /is a symlink/);
    await Deno.symlink(w.outside, join(w.models, "out"));
    await w.touch(join(w.outside, "c.joblib"));
    const outside = await acceptArtifact(w.models, join(w.models, "out", "c.joblib"));
    assert.match(outside && "refused" in outside ? outside.refused : "", /outside MODELS_DIR/);
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});
