/**
 * A real Supervisor over a test store, outside the HTTP app: submit jobs, start it with the
 * options a test varies, and wait for jobs to reach a status.
 */
import type { EventStore } from "../../db/event_store.ts";
import { type JobDeps, submitJob } from "../../jobs/service.ts";
import { Supervisor, type SupervisorOptions } from "../../jobs/supervisor.ts";
import { LocalPort, type WorkerPort } from "../../jobs/worker_port.ts";
import { RuntimeChecker } from "../../models/runtime_checker.ts";
import { pollUntil } from "./app.ts";

/** Submits `count` jobs of `modelType` (retrain, defaults); their ids in submission order. */
export async function submitJobs(
  deps: JobDeps,
  modelType: string,
  count: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const { job } = await submitJob(deps, {
      model_type: modelType,
      retrain: true,
      use_cv: false,
      hyperparameters: null,
    }, { typeStatus: 404 });
    ids.push(job.job_id);
  }
  return ids;
}

/** A started Supervisor over `port` (the store's LocalPort unless given). */
export function startSupervisor(
  deps: JobDeps,
  opts: Pick<SupervisorOptions, "maxConcurrent"> & Partial<SupervisorOptions> & {
    port?: WorkerPort;
  },
): Supervisor {
  const runtimes = new RuntimeChecker(deps.registry);
  const { port = new LocalPort(deps.store), ...rest } = opts;
  const supervisor = new Supervisor(port, {
    registry: deps.registry,
    runtime: (type) => runtimes.get(type),
    modelsDir: deps.modelsDir,
    graceSeconds: 2,
    workerId: "test",
    ...rest,
  });
  supervisor.start();
  return supervisor;
}

/** Waits until every job of `ids` is `completed`. */
export async function allCompleted(store: EventStore, ids: string[], what: string): Promise<void> {
  await pollUntil(
    async () => {
      const states = await Promise.all(ids.map((id) => store.load(id)));
      return states.every((s) => s?.status === "completed") || null;
    },
    what,
    60_000,
  );
}
