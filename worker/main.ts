/**
 * The remote worker, wiring only: configuration, leftovers of an earlier run, registry and
 * runtimes, registration with the hosted API, then a Supervisor over HttpPort. Run it with
 * `deno task worker` or `./trainer worker` on each machine that trains.
 */
import { resolve } from "node:path";
import { Supervisor } from "../jobs/supervisor.ts";
import { loadRegistry } from "../models/registry.ts";
import { RuntimeChecker } from "../models/runtime_checker.ts";
import { ApiClient } from "./client.ts";
import { FolderStore } from "../artifacts/folder_store.ts";
import { checkWorkerSettings, ConfigError, loadWorkerConfig } from "./config.ts";
import { redactUrl } from "../config.ts";
import { HttpPort } from "./http_port.ts";
import { killLeftovers } from "./leftovers.ts";
import { onStopSignals } from "../stop_signals.ts";

const log = (message: string) => console.log(`[worker] ${message}`);
const warn = (message: string) => console.error(`[worker] ${message}`);

function fail(message: string): never {
  warn(message);
  Deno.exit(2);
}
const messageOf = (e: unknown) => e instanceof Error ? e.message : String(e);

const config = (() => {
  try {
    return loadWorkerConfig(Deno.env.toObject());
  } catch (e) {
    fail(e instanceof ConfigError ? e.message : String(e));
  }
})();
await checkWorkerSettings(config).catch((e) => fail(messageOf(e)));
const name = config.WORKER_NAME;
const modelsDir = resolve(config.MODELS_DIR);

// Installed first: a stop signal during the start-up below (the leftovers scan, the runtime
// probes) ends the worker cleanly instead of killing it by the signal's default.
let port: HttpPort | null = null;
let supervisor: Supervisor | null = null;
let stopping = false;
async function shutdown(signal: string): Promise<void> {
  stopping = true;
  log(
    `${signal}: stopping; running jobs are stopped, and requeued while they have attempts ` +
      "left (else recorded as interrupted)",
  );
  // Claims first: a job this stop requeues must not come back to this worker's open claim.
  await port?.stopClaiming();
  await supervisor?.shutdown();
  await port?.close();
  log("stopped");
  Deno.exit(0);
}
onStopSignals({ stop: shutdown, log });

const leftovers = await killLeftovers(name);
if (leftovers.length) {
  log(`killed pid(s) ${leftovers.join(", ")} left by an earlier run of worker ${name}`);
}

const registry = await loadRegistry(config.MODEL_REGISTRY).catch((e) => fail(messageOf(e)));
// Where finished models go: this machine's MODELS_DIR, or an S3 bucket the API reads too.
// The AWS SDK is loaded only for an S3 store.
const storeUrl = Deno.env.get("ARTIFACT_STORE");
const artifacts = storeUrl
  ? await import("../artifacts/config.ts").then(({ parseArtifactStore }) => {
    try {
      return parseArtifactStore(storeUrl, modelsDir, Deno.env.toObject());
    } catch (e) {
      fail(messageOf(e));
    }
  })
  : new FolderStore(modelsDir);
const runtimes = new RuntimeChecker(registry, config.TRAIN_PYTHON);
const found = await runtimes.refresh();
for (const [type, r] of found) {
  log(
    r.runnable
      ? `model type ${type}: runnable with ${r.program}`
      : `model type ${type}: NOT runnable: ${r.hint}`,
  );
}
// Only what this machine can run is offered: a type offered but not runnable would drain its
// queue here, failing every job as runtime_missing, while other workers could run them.
const modelTypes = [...registry.keys()].filter((t) => t !== "all" && found.get(t)?.runnable);
if (modelTypes.length === 0) {
  fail(
    "no model type is runnable on this machine, so there is nothing to offer: " +
      [...found].map(([t, r]) => `${t}: ${r.hint}`).join("; "),
  );
}

port = new HttpPort(new ApiClient(config.TRAINER_URL, config.WORKER_TOKEN), {
  name,
  modelsDir,
  log,
  warn,
});

const registered = await port.register(modelTypes, config.MAX_CONCURRENT_JOBS).catch((e) => {
  // A signal while registering: shutdown() is exiting already.
  if (stopping) return new Promise<never>(() => {});
  fail(messageOf(e));
});

supervisor = new Supervisor(port, {
  registry,
  runtime: (type) => runtimes.get(type),
  modelsDir,
  maxConcurrent: config.MAX_CONCURRENT_JOBS,
  graceSeconds: config.CANCEL_GRACE_SECONDS,
  nice: config.JOB_NICE,
  workerId: registered.worker_id,
  // Lets the next run of this worker find what this one leaves if it dies (leftovers.ts).
  env: { TRAINER_WORKER_NAME: name },
  artifacts,
  log,
});
if (!stopping) supervisor.start();
log(
  `${name} (${registered.worker_id}) connected to ${
    redactUrl(config.TRAINER_URL)
  }, running up to ` +
    `${config.MAX_CONCURRENT_JOBS} jobs`,
);
