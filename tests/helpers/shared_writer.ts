/**
 * One writer of the shared-store test: submits and starts its half of the jobs, writes
 * output to every job (its own and the other writer's), cancels a quarter of them, and
 * submits idempotency keys that the other writer submits too. Everything runs at once, so
 * its units race each other (group commits) and the other writer (optimistic retries).
 *
 * Imported by tests/shared_store_test.ts, and run as its own process:
 * `deno run -A tests/helpers/shared_writer.ts <database url> <writer 0|1> <jobs> <keys>`
 * prints the summary as one JSON line.
 */
import { FolderStore } from "../../artifacts/folder_store.ts";
import { randomId } from "../../db/clock.ts";
import { openDatabase } from "../../db/client.ts";
import { EventStore, type UnitOfWork } from "../../db/event_store.ts";
import type { Command } from "../../jobs/decide.ts";
import { type JobDeps, submitJob } from "../../jobs/service.ts";
import { loadRegistry } from "../../models/registry.ts";
import { startedData, submittedData } from "./jobs.ts";

/** The id of job `i`, the same in both writers. */
export function jobId(i: number): string {
  return `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
}

export interface WriterSummary {
  /** Events this writer's units committed. */
  events: number;
  /** Idempotency key -> the job its submission answered. */
  keys: Record<string, string>;
  /** Submissions answered from an earlier one. */
  replayed: number;
}

/** Runs writer `k` (0 or 1) of `jobs` jobs and `keys` shared keys on `store`. */
export async function runWriter(
  store: EventStore,
  opts: { k: number; jobs: number; keys: number; modelsDir: string },
): Promise<WriterSummary> {
  const { k } = opts;
  let events = 0;
  const run = async (id: string, commands: Command[]) => {
    const n = await store.run((uow) => execute(uow, commands, id));
    events += n;
  };
  const ids = Array.from({ length: opts.jobs }, (_, i) => i);
  const mine = ids.filter((i) => i % 2 === k);

  const own = Promise.all(mine.map((i) =>
    run(jobId(i), [
      { type: "submit", reuse: null, data: submittedData({ artifact_path: null }) },
      { type: "start", data: startedData({ worker_id: `writer-${k}` }) },
    ])
  ));
  const output = Promise.all(ids.map(async (i) => {
    await until(async () => (await store.load(jobId(i)))?.process?.alive === true);
    await run(jobId(i), [{
      type: "output",
      events: [{ type: "log", data: { stream: "stdout", lines: [`writer ${k} job ${i}`] } }],
    }]);
    if (i % 4 === k) await run(jobId(i), [{ type: "cancel", reason: `writer ${k}` }]);
  }));
  const deps: JobDeps = {
    store,
    registry: await loadRegistry(),
    clock: store.clock,
    newId: randomId,
    modelsDir: opts.modelsDir,
    defaultTimeoutSeconds: 60,
    artifacts: new FolderStore(opts.modelsDir),
    dataset: {},
  };
  const keys: Record<string, string> = {};
  let replayed = 0;
  const submissions = Promise.all(Array.from({ length: opts.keys }, async (_, j) => {
    const key = `shared-${j}`;
    const sub = await submitJob(deps, {
      model_type: "xgboost",
      retrain: true,
      use_cv: false,
      hyperparameters: { n_estimators: 10 + j },
    }, { idempotencyKey: key, typeStatus: 404 });
    keys[key] = sub.job.job_id;
    if (sub.replayed) replayed++;
    else events++;
  }));
  await Promise.all([own, output, submissions]);
  await store.flush();
  return { events, keys, replayed };
}

async function execute(uow: UnitOfWork, commands: Command[], id: string): Promise<number> {
  let n = 0;
  for (const c of commands) n += (await uow.execute(id, c)).length;
  return n;
}

async function until(probe: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!await probe()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

if (import.meta.main) {
  const [url, k, jobs, keys] = Deno.args;
  const database = await openDatabase(url);
  const store = await EventStore.open(database, { now: () => new Date() }, { shared: true });
  // Both writers start their work together, once each has its store open.
  const path = url.slice("file:".length);
  await Deno.writeTextFile(`${path}.ready-${k}`, "");
  await until(async () => {
    const ready = await Promise.all(
      ["0", "1"].map((w) => Deno.stat(`${path}.ready-${w}`).then(() => true, () => false)),
    );
    return ready.every(Boolean);
  });
  const summary = await runWriter(store, {
    k: Number(k),
    jobs: Number(jobs),
    keys: Number(keys),
    modelsDir: `${path}.models`,
  });
  database.close();
  console.log(JSON.stringify(summary));
}
