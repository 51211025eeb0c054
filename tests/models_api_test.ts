/**
 * Stored models through the API, on a real libSQL file with a real FolderStore and a real
 * S3-compatible server (s3rver): the projection row written with the artifact record, the
 * listing, downloads (whole, Range, 416, 304, HEAD), deletes, reconcile (?check=true and
 * `deno task models:check`) and reuse only from a record whose file is present.
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { getJob } from "../db/queries.ts";
import { exitReport, startedData } from "./helpers/jobs.ts";
import { parseArtifactStore } from "../artifacts/config.ts";
import type { ArtifactStore } from "../artifacts/store.ts";
import { modelByName } from "../projections/models.ts";
import { metadataPathFor } from "../models/artifacts.ts";
import {
  buildApp,
  recordModel,
  recordTrainedModel,
  tempDir,
  type TestApp,
  writeTrainedModel,
} from "./helpers/app.ts";
import { ROOT } from "./helpers/server.ts";
import { startS3rver } from "./helpers/s3rver.ts";

/** 1,000 ASCII bytes, so bodies compare as text: "0123456789" repeated. */
const CONTENT = "0123456789".repeat(100);

function name(n: number, type = "xgboost") {
  return `${type}_model_2025-06-01_10000${n}_0000000${n}.joblib`;
}

/** Writes a model file in `folder` and records it: in the app's folder, or put to `store`. */
async function storeModel(
  app: TestApp,
  file: string,
  opts: { store?: ArtifactStore; folder?: string; content?: string } = {},
) {
  const folder = opts.folder ?? app.modelsDir;
  await Deno.mkdir(folder, { recursive: true });
  const path = join(folder, file);
  await Deno.writeTextFile(path, opts.content ?? CONTENT);
  await Deno.writeTextFile(
    metadataPathFor(path),
    JSON.stringify({ model_type: "xgboost", metrics: { accuracy: 0.9 } }),
  );
  if (!opts.store) return await recordModel(app.store, folder, file);
  const stored = await opts.store.put(file, path);
  return await recordModel(app.store, folder, file, {
    storedIn: opts.store.describe(),
    location: stored.location,
  });
}

async function withS3(fn: (store: ArtifactStore) => Promise<void>) {
  const s3 = await startS3rver();
  const store = parseArtifactStore(`s3://${s3.bucket}/models`, "/unused", {
    S3_ENDPOINT: s3.endpoint,
    S3_FORCE_PATH_STYLE: "1",
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
  });
  try {
    await fn(store);
  } finally {
    store.close();
    await s3.close();
  }
}

Deno.test("the artifact record writes the models row in the same commit", async () => {
  await using app = await buildApp();
  const { jobId, record } = await storeModel(app, name(1));
  const row = await modelByName(app.database.db, name(1));
  assert.ok(row);
  assert.equal(row.job_id, jobId);
  assert.equal(row.sha256, record.sha256);
  assert.equal(row.size, 1000);
  assert.equal(row.model_type, "xgboost");
  assert.deepEqual(row.metrics, { accuracy: 0.9 });
  assert.equal(row.deleted_at, null);
  const events = await app.request("GET", `/train/job/${jobId}/events?type=artifact,completed`);
  assert.deepEqual(events.body.events.map((e: { type: string }) => e.type), [
    "artifact",
    "completed",
  ]);
});

Deno.test("listing: the contract's shape plus the record, filters, validation", async (t) => {
  await using app = await buildApp();
  const { jobId, record } = await storeModel(app, name(1));
  await storeModel(app, name(2, "random-forest"));
  // A file made before records existed: listed, as unrecorded.
  await Deno.writeTextFile(join(app.modelsDir, name(3)), "old");

  await t.step("every model, with the contract's keys and the extra ones", async () => {
    const res = await app.request("GET", "/train/models/available");
    assert.equal(res.status, 200);
    const models = res.body.available_models;
    assert.deepEqual(
      Object.keys(models).sort(),
      [name(1), name(2, "random-forest"), name(3)].sort(),
    );
    assert.deepEqual(models[name(1)], {
      path: models[name(1)].path,
      type: "xgboost",
      size: 1000,
      modified: models[name(1)].modified,
      job_id: jobId,
      metadata: { model_type: "xgboost", metrics: { accuracy: 0.9 } },
      sha256: record.sha256,
      metrics: { accuracy: 0.9 },
      stored_in: `folder ${app.modelsDir}`,
      status: "ok",
      problem: null,
    });
    assert.ok(models[name(1)].path.endsWith(`models/${name(1)}`));
    assert.match(models[name(1)].modified, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
    assert.equal(models[name(3)].status, "unrecorded");
    assert.equal(models[name(3)].sha256, null);
    assert.deepEqual(res.body.counts, { ok: 2, missing: 0, corrupt: 0, unrecorded: 1 });
  });
  await t.step("?type= and ?limit=", async () => {
    const rf = await app.request("GET", "/train/models/available?type=random-forest");
    assert.deepEqual(Object.keys(rf.body.available_models), [name(2, "random-forest")]);
    const one = await app.request("GET", "/train/models/available?limit=1");
    assert.equal(Object.keys(one.body.available_models).length, 1);
  });
  await t.step("bad values -> 422 naming the parameter", async () => {
    for (const q of ["limit=0", "limit=x", "check=maybe", "type=", "other=1"]) {
      const res = await app.request("GET", `/train/models/available?${q}`);
      assert.equal(res.status, 422, q);
      assert.equal(res.body.status, "error");
    }
  });
});

async function downloads(t: Deno.TestContext, app: TestApp, file: string, sha256: string) {
  const url = `/train/models/${file}/download`;
  await t.step("the whole file, with its length, ETag and name", async () => {
    const res = await app.request("GET", url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), "1000");
    assert.equal(res.headers.get("etag"), `"${sha256}"`);
    assert.equal(res.headers.get("accept-ranges"), "bytes");
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.equal(res.headers.get("content-disposition"), `attachment; filename="${file}"`);
    assert.equal(res.body, CONTENT);
  });
  await t.step("Range -> 206 with Content-Range; a suffix and an open end too", async () => {
    const res = await app.request("GET", url, { headers: { range: "bytes=10-24" } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get("content-range"), "bytes 10-24/1000");
    assert.equal(res.headers.get("content-length"), "15");
    assert.equal(res.body, CONTENT.slice(10, 25));
    const suffix = await app.request("GET", url, { headers: { range: "bytes=-5" } });
    assert.equal(suffix.headers.get("content-range"), "bytes 995-999/1000");
    assert.equal(suffix.body, "56789");
    const open = await app.request("GET", url, { headers: { range: "bytes=990-" } });
    assert.equal(open.body, CONTENT.slice(990));
  });
  await t.step("a range past the end -> 416 with the size", async () => {
    const res = await app.request("GET", url, { headers: { range: "bytes=1000-" } });
    assert.equal(res.status, 416);
    assert.equal(res.headers.get("content-range"), "bytes */1000");
  });
  await t.step("If-None-Match with the ETag -> 304, no body", async () => {
    const res = await app.request("GET", url, { headers: { "if-none-match": `"${sha256}"` } });
    assert.equal(res.status, 304);
    assert.equal(res.body, "");
    assert.equal(res.headers.get("etag"), `"${sha256}"`);
  });
  await t.step("HEAD: the headers only", async () => {
    const res = await app.request("HEAD", url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), "1000");
    assert.equal(res.body, "");
  });
  await t.step("an unknown name -> 404 saying so", async () => {
    const res = await app.request("GET", "/train/models/nope.joblib/download");
    assert.equal(res.status, 404);
    assert.match(res.body.message, /no model named "nope.joblib" is recorded/);
  });
}

Deno.test("download from a folder store", async (t) => {
  await using app = await buildApp();
  const { record } = await storeModel(app, name(1));
  await downloads(t, app, name(1), record.sha256);
});

Deno.test("download from an S3 store", async (t) => {
  await withS3(async (store) => {
    await using app = await buildApp({ artifacts: store });
    await using local = await tempDir();
    const { record } = await storeModel(app, name(1), { store, folder: local.path });
    assert.match(record.location, /^s3:\/\/models\/models\//);
    await downloads(t, app, name(1), record.sha256);
  });
});

Deno.test("delete: recorded in the log, file gone, not listed; 409 while in use", async (t) => {
  await using app = await buildApp();
  await t.step("the event, then the file and its metadata are gone", async () => {
    const { jobId } = await storeModel(app, name(1));
    const res = await app.request("DELETE", `/train/models/${name(1)}`);
    assert.equal(res.status, 200);
    assert.equal(res.body.data.job_id, jobId);
    assert.equal(res.body.data.file_removed, true);
    const events = await app.request("GET", `/train/job/${jobId}/events?type=model_deleted`);
    assert.deepEqual(events.body.events[0].data, {
      name: name(1),
      reason: "deleted by request",
    });
    const status = await app.request("GET", `/train/status/${jobId}`);
    assert.equal(status.body.data.model_path, join(app.modelsDir, name(1)));
    assert.equal(
      status.body.data.message,
      `Training completed successfully; its model ${name(1)} was deleted at ` +
        `${events.body.events[0].at} (deleted by request)`,
    );
    await assert.rejects(Deno.stat(join(app.modelsDir, name(1))), Deno.errors.NotFound);
    await assert.rejects(
      Deno.stat(metadataPathFor(join(app.modelsDir, name(1)))),
      Deno.errors.NotFound,
    );
    const list = await app.request("GET", "/train/models/available?check=true");
    assert.deepEqual(list.body.available_models, {});
    assert.equal((await app.request("GET", `/train/models/${name(1)}/download`)).status, 404);
    assert.equal((await app.request("DELETE", `/train/models/${name(1)}`)).status, 404);
  });
  await t.step("an 'all' job not finished that reused it -> 409 naming it", async () => {
    const m = await recordTrainedModel(app.store, app.modelsDir, name(2), {
      model_type: "xgboost",
    });
    // No supervisor: the other children wait, so the parent is not finished.
    const all = await app.request("POST", "/train", {
      json: { model_type: "all", retrain: false },
    });
    assert.equal(all.status, 200);
    const xgb = all.body.children.find((c: { model_type: string }) => c.model_type === "xgboost");
    assert.equal(xgb.status, "completed", "the xgboost child reused the model");
    const res = await app.request("DELETE", `/train/models/${name(2)}`);
    assert.equal(res.status, 409);
    assert.match(res.body.message, /in use/);
    assert.deepEqual(res.body.details, [{ job_id: all.body.job_id }]);
    await Deno.stat(m.path);
    await app.request("DELETE", `/train/job/${all.body.job_id}`);
    assert.equal((await app.request("DELETE", `/train/models/${name(2)}`)).status, 200);
  });
  await t.step("from an S3 store", async () => {
    await withS3(async (store) => {
      await using s3app = await buildApp({ artifacts: store });
      await using local = await tempDir();
      await storeModel(s3app, name(3), { store, folder: local.path });
      const res = await s3app.request("DELETE", `/train/models/${name(3)}`);
      assert.equal(res.status, 200);
      assert.equal(res.body.data.file_removed, true);
      assert.equal(await store.stat(name(3)), null);
    });
  });
});

/** Runs `deno task models:check` on the app's database and models dir. */
async function checkCli(app: TestApp, env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "models:check"],
    cwd: ROOT,
    env: {
      DATABASE_URL: `file:${join(app.dir, "trainer.db")}`,
      MODELS_DIR: app.modelsDir,
      ARTIFACT_STORE: "",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  return { code: out.code, text, stderr: new TextDecoder().decode(out.stderr) };
}

function statuses(body: { available_models: Record<string, { status: string }> }) {
  return Object.fromEntries(
    Object.entries(body.available_models).map(([n, m]) => [n, m.status]).sort(),
  );
}

Deno.test("reconcile a folder store: ok, corrupt, missing, unrecorded", async (t) => {
  await using app = await buildApp();
  for (const n of [1, 2, 3]) await storeModel(app, name(n));

  await t.step("all ok: models:check exits 0", async () => {
    const cli = await checkCli(app);
    assert.equal(cli.code, 0, cli.stderr + cli.text);
    assert.match(cli.text, /3 models: 3 ok, 0 corrupt, 0 missing, 0 unrecorded/);
  });
  // Same size, other bytes: only the sha256 tells.
  await Deno.writeTextFile(join(app.modelsDir, name(2)), CONTENT.replace("0", "X"));
  await Deno.remove(join(app.modelsDir, name(3)));
  await Deno.writeTextFile(join(app.modelsDir, "dropped.bin"), "who made this?");

  await t.step("?check=true tells all three", async () => {
    const res = await app.request("GET", "/train/models/available?check=true");
    assert.equal(res.body.checked, true);
    assert.deepEqual(statuses(res.body), {
      "dropped.bin": "unrecorded",
      [name(1)]: "ok",
      [name(2)]: "corrupt",
      [name(3)]: "missing",
    });
    assert.match(res.body.available_models[name(2)].problem, /sha256 is [0-9a-f]{64}; .* recorded/);
    assert.match(res.body.available_models["dropped.bin"].sha256, /^[0-9a-f]{64}$/);
  });
  await t.step("without check, the corrupt file looks ok and odd names are left out", async () => {
    const res = await app.request("GET", "/train/models/available");
    assert.deepEqual(statuses(res.body), {
      [name(1)]: "ok",
      [name(2)]: "ok",
      [name(3)]: "missing",
    });
  });
  await t.step("models:check prints the table, exits 1 and deletes nothing", async () => {
    const cli = await checkCli(app);
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.text, new RegExp(`corrupt\\s+${name(2)}\\s+1000\\s+the file's sha256`));
    assert.match(cli.text, new RegExp(`missing\\s+${name(3)}`));
    assert.match(cli.text, /unrecorded\s+dropped\.bin/);
    assert.match(cli.text, /4 models: 1 ok, 1 corrupt, 1 missing, 1 unrecorded/);
    await Deno.stat(join(app.modelsDir, name(2)));
    await Deno.stat(join(app.modelsDir, "dropped.bin"));
  });
});

Deno.test("reconcile an S3 store through ?check=true", async () => {
  await withS3(async (store) => {
    await using app = await buildApp({ artifacts: store });
    await using local = await tempDir();
    for (const n of [1, 2, 3]) await storeModel(app, name(n), { store, folder: local.path });
    const other = join(local.path, "other");
    await Deno.writeTextFile(other, CONTENT.replace("0", "X"));
    await store.put(name(2), other);
    await store.delete(name(3));
    await store.put("dropped.bin", other);
    const res = await app.request("GET", "/train/models/available?check=true");
    assert.deepEqual(statuses(res.body), {
      "dropped.bin": "unrecorded",
      [name(1)]: "ok",
      [name(2)]: "corrupt",
      [name(3)]: "missing",
    });
    assert.ok(res.body.available_models[name(1)].path.startsWith("s3://"));
  });
});

Deno.test("a model a worker kept in its own folder is named as such, not as lost", async () => {
  await using app = await buildApp();
  // Hosted mode without a shared store: the worker's MODELS_DIR is another machine's folder.
  const workerDir = `${app.modelsDir}-on-gpu-7`;
  await writeTrainedModel(workerDir, name(1), { model_type: "xgboost" });
  await recordModel(app.store, workerDir, name(1), { worker_id: "gpu-7-1a2b3c4d" });
  const list = await app.request("GET", "/train/models/available");
  assert.equal(list.status, 200);
  const entry = list.body.available_models[name(1)];
  assert.equal(entry.status, "missing");
  assert.equal(
    entry.problem,
    `the file was stored in folder ${workerDir} by worker gpu-7-1a2b3c4d, not in this ` +
      `server's store (folder ${app.modelsDir}); to list and serve such models here, give the ` +
      `API and its workers one ARTIFACT_STORE=s3://…`,
  );
  const download = await app.request("GET", `/train/models/${name(1)}/download`);
  assert.equal(download.status, 404);
  assert.match(download.body.message, /stored in folder .*-on-gpu-7 by worker gpu-7-1a2b3c4d/);
});

Deno.test("a running job's model file is not listed until its job records it", async () => {
  await using app = await buildApp();
  const sub = await app.request("POST", "/train/xgboost", { json: { retrain: true } });
  const id = sub.body.data.job_id;
  // No supervisor here: the job is started by hand, and writes its file as a script would.
  await app.store.run((uow) => uow.execute(id, { type: "start", data: startedData() }));
  const path = (await getJob(app.database.db, id))!.artifact_path!;
  await Deno.mkdir(app.modelsDir, { recursive: true });
  await Deno.writeTextFile(path, "half a model");
  const listed = async () =>
    (await app.request("GET", "/train/models/available?check=true")).body.available_models;
  assert.deepEqual(await listed(), {}, "a file being written is no model yet");
  // The job fails and leaves it (no supervisor to remove it): a file the log does not know.
  await app.store.run((uow) =>
    uow.execute(id, { type: "exit", report: exitReport({ exit_code: 1, artifact: null }) })
  );
  const after = await listed();
  assert.deepEqual(Object.keys(after), [basename(path)]);
  assert.equal(after[basename(path)].status, "unrecorded");
});

Deno.test("reuse: only a recorded model whose file is present", async (t) => {
  await using app = await buildApp();
  const m = await recordTrainedModel(app.store, app.modelsDir, name(1), { model_type: "xgboost" });
  const reuse = () => app.request("POST", "/train/xgboost", { json: { retrain: false } });
  await t.step("an ok record is reused", async () => {
    const res = await reuse();
    assert.equal(res.body.data.status, "completed");
    assert.equal(res.body.data.model_path, m.path);
  });
  await t.step("a missing file is not", async () => {
    await Deno.remove(m.path);
    assert.equal((await reuse()).body.data.status, "started");
  });
  await t.step("nor a deleted model", async () => {
    const again = await recordTrainedModel(app.store, app.modelsDir, name(2), {
      model_type: "xgboost",
    });
    assert.equal((await reuse()).body.data.model_path, again.path);
    assert.equal((await app.request("DELETE", `/train/models/${name(2)}`)).status, 200);
    assert.equal((await reuse()).body.data.status, "started");
  });
});
