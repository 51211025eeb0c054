/**
 * The real Supervisor, real child processes and a real event store, with a port whose
 * `output` always fails for one job (a disk that refuses that job's writes). The job must
 * end as failed with a clear reason, its process group stopped and its slot given to the
 * next job; before, the collector retried forever and the job stayed running.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { OutputEvent } from "../jobs/decide.ts";
import type { FailureReason } from "../jobs/events.ts";
import { submitJob } from "../jobs/service.ts";
import type { JobState } from "../jobs/state.ts";
import { Supervisor } from "../jobs/supervisor.ts";
import { LocalPort, type StartInfo, type WorkerPort } from "../jobs/worker_port.ts";
import type { ExitReport } from "../jobs/decide.ts";
import { RuntimeChecker } from "../models/runtime_checker.ts";
import { liveGroupMembers, openTestStore, pollUntil, SCRIPTS, testJobDeps } from "./helpers/app.ts";
import { within } from "./helpers/server.ts";

/** The real LocalPort, except that `output` of the jobs in `failing` is refused. */
class RefusingPort implements WorkerPort {
  readonly failing = new Set<string>();
  refused = 0;
  constructor(readonly inner: LocalPort) {}
  claim(max: number): Promise<JobState[]> {
    return this.inner.claim(max);
  }
  started(jobId: string, info: StartInfo) {
    return this.inner.started(jobId, info);
  }
  output(jobId: string, events: OutputEvent[]): Promise<void> {
    if (!this.failing.has(jobId)) return this.inner.output(jobId, events);
    this.refused++;
    return Promise.reject(new Error("injected: disk I/O error"));
  }
  exited(jobId: string, report: ExitReport) {
    return this.inner.exited(jobId, report);
  }
  fail(jobId: string, reason: FailureReason, error: string) {
    return this.inner.fail(jobId, reason, error);
  }
  watch(listener: { queued(): void; cancelled(jobId: string): void }) {
    this.inner.watch(listener);
  }
}

Deno.test("output that cannot be stored fails the job, stops its group and frees the slot", async (t) => {
  await using base = await openTestStore();
  const { dir, store } = base;
  // Prints forever: only the supervisor can end it.
  await Deno.writeTextFile(join(dir, "noisy.sh"), "while :; do echo tick; sleep 0.01; done\n");
  await Deno.writeTextFile(join(dir, "ok.sh"), SCRIPTS["ok.sh"]);
  const deps = await testJobDeps(store, dir, {
    noisy: { command: ["/bin/sh", "./noisy.sh"] },
    fine: { command: ["/bin/sh", "./ok.sh"] },
  });
  const { registry, modelsDir } = deps;
  const submit = async (type: string) =>
    (await submitJob(deps, {
      model_type: type,
      retrain: true,
      use_cv: false,
      hyperparameters: null,
    }, {
      typeStatus: 404,
    })).job.job_id;
  const noisy = await submit("noisy");
  const fine = await submit("fine");
  const port = new RefusingPort(new LocalPort(store));
  port.failing.add(noisy);
  const runtimes = new RuntimeChecker(registry);
  const supervisor = new Supervisor(port, {
    registry,
    runtime: (type) => runtimes.get(type),
    modelsDir,
    maxConcurrent: 1,
    graceSeconds: 2,
    workerId: "test",
  });
  supervisor.start();
  try {
    const failed = await pollUntil(
      async () => {
        const s = await store.load(noisy);
        return s?.status === "failed" && s.process?.group_gone !== null ? s : null;
      },
      "the refused job to fail and its process to end",
      60_000,
    );

    await t.step("the job failed with output_failed and says why", () => {
      assert.equal(failed.failure_reason, "output_failed");
      assert.match(failed.error ?? "", /output could not be stored after 8 tries/);
      assert.match(failed.error ?? "", /disk I\/O error/);
      assert.equal(port.refused, 8, "a bounded number of tries");
    });
    await t.step("its process group is gone", () => {
      assert.deepEqual(liveGroupMembers(failed.process!.pgid), []);
      assert.equal(failed.process!.group_gone, true);
      assert.equal(failed.process!.stopped_with, "SIGTERM");
    });
    await t.step("the slot is free: the next job runs and completes", async () => {
      const next = await pollUntil(
        async () => {
          const s = await store.load(fine);
          return s?.status === "completed" ? s : null;
        },
        "the next job to complete",
        30_000,
      );
      assert.equal(next.log_lines, 2);
    });
  } finally {
    // Bounded: with a collector that retried forever, shutdown never returned either.
    await within(30_000, supervisor.shutdown(), "the supervisor to shut down");
  }
});
