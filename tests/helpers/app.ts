/**
 * Shared test helpers: a temp dir, an event store on a temp libSQL file, and the HTTP app
 * built on it the way main.ts builds it (optionally with a real Supervisor + LocalPort and a
 * MODEL_REGISTRY of small shell scripts). Everything is disposed with `await using`.
 */
import { FolderStore } from "../../artifacts/folder_store.ts";
import type { ArtifactStore } from "../../artifacts/store.ts";
import type { Hono } from "hono";
import { basename, join } from "node:path";
import { createApp } from "../../app.ts";
import { type Clock, randomId, systemClock } from "../../db/clock.ts";
import { type Database, openDatabase, type OpenOptions } from "../../db/client.ts";
import { EventStore } from "../../db/event_store.ts";
import type { JobDeps } from "../../jobs/service.ts";
import { Supervisor } from "../../jobs/supervisor.ts";
import { LocalPort } from "../../jobs/worker_port.ts";
import { loadRegistry, type Registry } from "../../models/registry.ts";
import { RuntimeChecker } from "../../models/runtime_checker.ts";
import { checkerFor } from "./openapi.ts";
import {
  type DatasetIdentity,
  datasetIdentity,
  datasetSource,
  specFingerprint,
  trainingSpec,
} from "../../models/spec.ts";
import { BUILTIN_TYPES } from "../../models/registry.ts";
import { metadataPathFor, modelTypeOf } from "../../models/artifacts.ts";
import { sha256File } from "../../artifacts/checksum.ts";
import type { ArtifactRecord } from "../../jobs/events.ts";
import { modelByName } from "../../projections/models.ts";
import { exitReport, startedData, submittedData } from "./jobs.ts";

/** A temp dir removed on dispose. */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "trainer-test-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/** A clock that moves 1 ms forward on every reading, so event times are distinct and stable. */
export function steppingClock(start = Date.parse("2025-01-01T00:00:00Z")): Clock {
  let t = start;
  return { now: () => new Date(t++) };
}

export interface TestStore extends AsyncDisposable {
  dir: string;
  database: Database;
  store: EventStore;
}

/** An EventStore on a fresh libSQL file in its own temp dir. */
/**
 * Job use-case dependencies over a test store, with `entries` as its MODEL_REGISTRY (written to
 * `dir`, so relative script paths resolve there) and `dir/models` as MODELS_DIR.
 */
export async function testJobDeps(
  store: EventStore,
  dir: string,
  entries: Record<string, { command: string[] }>,
): Promise<JobDeps> {
  await Deno.writeTextFile(join(dir, "registry.json"), JSON.stringify(entries));
  return {
    store,
    registry: await loadRegistry(join(dir, "registry.json")),
    clock: systemClock,
    newId: randomId,
    modelsDir: join(dir, "models"),
    defaultTimeoutSeconds: 120,
    artifacts: new FolderStore(join(dir, "models")),
    dataset: {},
  };
}

export async function openTestStore(
  clock: Clock = systemClock,
  opts: { shared?: boolean; seed?: (path: string) => Promise<void>; open?: OpenOptions } = {},
): Promise<TestStore> {
  const dir = await tempDir();
  await opts.seed?.(join(dir.path, "trainer.db"));
  const database = await openDatabase(`file:${join(dir.path, "trainer.db")}`, undefined, opts.open);
  const store = await EventStore.open(database, clock, opts);
  return {
    dir: dir.path,
    database,
    store,
    async [Symbol.asyncDispose]() {
      await store.flush();
      await database.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

/** A MODEL_REGISTRY entry; commands may use paths relative to the temp dir (./x.sh). */
export interface RegistryEntry {
  command: string[];
  env?: string[];
  extension?: string;
}

export interface AppOptions {
  /** Files written into the temp dir before the registry is loaded (e.g. shell scripts). */
  files?: Record<string, string>;
  /** Written as registry.json in the temp dir and loaded as MODEL_REGISTRY. */
  registry?: Record<string, RegistryEntry>;
  /** Build a real Supervisor over a LocalPort, as main.ts does. */
  supervisor?: boolean;
  apiToken?: string;
  metricsToken?: string;
  corsOrigins?: string;
  /** As AppDeps.allowedHosts: unset answers loopback names only, as the default HOST does. */
  allowedHosts?: readonly string[] | null;
  maxConcurrent?: number;
  graceSeconds?: number;
  defaultTimeoutSeconds?: number;
  logTailLines?: number;
  logTailBytes?: number;
  logPageBytes?: number;
  statusCacheBytes?: number;
  /** The artifact store; a FolderStore on the models dir when unset, as main.ts's default. */
  artifacts?: ArtifactStore;
  /** Writes the database file before it is opened (and migrated), e.g. an older schema's. */
  seed?: (path: string) => Promise<void>;
}

export interface TestApp extends TestStore {
  app: Hono;
  modelsDir: string;
  registry: Registry;
  jobs: JobDeps;
  supervisor: Supervisor | null;
  lifecycle: { shuttingDown: boolean };
  request(method: string, path: string, init?: RequestOptions): Promise<TestResponse>;
}

export interface RequestOptions {
  /** Sent as JSON with Content-Type: application/json. */
  json?: unknown;
  body?: BodyInit;
  headers?: Record<string, string>;
}

export interface TestResponse {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** Builds the app on a temp libSQL file; with `supervisor: true` jobs really run. */
export async function buildApp(opts: AppOptions = {}): Promise<TestApp> {
  const base = await openTestStore(systemClock, { seed: opts.seed });
  const { dir, database, store } = base;
  for (const [name, text] of Object.entries(opts.files ?? {})) {
    await Deno.writeTextFile(join(dir, name), text);
  }
  let registryPath: string | undefined;
  if (opts.registry) {
    registryPath = join(dir, "registry.json");
    await Deno.writeTextFile(registryPath, JSON.stringify(opts.registry));
  }
  const registry = await loadRegistry(registryPath);
  const modelsDir = join(dir, "models");
  const runtimes = new RuntimeChecker(registry);
  const maxConcurrent = opts.maxConcurrent ?? 2;
  const checks = new Set<Promise<unknown>>();
  const supervisor = opts.supervisor
    ? new Supervisor(new LocalPort(store), {
      registry,
      runtime: (type) => {
        const check = runtimes.get(type);
        checks.add(check);
        return check.finally(() => checks.delete(check));
      },
      modelsDir,
      maxConcurrent,
      graceSeconds: opts.graceSeconds ?? 2,
      workerId: `test-${Deno.pid}`,
    })
    : null;
  const jobs: JobDeps = {
    store,
    registry,
    clock: systemClock,
    newId: randomId,
    modelsDir,
    defaultTimeoutSeconds: opts.defaultTimeoutSeconds ?? 60,
    artifacts: opts.artifacts ?? new FolderStore(modelsDir),
    // What the in-process supervisor passes to its scripts.
    dataset: datasetSource((name) => Deno.env.get(name)),
  };
  const lifecycle = { shuttingDown: false };
  const app = createApp({
    database,
    store,
    jobs,
    runtimes,
    apiToken: opts.apiToken,
    metricsToken: opts.metricsToken,
    corsOrigins: opts.corsOrigins,
    allowedHosts: opts.allowedHosts,
    maxConcurrent,
    logTailLines: opts.logTailLines ?? 200,
    logTailBytes: opts.logTailBytes,
    logPageBytes: opts.logPageBytes,
    statusCacheBytes: opts.statusCacheBytes,
    lifecycle,
  });
  supervisor?.start();
  return {
    ...base,
    app,
    modelsDir,
    registry,
    jobs,
    supervisor,
    lifecycle,
    request: (method, path, init) => send(app, method, path, init),
    async [Symbol.asyncDispose]() {
      if (supervisor) {
        await supervisor.shutdown();
        // A launch that was still checking its runtime spawns after shutdown: wait for it,
        // let it reach its spawn, and stop it too.
        await Promise.allSettled([...checks]);
        await Deno.mkdir(modelsDir, { recursive: true });
        await supervisor.shutdown();
      }
      await base[Symbol.asyncDispose]();
    },
  };
}

/**
 * Sends one request through `app.request()`; parses a JSON body when there is one, and
 * checks the answer against the app's OpenAPI document.
 */
export async function send(
  app: Hono,
  method: string,
  path: string,
  init: RequestOptions = {},
): Promise<TestResponse> {
  const headers: Record<string, string> = { ...init.headers };
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers["content-type"] ??= "application/json";
  }
  const res = await app.request(path, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  const contentType = res.headers.get("content-type") ?? "";
  if (text && contentType.includes("json")) parsed = JSON.parse(text);
  // Every answer the API tests see must be one that /openapi.json documents.
  (await checkerFor(app)).check({ method, path, status: res.status, contentType, body: parsed });
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Polls `probe` until it returns a truthy value or the deadline passes. */
export async function pollUntil<T>(
  probe: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  what: string,
  // Generous: the first job of an app waits for the runtime check, which imports sklearn and
  // xgboost; on two loaded cores that alone has taken 15 s.
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Polls a job's status endpoint until `done(data)` holds; returns the status data. */
export async function waitForJob(
  t: TestApp,
  jobId: string,
  // deno-lint-ignore no-explicit-any
  done: (data: any) => boolean,
  what = "the job",
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  return await pollUntil(async () => {
    const res = await t.request("GET", `/train/status/${jobId}`);
    return res.status === 200 && done(res.body.data) ? res.body.data : null;
  }, what);
}

/** Shell scripts for registry entries; each follows the training script protocol. */
export interface TrainedModel {
  model_type: string;
  /** As a request gives them; a built-in type's defaults are applied. */
  hyperparameters?: Record<string, unknown>;
  use_cv?: boolean;
  /** The data it was trained on; by default the dataset a test app trains on. */
  dataset?: DatasetIdentity;
  mtime?: Date;
}

/**
 * Writes a model file as a finished job leaves it: the file and `.meta.json` recording the
 * spec fingerprint that a submission of the same training asks for.
 */
export async function writeTrainedModel(dir: string, name: string, m: TrainedModel) {
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, name);
  const type = BUILTIN_TYPES.find((t) => t.name === m.model_type);
  const hyperparameters = type
    ? type.params.parse(m.hyperparameters ?? {})
    : (m.hyperparameters ?? {});
  const dataset = m.dataset ?? await datasetIdentity(datasetSource((name) => Deno.env.get(name)));
  const spec = trainingSpec(
    { model_type: m.model_type, hyperparameters, use_cv: m.use_cv ?? true },
    dataset,
  );
  const metadata = { model_type: m.model_type, spec_fingerprint: specFingerprint(spec), spec };
  await Deno.writeTextFile(metadataPathFor(path), JSON.stringify(metadata));
  await Deno.writeTextFile(path, "model");
  if (m.mtime) await Deno.utime(path, m.mtime, m.mtime);
  return { path, fingerprint: specFingerprint(spec) };
}

export const SCRIPTS = {
  /** Writes the artifact, reports progress and a metric, exits 0. */
  "ok.sh": `echo "training $TRAIN_MODEL_TYPE"
echo '@@trainer {"event":"progress","step":1,"total":1,"message":"done"}'
echo '@@trainer {"event":"metrics","metrics":{"accuracy":0.9}}'
echo "hp=$TRAIN_HYPERPARAMETERS" >&2
printf model > "$TRAIN_ARTIFACT_PATH"
`,
  /** Writes to stderr and exits 3. */
  "fail.sh": `echo "something broke" >&2
exit 3
`,
  /** Runs until the file named by $1 exists, then writes the artifact. */
  "hold.sh": `echo holding
while [ ! -e "$1" ]; do sleep 0.05; done
printf model > "$TRAIN_ARTIFACT_PATH"
`,
};

/** Pids of live (not zombie) processes in a process group, read from /proc. */
export function liveGroupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(pgrp) === pgid && state !== "Z" && state !== "X") pids.push(Number(entry.name));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

/**
 * Records a model the way a job that stored it does: a job's events (submitted, started, and
 * an exit whose report carries the artifact record) appended through the real store, so the
 * `models` projection gets its row in the same transaction. The file must already be in
 * `folder` (the FolderStore's folder). Returns the job id and the record.
 */
export async function recordModel(
  store: EventStore,
  folder: string,
  name: string,
  opts: { model_type?: string; worker_id?: string; storedIn?: string; location?: string } = {},
): Promise<{ jobId: string; record: ArtifactRecord }> {
  const path = join(folder, name);
  const jobId = randomId();
  const info = await Deno.stat(path);
  const metaText = await Deno.readTextFile(metadataPathFor(path)).catch(() => null);
  const record: ArtifactRecord = {
    name,
    size: info.size,
    sha256: await sha256File(path),
    stored_in: opts.storedIn ?? `folder ${folder}`,
    location: opts.location ?? path,
    worker_id: opts.worker_id ?? "test-worker",
    metadata: metaText ? JSON.parse(metaText) : null,
  };
  const model_type = opts.model_type ?? modelTypeOf(name) ??
    String(record.metadata?.model_type ?? "xgboost");
  await store.run(async (uow) => {
    await uow.execute(jobId, {
      type: "submit",
      reuse: null,
      data: submittedData({ model_type, artifact_path: path }),
    });
    await uow.execute(jobId, { type: "start", data: startedData() });
    await uow.execute(jobId, {
      type: "exit",
      report: exitReport({ artifact: path, artifact_record: record }),
    });
  });
  return { jobId, record };
}

/**
 * A finished (completed) job of `app`'s store: a small model file `file` and its metadata
 * written to the models folder, then recorded. Returns the job id.
 */
export async function finishedJob(app: TestApp, file: string): Promise<string> {
  await Deno.mkdir(app.modelsDir, { recursive: true });
  const path = join(app.modelsDir, file);
  await Deno.writeTextFile(path, "model bytes");
  await Deno.writeTextFile(metadataPathFor(path), JSON.stringify({ model_type: "xgboost" }));
  return (await recordModel(app.store, app.modelsDir, file)).jobId;
}

/** writeTrainedModel, then recordModel: a model a finished job stored and recorded. */
export async function recordTrainedModel(
  store: EventStore,
  dir: string,
  name: string,
  m: TrainedModel,
) {
  const written = await writeTrainedModel(dir, name, m);
  // The job's type is the one its file is named after, as with a real job.
  const model_type = modelTypeOf(name) ?? m.model_type;
  const { jobId, record } = await recordModel(store, dir, name, { model_type });
  return { ...written, jobId, record };
}

/**
 * Records the model a finished job left at `modelPath` unless the log already has it. The
 * supervisor records what it stores once the write side lands; until then tests that reuse a
 * real job's model record it here, and afterwards this does nothing.
 */
export async function ensureRecorded(t: TestApp, modelPath: string): Promise<void> {
  const name = basename(modelPath);
  if (await modelByName(t.database.db, name)) return;
  await recordModel(t.store, t.modelsDir, name);
}
