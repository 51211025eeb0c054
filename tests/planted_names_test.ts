/**
 * Names a hostile script can plant in MODELS_DIR before the server or a built-in script
 * writes or reads there: symlinks out of it are never written through nor read, and a failed
 * job's stderr cannot blow up its status.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadConfig } from "../config.ts";
import { stderrTail } from "../jobs/job_end.ts";
import { listModels, MAX_METADATA_BYTES } from "../models/artifacts.ts";
import { recordedFingerprint } from "../models/spec.ts";
import { checkSettings } from "../startup_checks.ts";
import { tempDir } from "./helpers/app.ts";
import { python, ROOT } from "./helpers/server.ts";

const SECRET = '{"secret": "outside MODELS_DIR", "spec_fingerprint": "abc"}';

async function setUp(dir: string) {
  const models = join(dir, "models");
  await Deno.mkdir(models);
  const outside = join(dir, "outside.json");
  await Deno.writeTextFile(outside, SECRET);
  return { models, outside };
}

Deno.test("metadata that is a symlink out of MODELS_DIR, or huge, is not read", async () => {
  await using dir = await tempDir();
  const { models, outside } = await setUp(dir.path);
  const model = join(models, "xgboost_model_2026-01-01_000000_abcdef12.joblib");
  await Deno.writeTextFile(model, "model");
  await Deno.symlink(outside, model.replace(/\.joblib$/, ".meta.json"));
  const [listed] = await listModels(models);
  assert.equal(listed.metadata, null);
  assert.equal(await recordedFingerprint(model), null);

  const big = join(models, "xgboost_model_2026-01-02_000000_abcdef13.joblib");
  await Deno.writeTextFile(big, "model");
  const padding = " ".repeat(MAX_METADATA_BYTES);
  await Deno.writeTextFile(big.replace(/\.joblib$/, ".meta.json"), `{"a": 1}${padding}`);
  assert.equal(
    (await listModels(models)).find((m) => m.path.endsWith("13.joblib"))?.metadata,
    null,
  );
});

Deno.test("the start-up write probe never writes through a planted symlink", async () => {
  await using dir = await tempDir();
  const { models, outside } = await setUp(dir.path);
  await Deno.symlink(outside, join(models, `.trainer-write-check-${Deno.pid}`));
  await checkSettings(loadConfig({ MODELS_DIR: models }));
  assert.equal(await Deno.readTextFile(outside), SECRET);
});

Deno.test("the scripts' atomic write never writes through a planted .tmp symlink", async () => {
  await using dir = await tempDir();
  const { models, outside } = await setUp(dir.path);
  const target = join(models, "model.joblib");
  await Deno.symlink(outside, `${target}.tmp`);
  await python(
    `import sys; sys.path.insert(0, sys.argv[1]); from _trainer_common import write_atomic
write_atomic(sys.argv[2], lambda h: h.write(b"model"))`,
    join(ROOT, "models"),
    target,
  );
  assert.equal(await Deno.readTextFile(outside), SECRET);
  assert.equal(await Deno.readTextFile(target), "model");
  assert.equal((await Deno.lstat(target)).isFile, true);
});

Deno.test("a failed job's stderr tail is bounded", () => {
  const long = "x".repeat(64 * 1024);
  const tail = stderrTail(Array.from({ length: 20 }, (_, i) => `${i}:${long}`));
  assert.ok(tail.length <= 8 * 1024 + 2, `${tail.length} characters`);
  assert.ok(tail.endsWith("x"));
  assert.equal(stderrTail(["a", "b"]), "a\nb");
});
