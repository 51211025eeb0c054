/**
 * Pipelined launches (issue 12): with free slots and jobs waiting, the supervisor claims
 * several at once, spawns them, and their `started` events share one commit, still in
 * submission order. Before, each launch waited for its own commit before the next claim,
 * so every commit carried one start. Real Supervisor, store, port and child processes.
 */
import assert from "node:assert/strict";
import { submitJob } from "../jobs/service.ts";
import { Supervisor } from "../jobs/supervisor.ts";
import { LocalPort } from "../jobs/worker_port.ts";
import { RuntimeChecker } from "../models/runtime_checker.ts";
import { openTestStore, pollUntil, testJobDeps } from "./helpers/app.ts";
import { within } from "./helpers/server.ts";

const JOBS = 12;
const SLOTS = 4;

Deno.test("launches are pipelined: starts of several jobs share a commit, in FIFO order", async (t) => {
  await using base = await openTestStore();
  const { dir, store } = base;
  const deps = await testJobDeps(store, dir, {
    quick: { command: ["/bin/sh", "-c", 'printf m > "$TRAIN_ARTIFACT_PATH"'] },
  });
  const { registry, modelsDir } = deps;
  const submitted: string[] = [];
  for (let i = 0; i < JOBS; i++) {
    const { job } = await submitJob(deps, {
      model_type: "quick",
      retrain: true,
      use_cv: false,
      hyperparameters: null,
    }, { typeStatus: 404 });
    submitted.push(job.job_id);
  }
  // Every start in log order, and how many starts each commit carried.
  const starts: string[] = [];
  const startsPerCommit: number[] = [];
  store.onCommit((events) => {
    const these = events.filter((e) => e.event.type === "started").map((e) => e.job_id);
    starts.push(...these);
    if (these.length) startsPerCommit.push(these.length);
  });
  const runtimes = new RuntimeChecker(registry);
  const supervisor = new Supervisor(new LocalPort(store), {
    registry,
    runtime: (type) => runtimes.get(type),
    modelsDir,
    maxConcurrent: SLOTS,
    graceSeconds: 2,
    workerId: "test",
  });
  supervisor.start();
  try {
    await pollUntil(
      async () => {
        const states = await Promise.all(submitted.map((id) => store.load(id)));
        return states.every((s) => s?.status === "completed") || null;
      },
      "every job to complete",
      60_000,
    );

    await t.step("every job started exactly once, in submission order", () => {
      assert.deepEqual(starts, submitted);
    });
    await t.step("the first free slots were filled by one commit of several starts", () => {
      assert.equal(startsPerCommit[0], SLOTS, `starts per commit: ${startsPerCommit}`);
      assert.ok(startsPerCommit.every((n) => n <= SLOTS), `starts per commit: ${startsPerCommit}`);
    });
  } finally {
    await within(30_000, supervisor.shutdown(), "the supervisor to shut down");
  }
});
