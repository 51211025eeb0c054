/**
 * Pipelined launches (issue 12): with free slots and jobs waiting, the supervisor claims
 * several at once, spawns them, and their `started` events share one commit, still in
 * submission order. Before, each launch waited for its own commit before the next claim,
 * so every commit carried one start. With `prefetch`, jobs are claimed ahead while every
 * slot is busy; one cancelled while claimed ahead never starts. Real Supervisor, store, port
 * and child processes.
 */
import assert from "node:assert/strict";
import { cancelJob } from "../jobs/service.ts";
import type { JobState } from "../jobs/state.ts";
import { LocalPort } from "../jobs/worker_port.ts";
import { openTestStore, pollUntil, testJobDeps } from "./helpers/app.ts";
import { within } from "./helpers/server.ts";
import { allCompleted, startSupervisor, submitJobs } from "./helpers/supervised.ts";

const JOBS = 12;
const SLOTS = 4;

Deno.test("launches are pipelined: starts of several jobs share a commit, in FIFO order", async (t) => {
  await using base = await openTestStore();
  const { dir, store } = base;
  const deps = await testJobDeps(store, dir, {
    quick: { command: ["/bin/sh", "-c", 'printf m > "$TRAIN_ARTIFACT_PATH"'] },
  });
  const submitted = await submitJobs(deps, "quick", JOBS);
  // Every start in log order, and how many starts each commit carried.
  const starts: string[] = [];
  const startsPerCommit: number[] = [];
  store.onCommit((events) => {
    const these = events.filter((e) => e.event.type === "started").map((e) => e.job_id);
    starts.push(...these);
    if (these.length) startsPerCommit.push(these.length);
  });
  const supervisor = startSupervisor(deps, { maxConcurrent: SLOTS });
  try {
    await allCompleted(store, submitted, "every job to complete");

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

/** The local port, recording which jobs were claimed. */
class RecordingPort extends LocalPort {
  claimed: string[] = [];
  override async claim(max: number): Promise<JobState[]> {
    const jobs = await super.claim(max);
    this.claimed.push(...jobs.map((j) => j.job_id));
    return jobs;
  }
}

Deno.test("jobs claimed ahead: FIFO, never over the limit, a cancelled one never starts", async (t) => {
  await using base = await openTestStore();
  const { dir, store } = base;
  const go = `${dir}/go`;
  // Each job waits for the test's go-ahead, so that the slots stay busy while jobs are
  // claimed ahead.
  const script = `while [ ! -e "${go}" ]; do sleep 0.02; done; printf m > "$TRAIN_ARTIFACT_PATH"`;
  const deps = await testJobDeps(store, dir, { held: { command: ["/bin/sh", "-c", script] } });
  const submitted = await submitJobs(deps, "held", 6);
  const starts: string[] = [];
  let mostRunning = 0;
  store.onCommit((events) => {
    for (const e of events) if (e.event.type === "started") starts.push(e.job_id);
    const running = store.activeJobs().filter((j) => j.status === "running").length;
    mostRunning = Math.max(mostRunning, running);
  });
  const port = new RecordingPort(store);
  const supervisor = startSupervisor(deps, { maxConcurrent: 2, prefetch: 2, port });
  const [, , third] = submitted;
  try {
    await pollUntil(
      () => starts.length === 2 && port.claimed.includes(third) || null,
      "two jobs running and the third claimed ahead",
      60_000,
    );
    assert.equal(
      (await cancelJob(deps, third, "cancelled while claimed ahead")).status,
      "cancelled",
    );
    await Deno.writeTextFile(go, "");
    const rest = submitted.filter((id) => id !== third);
    await allCompleted(store, rest, "the other jobs to complete");

    await t.step("the others started once each, in submission order", () => {
      assert.deepEqual(starts, rest);
    });
    await t.step("the job cancelled while claimed ahead never started", async () => {
      const job = await store.load(third);
      assert.equal(job?.status, "cancelled");
      assert.equal(job?.started_at, null);
    });
    await t.step("never more than the limit running", () => {
      assert.equal(mostRunning, 2);
    });
  } finally {
    await within(30_000, supervisor.shutdown(), "the supervisor to shut down");
  }
});
