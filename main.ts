/** Wiring only: configuration, database, recovery, supervisor, HTTP server, signals. */
import { resolve } from "node:path";
import { createApp } from "./app.ts";
import { FolderStore } from "./artifacts/folder_store.ts";
import { ConfigError, isLoopback, loadConfig, redactUrl } from "./config.ts";
import { randomId, systemClock } from "./db/clock.ts";
import { openDatabase } from "./db/client.ts";
import { logDirOf } from "./db/log_files.ts";
import { EventStore } from "./db/event_store.ts";
import { lockDatabase, recover } from "./jobs/recovery.ts";
import type { SupervisorThreadOptions } from "./jobs/supervisor_thread.ts";
import { servePort } from "./jobs/thread_port.ts";
import { LocalPort } from "./jobs/worker_port.ts";
import { loadRegistry } from "./models/registry.ts";
import { RuntimeChecker } from "./models/runtime_checker.ts";
import { checkSettings } from "./startup_checks.ts";
import { Leases } from "./queue/leases.ts";
import { Reaper } from "./queue/reaper.ts";
import { onStopSignals } from "./stop_signals.ts";

const startedAt = new Date();
const log = (message: string) => console.log(`[trainer] ${message}`);

/** The innermost error's message: drizzle wraps the driver's ("fetch failed: ECONNREFUSED"). */
function rootCause(e: unknown): string {
  let err = e as { message?: string; cause?: unknown };
  while (err?.cause && typeof err.cause === "object") err = err.cause as typeof err;
  return (err?.message ?? String(e)).split("\n")[0];
}

function fail(message: string): never {
  console.error(`[trainer] ${message}`);
  Deno.exit(2);
}

const config = (() => {
  try {
    return loadConfig(Deno.env.toObject());
  } catch (e) {
    fail(e instanceof ConfigError ? e.message : String(e));
  }
})();
await checkSettings(config).catch((e) => fail(e instanceof ConfigError ? e.message : String(e)));
/** Hosted mode: jobs run on remote workers, and other API instances share the database. */
const remote = config.WORKERS === "remote";
// Held until the process ends: recovery below must never touch a live server's jobs. In
// hosted mode several instances share the database and none runs a process to recover.
const databaseLock = remote
  ? null
  : await lockDatabase(config.DATABASE_URL).catch((e) => fail(e.message));
const registry = await loadRegistry(config.MODEL_REGISTRY).catch((e) => fail(e.message));
const modelsDir = resolve(config.MODELS_DIR);
// The AWS SDK (tens of MB per isolate) is loaded only for an S3 store.
const artifacts = config.ARTIFACT_STORE
  ? await import("./artifacts/config.ts").then(({ ArtifactConfigError, parseArtifactStore }) => {
    try {
      return parseArtifactStore(config.ARTIFACT_STORE, modelsDir, Deno.env.toObject());
    } catch (e) {
      fail(e instanceof ArtifactConfigError ? e.message : String(e));
    }
  })
  : new FolderStore(modelsDir);
const database = await openDatabase(config.DATABASE_URL, config.DATABASE_AUTH_TOKEN, {
  checkpointThread: true,
  // The only writer (local mode holds the database's lock): commits leave the main thread.
  writerThread: !remote,
})
  .catch((e) => fail(`DATABASE_URL=${redactUrl(config.DATABASE_URL)}: ${rootCause(e)}`));
const store = await EventStore.open(database, systemClock, { shared: remote });
const runtimes = new RuntimeChecker(registry, config.TRAIN_PYTHON);
const leases = new Leases(store, { clock: systemClock, leaseMs: config.LEASE_SECONDS * 1000 });
const reaper = new Reaper(leases, { log });
const supervisorThread = remote ? null : startSupervisor();
if (remote) reaper.start();

/** Local mode: recovers what a dead server left, then runs the supervisor thread. */
async function startLocal(): Promise<void> {
  const recovered = await recover(store, { modelsDir, log });
  if (recovered.interrupted.length || recovered.killed.length) {
    log(
      `recovered: ${recovered.interrupted.length} interrupted job(s), killed pids ${
        recovered.killed.join(", ") || "none"
      }`,
    );
  }
}
if (!remote) await startLocal();

function startSupervisor(): Worker {
  void runtimes.refresh().then((found) => {
    for (const [type, r] of found) {
      log(
        r.runnable
          ? `model type ${type}: runnable with ${r.program}`
          : `model type ${type}: NOT runnable: ${r.hint}`,
      );
    }
  });
  // The supervisor runs on its own thread: the embedded database driver blocks this one
  // while it commits, and a child whose pipe is not drained meanwhile would stall.
  const thread = new Worker(new URL("./jobs/supervisor_thread.ts", import.meta.url), {
    type: "module",
  });
  thread.addEventListener("error", (e) => {
    e.preventDefault();
    console.error(`[trainer] the supervisor thread failed: ${e.message}; exiting`);
    Deno.exit(1);
  });
  return thread;
}

const lifecycle = { shuttingDown: false };
const app = createApp({
  database,
  store,
  jobs: {
    store,
    registry,
    clock: systemClock,
    newId: randomId,
    modelsDir,
    artifacts,
    defaultTimeoutSeconds: config.JOB_TIMEOUT_SECONDS,
    dataset: {
      path: config.DATASET_PATH,
      target: config.DATASET_TARGET,
      task: config.DATASET_TASK,
    },
  },
  runtimes,
  apiToken: config.API_TOKEN,
  metricsToken: config.METRICS_TOKEN,
  corsOrigins: config.CORS_ORIGINS,
  // Off on a public bind: there the Host is whatever name the machine is reached by.
  allowedHosts: isLoopback(config.HOST) ? config.ALLOWED_HOSTS ?? [] : null,
  maxConcurrent: config.MAX_CONCURRENT_JOBS,
  logTailLines: config.LOG_TAIL_LINES,
  logTailBytes: config.LOG_TAIL_BYTES,
  logPageBytes: config.LOG_PAGE_BYTES,
  bodyTimeoutMs: config.BODY_TIMEOUT_SECONDS * 1000,
  lifecycle,
  startedAt,
  maxStreams: config.MAX_STREAMS,
  statusCacheBytes: config.STATUS_CACHE_MB * 1024 * 1024,
  ssePingSeconds: config.SSE_PING_SECONDS,
  hosted: remote
    ? { leases, reaper, workerToken: config.WORKER_TOKEN!, leaseSeconds: config.LEASE_SECONDS }
    : undefined,
});

const server = (() => {
  try {
    return Deno.serve({
      hostname: config.HOST,
      port: config.PORT,
      onListen: ({ hostname, port }) =>
        log(
          `listening on http://${hostname}:${port} (database ${redactUrl(config.DATABASE_URL)}, ${
            remote ? "jobs run on remote workers" : `models ${modelsDir}`
          })`,
        ),
    }, app.fetch);
  } catch (e) {
    fail(`cannot listen on HOST=${config.HOST} PORT=${config.PORT}: ${(e as Error).message}`);
  }
})();
if (supervisorThread) {
  // After recovery, so the supervisor never takes a job that recovery is still ending.
  servePort(new LocalPort(store), (type) => runtimes.get(type), supervisorThread);
  const threadOptions: SupervisorThreadOptions = {
    registryPath: config.MODEL_REGISTRY,
    modelsDir,
    maxConcurrent: config.MAX_CONCURRENT_JOBS,
    graceSeconds: config.CANCEL_GRACE_SECONDS,
    nice: config.JOB_NICE,
    workerId: `local-${Deno.hostname()}-${Deno.pid}`,
    logDir: logDirOf(database.client) && config.LOG_FILES
      ? resolve(logDirOf(database.client)!)
      : undefined,
  };
  supervisorThread.postMessage({ init: threadOptions });
}

async function shutdown(signal: string): Promise<void> {
  log(
    remote
      ? `${signal}: stopping; jobs on remote workers keep running, and their reports wait ` +
        "for an API instance"
      : `${signal}: stopping; running jobs are stopped and recorded as interrupted`,
  );
  lifecycle.shuttingDown = true;
  reaper.stop();
  if (supervisorThread) await stopSupervisor(supervisorThread);
  await store.flush();
  await server.shutdown();
  await database.close();
  artifacts.close();
  databaseLock?.close();
  log("stopped");
  Deno.exit(0);
}
/** Asks the supervisor thread to stop its jobs; resolves once they are recorded. */
function stopSupervisor(supervisorThread: Worker): Promise<void> {
  return new Promise((resolve) => {
    supervisorThread.addEventListener("message", (e: MessageEvent) => {
      if (e.data?.control === "stopped") resolve();
    });
    supervisorThread.postMessage({ control: "shutdown" });
  });
}

onStopSignals({ stop: shutdown, log });
