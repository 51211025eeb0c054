/** E2E: cancel really stops the whole process group; a waiting job never starts. */
import assert from "node:assert/strict";
import {
  groupAlive,
  groupMembers,
  http,
  pollUntil,
  Server,
  waitJob,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

const GRACE_SECONDS = 1;
const CLEANUP = `bash -c 'trap "sleep 0.5; exit 0" TERM; sleep 1000 & wait' & sleep 1000; wait`;

Deno.test("e2e: cancel stops process groups, SIGTERM then SIGKILL", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const registry = await ws.registry({
      fake: await ws.fakeTrainer(),
      spawner: ["/bin/bash", "-c", "sleep 1000 & sleep 1000; wait"],
      stubborn: ["/bin/bash", "-c", "trap '' TERM; sleep 1000 & sleep 1000; wait"],
      // The leader dies at once; a member takes half a second to clean up after SIGTERM.
      cleanup: ["/bin/bash", "-c", CLEANUP],
    });
    server = await Server.start(ws.env({
      ...registry,
      MAX_CONCURRENT_JOBS: "1",
      CANCEL_GRACE_SECONDS: String(GRACE_SECONDS),
    }));
    const base = server.base;
    const submit = async (type: string) => {
      const r = await http(base, "POST", `/train/${type}`, { retrain: true });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.data.job_id as string;
    };
    /** Waits until the job runs with its whole group up (bash + two sleeps by default). */
    const running = async (id: string, members = 3) => {
      const job = await waitJob(base, id, (d) => d.status === "running" && d.process);
      await pollUntil(
        `${members} processes`,
        () => groupMembers(job.process.pgid).length === members,
      );
      return job.process.pgid as number;
    };
    /** Cancels and checks the answer and the status right away. */
    const cancel = async (id: string, path = `/train/job/${id}`) => {
      const r = await http(base, "DELETE", path);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.status, "success");
      assert.equal(r.body.message, `Job ${id} cancelled successfully`);
      assert.equal(r.body.data.job_id, id);
      assert.equal(r.body.data.status, "cancelled");
      const now = await http(base, "GET", `/train/status/${id}`);
      assert.equal(now.body.data.status, "cancelled");
      assert.ok(now.body.data.cancelled_at);
    };
    const processExited = async (id: string) => {
      await waitJob(base, id, (d) => d.process && d.process.alive === false);
      const r = await http(base, "GET", `/train/job/${id}/events?type=process_exited,cancelled`);
      assert.equal(r.status, 200);
      const byType = Object.fromEntries(r.body.events.map((e: { type: string }) => [e.type, e]));
      assert.equal(byType.cancelled.data.was_running, true);
      return byType.process_exited.data;
    };
    const ids: Record<string, string> = {};

    await t.step("a waiting job is cancelled without starting", async () => {
      ids.spawner = await submit("spawner");
      await running(ids.spawner);
      ids.waiting = await submit("fake");
      const waiting = await http(base, "GET", `/train/status/${ids.waiting}`);
      assert.equal(waiting.body.data.status, "started");
      await cancel(ids.waiting);
    });

    await t.step("cancel mid-run: SIGTERM stops the group at once", async () => {
      const pgid = await running(ids.spawner);
      const asked = Date.now();
      await cancel(ids.spawner);
      await pollUntil("group gone", () => !groupAlive(pgid), (GRACE_SECONDS + 1) * 1000, 20);
      assert.ok(Date.now() - asked <= (GRACE_SECONDS + 1) * 1000);
      const exited = await processExited(ids.spawner);
      assert.equal(exited.stopped_with, "SIGTERM");
      assert.equal(exited.group_gone, true);
      assert.equal(exited.signal, "SIGTERM");
    });

    await t.step("the cancelled waiting job never ran; the queue moved on", async () => {
      const next = await waitTerminal(base, await submit("fake"));
      assert.equal(next.status, "completed");
      const cancelled = await http(base, "GET", `/train/status/${ids.waiting}`);
      assert.equal(cancelled.body.data.status, "cancelled");
      assert.equal(cancelled.body.data.process, null);
      assert.equal(cancelled.body.data.started_at, null);
      const started = await http(base, "GET", `/train/job/${ids.waiting}/events?type=started`);
      assert.deepEqual(started.body.events, []);
      ids.completed = next.job_id;
    });

    await t.step("a job ignoring SIGTERM is SIGKILLed after the grace period", async () => {
      ids.stubborn = await submit("stubborn");
      const pgid = await running(ids.stubborn);
      const asked = Date.now();
      await cancel(ids.stubborn, `/train/job/cancel/${ids.stubborn}`);
      await pollUntil("group gone", () => !groupAlive(pgid), (GRACE_SECONDS + 1) * 1000, 20);
      const took = Date.now() - asked;
      assert.ok(took >= GRACE_SECONDS * 1000 - 100, `gone after ${took} ms, before the grace`);
      const exited = await processExited(ids.stubborn);
      assert.equal(exited.stopped_with, "SIGKILL");
      assert.equal(exited.group_gone, true);
      assert.equal(exited.signal, "SIGKILL");
    });

    await t.step("the grace period is the whole group's, not just the leader's", async () => {
      ids.cleanup = await submit("cleanup");
      const pgid = await running(ids.cleanup, 4);
      await cancel(ids.cleanup);
      await pollUntil("group gone", () => !groupAlive(pgid), (GRACE_SECONDS + 1) * 1000, 20);
      const exited = await processExited(ids.cleanup);
      assert.equal(exited.stopped_with, "SIGTERM", "the cleaning member was SIGKILLed");
      assert.equal(exited.group_gone, true);
    });

    await t.step("cancelling a finished job answers 409; an unknown id 404", async () => {
      for (const id of [ids.stubborn, ids.spawner, ids.completed]) {
        const r = await http(base, "DELETE", `/train/job/${id}`);
        assert.equal(r.status, 409, JSON.stringify(r.body));
        assert.equal(r.body.status, "error");
        assert.match(r.body.message, /already (cancelled|completed)/);
      }
      const unknown = await http(base, "DELETE", `/train/job/${crypto.randomUUID()}`);
      assert.equal(unknown.status, 404);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
