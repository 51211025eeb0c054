/**
 * Training specs: fingerprints, the dataset checksum cache, recording a spec beside a model,
 * and the agreement between the API's defaults and the scripts' (a fingerprint is only
 * comparable when both sides know the same effective hyperparameters).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { metadataPathFor } from "../models/artifacts.ts";
import { BUILTIN_TYPES } from "../models/registry.ts";
import {
  datasetIdentity,
  recordedFingerprint,
  recordSpec,
  specFingerprint,
  trainingSpec,
} from "../models/spec.ts";
import { tempDir } from "./helpers/app.ts";
import { python, ROOT } from "./helpers/server.ts";

const BUILTIN = { builtin: "breast_cancer", task: "auto" };

Deno.test("a fingerprint depends on what was trained, not on how it was spelled", () => {
  const fp = (hyperparameters: Record<string, unknown>, useCv = true) =>
    specFingerprint(
      trainingSpec({ model_type: "xgboost", hyperparameters, use_cv: useCv }, BUILTIN),
    );
  assert.equal(fp({ a: 1, b: [1, 2] }), fp({ b: [1, 2], a: 1 }), "key order does not matter");
  assert.notEqual(fp({ a: 1 }), fp({ a: 2 }));
  assert.notEqual(fp({ a: 1 }), fp({ a: 1 }, false));
  const regression = trainingSpec({ model_type: "x", hyperparameters: {}, use_cv: true }, {
    builtin: "diabetes",
    task: "regression",
  });
  assert.notEqual(
    specFingerprint(regression),
    specFingerprint({ ...regression, dataset: BUILTIN }),
  );
});

Deno.test("the dataset checksum is cached by path, size and mtime", async (t) => {
  await using dir = await tempDir();
  const path = join(dir.path, "data.csv");
  await Deno.writeTextFile(path, "x,y\n1,2\n");
  const then = new Date(Date.parse("2025-01-01T00:00:00Z"));
  await Deno.utime(path, then, then);
  const first = await datasetIdentity({ path, task: "classification" });
  await t.step("the identity names the resolved path, checksum, target and task", () => {
    assert.deepEqual(first, {
      path,
      sha256: "81bf9fa83c6f7f151bd491a98cd7d933de3965289e3ebd77c6c425f7eaa16392",
      target: null,
      task: "classification",
    });
  });
  await t.step("same size and mtime: the file is not read again", async () => {
    await Deno.writeTextFile(path, "x,y\n1,3\n");
    await Deno.utime(path, then, then);
    assert.deepEqual(await datasetIdentity({ path, task: "classification" }), first);
  });
  await t.step("a new mtime: hashed again", async () => {
    await Deno.utime(path, new Date(), new Date());
    const again = await datasetIdentity({ path, task: "classification" });
    assert.notEqual((again as { sha256: string }).sha256, (first as { sha256: string }).sha256);
  });
  await t.step("a file that cannot be read has no checksum", async () => {
    const missing = await datasetIdentity({ path: join(dir.path, "nope.csv") });
    assert.equal((missing as { sha256: string | null }).sha256, null);
  });
});

Deno.test("recordSpec fills in a spec only where the script wrote none", async (t) => {
  await using dir = await tempDir();
  const spec = trainingSpec({ model_type: "mine", hyperparameters: {}, use_cv: true }, BUILTIN);
  await t.step("no metadata: written, and read back", async () => {
    const model = join(dir.path, "mine_model_a.pt");
    assert.equal(await recordSpec(model, spec), true);
    assert.equal(await recordedFingerprint(model), specFingerprint(spec));
  });
  await t.step("the script's own metadata is kept", async () => {
    const model = join(dir.path, "mine_model_b.pt");
    await Deno.writeTextFile(metadataPathFor(model), JSON.stringify({ accuracy: 0.9 }));
    await recordSpec(model, spec);
    const meta = JSON.parse(await Deno.readTextFile(metadataPathFor(model)));
    assert.equal(meta.accuracy, 0.9);
    assert.equal(meta.spec_fingerprint, specFingerprint(spec));
  });
  await t.step("a fingerprint the script wrote, even null, is not replaced", async () => {
    const model = join(dir.path, "mine_model_c.pt");
    await Deno.writeTextFile(metadataPathFor(model), JSON.stringify({ spec_fingerprint: null }));
    assert.equal(await recordSpec(model, spec), false);
    assert.equal(await recordedFingerprint(model), null);
  });
});

Deno.test("the API's hyperparameter defaults are the scripts' defaults", async () => {
  const scripts: Record<string, string> = {
    "neural-net": "train",
    "xgboost": "train_xgb",
    "random-forest": "train_rf",
  };
  const code = `import importlib, json, sys
sys.path.insert(0, sys.argv[1])
from _trainer_job import COMMON_HYPERPARAMETERS
out = {}
for name in sys.argv[2:]:
    specs = {**COMMON_HYPERPARAMETERS, **importlib.import_module(name).HYPERPARAMETERS}
    out[name] = {key: check(default) for key, (check, default) in specs.items()}
print(json.dumps(out))`;
  const py = JSON.parse(await python(code, join(ROOT, "models"), ...Object.values(scripts)));
  for (const type of BUILTIN_TYPES) {
    assert.deepEqual(type.params.parse({}), py[scripts[type.name]], type.name);
  }
});

Deno.test("a script records the fingerprint only when TRAIN_SPEC is what it trained", async () => {
  const code = `import json, os, sys
sys.path.insert(0, sys.argv[1])
from types import SimpleNamespace
from _trainer_job import training_spec
config = SimpleNamespace(model_type="xgboost", use_cv=True)
data = SimpleNamespace(sha256="aa", name="/d.csv")
params = {"n_estimators": 100, "subsample": 1.0}
def record(spec):
    os.environ["TRAIN_SPEC"], os.environ["TRAIN_SPEC_FINGERPRINT"] = json.dumps(spec), "f" * 64
    return training_spec(config, params, data)[0]
spec = {"model_type": "xgboost", "use_cv": True, "hyperparameters": {"n_estimators": 100, "subsample": 1},
        "dataset": {"path": "/d.csv", "sha256": "aa"}}
print(json.dumps([record(spec), record({**spec, "dataset": {"path": "/d.csv", "sha256": "bb"}}),
                  record({**spec, "use_cv": False}),
                  record({**spec, "hyperparameters": {"n_estimators": 50, "subsample": 1}})]))`;
  const out = await python(code, join(ROOT, "models"));
  assert.deepEqual(JSON.parse(out.trim().split("\n").at(-1)!), ["f".repeat(64), null, null, null]);
});
