/** E2E: a SIGKILLed server restarted leaves no running job and no orphan; SIGTERM is graceful. */
import assert from "node:assert/strict";
import {
  groupAlive,
  groupMembers,
  http,
  liveProcesses,
  pollUntil,
  runServerToExit,
  Server,
  waitJob,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

async function submit(base: string, hyperparameters: Record<string, unknown>): Promise<string> {
  const r = await http(base, "POST", "/train/fake", { retrain: true, hyperparameters });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data.job_id;
}

/** Waits until the job runs with its python and its `sleep` grandchild; returns the pgid. */
async function runningGroup(base: string, id: string): Promise<number> {
  const job = await waitJob(base, id, (d) => d.status === "running" && d.process);
  await pollUntil("python and its sleep", () => groupMembers(job.process.pgid).length === 2);
  return job.process.pgid;
}

async function failedEvent(base: string, id: string) {
  const r = await http(base, "GET", `/train/job/${id}/events?type=failed`);
  assert.equal(r.status, 200);
  assert.equal(r.body.events.length, 1);
  return r.body.events[0].data;
}

Deno.test("e2e: a SIGKILLed server is recovered on restart", async (t) => {
  const ws = await Workspace.create();
  const servers: Server[] = [];
  try {
    const env = ws.env({
      ...await ws.registry({ fake: await ws.fakeTrainer() }),
      MAX_CONCURRENT_JOBS: "2",
    });
    const first = await Server.start(env);
    servers.push(first);
    const sleeping = [
      await submit(first.base, { sleep: 1000, grandchild: true }),
      await submit(first.base, { sleep: 1000, grandchild: true }),
    ];
    const waiting = await submit(first.base, {});
    const pgids = await Promise.all(sleeping.map((id) => runningGroup(first.base, id)));
    const queued = await http(first.base, "GET", `/train/status/${waiting}`);
    assert.equal(queued.body.data.status, "started");

    await t.step("after SIGKILL the children live on as orphans", async () => {
      const status = await first.kill("SIGKILL");
      assert.equal(status.signal, "SIGKILL");
      const live = liveProcesses();
      for (const pgid of pgids) {
        assert.ok(groupAlive(pgid), `group ${pgid} died with the server`);
        assert.notEqual(live.get(pgid)?.ppid, first.pid);
      }
    });

    const second = await Server.start(env);
    servers.push(second);

    await t.step("the restarted server failed them as interrupted, with evidence", async () => {
      for (const [i, id] of sleeping.entries()) {
        const r = await http(second.base, "GET", `/train/status/${id}`);
        assert.equal(r.status, 200);
        assert.equal(r.body.data.status, "failed");
        assert.equal(r.body.data.failure_reason, "interrupted");
        assert.equal(r.body.data.model_path, null);
        assert.equal(r.body.data.process.alive, false);
        const failed = await failedEvent(second.base, id);
        assert.equal(failed.failure_reason, "interrupted");
        assert.equal(failed.evidence.pgid, pgids[i]);
        assert.equal(failed.evidence.leader_alive, true);
        assert.equal(failed.evidence.signal, "SIGKILL");
        assert.equal(failed.evidence.group_gone, true);
      }
      assert.match(second.output, /recovered: 2 interrupted job\(s\)/);
    });

    await t.step("no orphan is left and no job of the dead server runs", async () => {
      for (const pgid of pgids) assert.equal(groupAlive(pgid), false, `group ${pgid} survived`);
      const running = await http(second.base, "GET", "/train/jobs?status=running");
      const ids = running.body.jobs.map((j: { job_id: string }) => j.job_id);
      for (const id of sleeping) assert.ok(!ids.includes(id));
    });

    await t.step("the job waiting in the queue runs after the restart", async () => {
      const job = await waitTerminal(second.base, waiting);
      assert.equal(job.status, "completed", JSON.stringify(job));
      assert.ok(job.model_path);
    });
  } finally {
    for (const s of servers) await s.kill();
    await ws.dispose();
  }
});

Deno.test("e2e: SIGTERM shuts down gracefully and records the job as interrupted", async (t) => {
  const ws = await Workspace.create();
  const servers: Server[] = [];
  try {
    const env = ws.env({
      ...await ws.registry({ fake: await ws.fakeTrainer() }),
      CANCEL_GRACE_SECONDS: "3",
    });
    const first = await Server.start(env);
    servers.push(first);
    // It ignores SIGTERM, so shutting down takes the grace period: time to see the 503s.
    const id = await submit(first.base, { sleep: 1000, grandchild: true, ignore_term: true });
    const pgid = await runningGroup(first.base, id);
    const asked = Date.now();
    Deno.kill(first.pid, "SIGTERM");

    await t.step("while shutting down, requests get 503", async () => {
      const r = await pollUntil(
        "a 503",
        async () => {
          const reply = await http(first.base, "GET", "/train/jobs");
          return reply.status === 503 ? reply : null;
        },
        5_000,
        20,
      );
      assert.equal(r.body.status, "error");
      assert.match(r.body.message, /shutting down/);
      const post = await http(first.base, "POST", "/train/fake", { retrain: true });
      assert.equal(post.status, 503);
    });

    await t.step("the server exits 0 within a few seconds; the group is gone", async () => {
      const status = await first.exited(15_000);
      assert.equal(status.code, 0, first.output);
      assert.ok(Date.now() - asked < 15_000);
      assert.equal(groupAlive(pgid), false);
      assert.match(first.output, /SIGTERM: stopping/);
    });

    await t.step("after a restart the job shows failed, interrupted", async () => {
      const second = await Server.start(env);
      servers.push(second);
      const r = await http(second.base, "GET", `/train/status/${id}`);
      assert.equal(r.body.data.status, "failed");
      assert.equal(r.body.data.failure_reason, "interrupted");
      assert.equal(r.body.data.process.alive, false);
      assert.equal(r.body.data.process.stopped_with, "SIGKILL");
      assert.equal(r.body.data.process.group_gone, true);
      const failed = await failedEvent(second.base, id);
      assert.equal(failed.evidence.stopped_for, "shutdown");
      assert.doesNotMatch(second.output, /recovered/);
    });
  } finally {
    for (const s of servers) await s.kill();
    await ws.dispose();
  }
});

Deno.test("e2e: a second server on the same database leaves the first one's jobs alone", async (t) => {
  const ws = await Workspace.create();
  const servers: Server[] = [];
  try {
    const env = ws.env({ ...await ws.registry({ fake: await ws.fakeTrainer() }) });
    const first = await Server.start(env);
    servers.push(first);
    const id = await submit(first.base, { sleep: 1000, grandchild: true });
    const pgid = await runningGroup(first.base, id);

    await t.step("the second server refuses to start, naming DATABASE_URL", async () => {
      const { code, output } = await runServerToExit(env);
      assert.notEqual(code, 0);
      assert.match(output, /DATABASE_URL=.*in use by another server/);
      assert.doesNotMatch(output, /listening on|recovered/);
    });

    await t.step("the first server's job still runs", async () => {
      assert.ok(groupAlive(pgid), "the job's processes were killed");
      const r = await http(first.base, "GET", `/train/status/${id}`);
      assert.equal(r.body.data.status, "running");
    });
  } finally {
    for (const s of servers) await s.kill();
    await ws.dispose();
  }
});
