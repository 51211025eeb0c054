/**
 * Fault drill (small), hosted mode: two remote-mode servers on one database and two workers,
 * 4 SIGKILLs of a random server or worker under a workload through both servers; then every
 * job ends, no lease or training process is left, each job ran at most once per attempt, and
 * lost workers' jobs were requeued or failed with evidence. `deno task drill kill-remote`
 * runs 30 kills with three workers.
 */
import assert from "node:assert/strict";
import { DrillFailure } from "../bench/drills/failure.ts";
import { killRemote, report, withTempDir } from "./helpers/drill.ts";

Deno.test("drill: hosted mode survives 4 SIGKILLs of servers and workers", async () => {
  const figures = await withTempDir(
    "drill-kill-remote-",
    (dir) =>
      killRemote({ kills: 4, dir, workers: 2, leaseSeconds: 3, longSeconds: 4, maxWaiting: 8 }),
  ).catch((e) => {
    // The seed, to run it again: killRemote({ seed, ... }).
    if (e instanceof DrillFailure) report("remote kill FAILED", e.figures);
    throw e;
  });
  report("remote kill", figures);
  assert.equal(figures.kills, 4);
  assert.ok(figures.jobs_accepted > 0, "the workload got jobs accepted");
  assert.equal(figures.completed! + figures.failed! + figures.cancelled!, figures.jobs_in_database);
});
