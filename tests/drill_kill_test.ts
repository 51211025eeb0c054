/**
 * Fault drill (small): SIGKILL the real server 5 times under a workload of submissions,
 * cancels and running jobs; after each kill every accepted job and every event a client saw
 * is still there, the projection equals a replay, and after the restart no job runs without
 * a live process and no training process is orphaned. `deno task drill` runs 50 kills.
 */
import assert from "node:assert/strict";
import { killLoop, report, withTempDir } from "./helpers/drill.ts";

Deno.test("drill: the server survives 5 SIGKILLs without losing or orphaning anything", async () => {
  const figures = await withTempDir("drill-kill-", (dir) => killLoop({ kills: 5, dir }));
  report("kill loop", figures);
  assert.equal(figures.kills_survived, 5);
  assert.ok(figures.jobs_accepted > 0, "the workload got jobs accepted");
  assert.ok(figures.events_seen_by_clients > 0, "clients read events back");
  assert.ok(figures.jobs_in_database >= figures.jobs_accepted);
});
