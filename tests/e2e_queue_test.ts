/** E2E: MAX_CONCURRENT_JOBS holds the queue; jobs start in submission order. */
import assert from "node:assert/strict";
import {
  http,
  liveProcesses,
  pollUntil,
  processesWithEnv,
  Server,
  Workspace,
} from "./helpers/server.ts";

const MAX = 2;
const JOBS = 5;

Deno.test("e2e: at most MAX_CONCURRENT_JOBS run, FIFO, all complete", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const env = ws.env({
      ...await ws.registry({ fake: await ws.fakeTrainer() }),
      MAX_CONCURRENT_JOBS: String(MAX),
    });
    server = await Server.start(env);
    const base = server.base;
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const r = await http(base, "POST", "/train/fake", {
        retrain: true,
        hyperparameters: { sleep: 0.6 },
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      ids.push(r.body.data.job_id);
    }

    // deno-lint-ignore no-explicit-any
    let jobs: any[] = [];
    const seen = { running: 0, processes: 0, polls: 0 };
    await t.step("never more than MAX running, by the API and by the processes", async () => {
      await pollUntil(
        "all jobs finished",
        async () => {
          const list = await http(base, "GET", `/train/jobs?limit=${JOBS}`);
          assert.equal(list.status, 200);
          jobs = list.body.jobs;
          const running = jobs.filter((j) => j.status === "running").length;
          const health = await http(base, "GET", "/health");
          const processes = jobGroups(ws.modelsDir);
          seen.running = Math.max(seen.running, running, health.body.running);
          seen.processes = Math.max(seen.processes, processes);
          seen.polls++;
          assert.ok(running <= MAX, `${running} jobs running at once`);
          assert.ok(processes <= MAX, `${processes} job processes alive at once`);
          return jobs.every((j) => j.status === "completed");
        },
        60_000,
        25,
      );
      assert.equal(seen.running, MAX, `the queue ran ${MAX} at once (${JSON.stringify(seen)})`);
    });

    await t.step("the recorded run times never overlap more than MAX", () => {
      const edges = jobs.flatMap((j) => [[Date.parse(j.started_at), 1], [
        Date.parse(j.completed_at),
        -1,
      ]]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let now = 0;
      for (const [, d] of edges) {
        now += d;
        assert.ok(now <= MAX, `${now} jobs overlapped`);
      }
    });

    await t.step("jobs started in submission order (by the log's sequence)", async () => {
      const startSeq = new Map<string, number>();
      for (const id of ids) {
        const r = await http(base, "GET", `/train/job/${id}/events?type=started`);
        assert.equal(r.body.events.length, 1);
        startSeq.set(id, r.body.events[0].seq);
      }
      const byStart = [...ids].sort((a, b) => startSeq.get(a)! - startSeq.get(b)!);
      assert.deepEqual(byStart, ids);
      for (const j of jobs) assert.ok(j.model_path, `${j.job_id} has a model`);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});

/** Process groups of live processes started for jobs of this workspace. */
function jobGroups(modelsDir: string): number {
  const live = liveProcesses();
  const pids = processesWithEnv("TRAIN_OUTPUT_DIR", modelsDir);
  return new Set(pids.map((pid) => live.get(pid)?.pgid)).size;
}
