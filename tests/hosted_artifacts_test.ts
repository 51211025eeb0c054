/**
 * E2E, hosted mode with an S3 artifact store (a real s3rver): a worker stores each finished
 * model in the bucket before its job completes. A store that cannot be reached fails the job
 * with `upload_failed`, and a worker killed mid-upload leaves no object behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseArtifactStore } from "../artifacts/config.ts";
import { sha256File } from "../artifacts/checksum.ts";
import { freePort, startHostedServer, WorkerProcess } from "./helpers/hosted.ts";
import { startS3rver, type TestS3 } from "./helpers/s3rver.ts";
import {
  http,
  type Json,
  pollUntil,
  PYTHON,
  python,
  requireTrainingPython,
  type Server,
  waitJob,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

const PREFIX = "trainer";

function s3Env(s3: TestS3, endpoint = s3.endpoint): Record<string, string> {
  return {
    ARTIFACT_STORE: `s3://${s3.bucket}/${PREFIX}`,
    S3_ENDPOINT: endpoint,
    S3_FORCE_PATH_STYLE: "1",
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
    AWS_REGION: "us-east-1",
  };
}

/** The object names in the bucket under the prefix. */
async function objects(s3: TestS3, dir: string): Promise<string[]> {
  const store = parseArtifactStore(`s3://${s3.bucket}/${PREFIX}`, dir, s3Env(s3));
  try {
    const names: string[] = [];
    for await (const e of store.list()) names.push(e.name);
    return names.sort();
  } finally {
    store.close();
  }
}

/** Writes argv[1] MB to the artifact, then exits 0. */
const BIG = `import os, sys
with open(os.environ["TRAIN_ARTIFACT_PATH"], "wb") as f:
    for _ in range(int(sys.argv[1])):
        f.write(os.urandom(1 << 20))
`;

Deno.test("hosted + S3: models go to the bucket, verified, before the job completes", async (t) => {
  const ws = await Workspace.create();
  const s3 = await startS3rver();
  let server: Server | null = null;
  const workers: WorkerProcess[] = [];
  try {
    const registry = await ws.registry({
      big: [PYTHON, await ws.write("big.py", BIG), "200"],
      small: [PYTHON, await ws.write("small.py", BIG), "1"],
    });
    server = await startHostedServer(ws, { ...registry, ...s3Env(s3), LEASE_SECONDS: "3" });
    const base = server.base;
    const workerModels = join(ws.dir, "worker-models");

    await t.step("the record in the log matches the object in the bucket", async () => {
      const w = await WorkerProcess.start(ws, base, {
        ...registry,
        ...s3Env(s3),
        WORKER_NAME: "s3-worker",
        MODELS_DIR: workerModels,
      });
      workers.push(w);
      const r = await http(base, "POST", "/train/small", { retrain: true });
      const d = await waitTerminal(base, r.body.data.job_id, 60_000);
      assert.equal(d.status, "completed", d.error);
      const log = await http(base, "GET", `/train/job/${d.job_id}/events?type=artifact`);
      const record = log.body.events.map((e: Json) => e.data.record).find(Boolean);
      assert.ok(record, JSON.stringify(log.body.events));
      assert.equal(record.stored_in, `s3://${s3.bucket}/${PREFIX}`);
      assert.equal(record.location, `s3://${s3.bucket}/${PREFIX}/${record.name}`);
      assert.equal(record.size, 1 << 20);
      assert.equal(record.sha256, await sha256File(d.model_path));
      assert.match(record.worker_id, /^s3-worker-/);
      assert.ok((await objects(s3, ws.dir)).includes(record.name));
      await w.kill("SIGTERM");
    });

    await t.step("an unreachable store fails the job with upload_failed", async () => {
      const w = await WorkerProcess.start(ws, base, {
        ...registry,
        ...s3Env(s3, `http://127.0.0.1:${freePort()}`),
        WORKER_NAME: "no-s3",
        MODELS_DIR: workerModels,
      });
      workers.push(w);
      const before = await objects(s3, ws.dir);
      const r = await http(base, "POST", "/train/small", { retrain: true });
      const d = await waitTerminal(base, r.body.data.job_id, 120_000);
      assert.equal(d.status, "failed");
      assert.equal(d.failure_reason, "upload_failed");
      assert.match(d.error, /could not be stored in s3:\/\/models\/trainer after 3 tries/);
      assert.deepEqual(await objects(s3, ws.dir), before, "something reached the bucket");
      const left = [...Deno.readDirSync(workerModels)].map((e) => e.name)
        .filter((n) => n.includes(d.job_id.slice(0, 8)));
      assert.deepEqual(left, [], "the worker kept the files of a job that failed");
      await w.kill("SIGTERM");
    });

    await t.step("a worker killed mid-upload leaves no object, and the job fails", async () => {
      const w = await WorkerProcess.start(ws, base, {
        ...registry,
        ...s3Env(s3),
        WORKER_NAME: "dies-uploading",
        MODELS_DIR: workerModels,
      });
      workers.push(w);
      const before = await objects(s3, ws.dir);
      const r = await http(base, "POST", "/train/big", { retrain: true });
      const id = r.body.data.job_id;
      await pollUntil(
        "the upload to start",
        async () => (await s3.pendingUploads()).length > 0,
        60_000,
        20,
      );
      await w.kill("SIGKILL");
      const d = await waitJob(base, id, (d) => d.status === "failed", 30_000);
      assert.equal(d.failure_reason, "worker_lost");
      assert.deepEqual(await objects(s3, ws.dir), before, "a partial object is in the bucket");
    });
  } finally {
    for (const w of workers) await w.kill("SIGKILL").catch(() => {});
    await server?.kill();
    await s3.close();
    await ws.dispose();
  }
});

Deno.test("hosted + S3: a worker trains xgboost; the API, with no models folder, lists and serves it", async () => {
  await requireTrainingPython();
  const ws = await Workspace.create();
  const s3 = await startS3rver();
  let server: Server | null = null;
  let worker: WorkerProcess | null = null;
  const apiModels = join(ws.dir, "api-has-no-models");
  try {
    server = await startHostedServer(ws, { ...s3Env(s3), MODELS_DIR: apiModels });
    const base = server.base;
    worker = await WorkerProcess.start(ws, base, {
      ...s3Env(s3),
      WORKER_NAME: "trainer-box",
      MODELS_DIR: join(ws.dir, "worker-models"),
    });
    const r = await http(base, "POST", "/train/xgboost", { retrain: true, use_cv: false });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const d = await waitTerminal(base, r.body.data.job_id, 180_000);
    assert.equal(d.status, "completed", d.error);
    const name = d.model_path.split("/").at(-1);

    const listed = await http(base, "GET", "/train/models/available?type=xgboost");
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const model = listed.body.available_models[name];
    assert.ok(model, JSON.stringify(listed.body));
    assert.equal(model.status, "ok");
    assert.equal(model.stored_in, `s3://${s3.bucket}/${PREFIX}`);
    assert.equal(model.job_id, d.job_id);

    const res = await fetch(`${base}/train/models/${name}/download`);
    assert.equal(res.status, 200);
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.equal(Number(res.headers.get("content-length")), bytes.length);
    assert.equal(res.headers.get("etag"), `"${model.sha256}"`);
    const file = join(ws.dir, "downloaded.joblib");
    await Deno.writeFile(file, bytes);
    assert.equal(await sha256File(file), model.sha256);
    const out = await python(
      "import sys, joblib\n" +
        "from sklearn.datasets import load_breast_cancer\n" +
        "m = joblib.load(sys.argv[1])\n" +
        "m = m.get('model', m) if isinstance(m, dict) else m\n" +
        "print(list(m.predict(load_breast_cancer().data[:5])))",
      file,
    );
    assert.match(out.trim(), /^\[(\d+(\.\d+)?, ){4}\d+(\.\d+)?\]$/, out);
    await assert.rejects(Deno.stat(apiModels), Deno.errors.NotFound, "the API made a folder");
  } finally {
    await worker?.kill("SIGKILL");
    await server?.kill();
    await s3.close();
    await ws.dispose();
  }
});
