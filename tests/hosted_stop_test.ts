/**
 * E2E, hosted mode: stopping remote jobs. A cancel reaches the worker through its heartbeat
 * and the process tree goes; a worker frozen past its lease (SIGSTOP) loses the job and,
 * once it runs again, stops the process without a single stale event getting in; a worker
 * given SIGTERM stops its jobs and records them as interrupted, or, with attempts left, as
 * waiting for the next worker.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startHostedServer, WorkerProcess } from "./helpers/hosted.ts";
import {
  groupAlive,
  http,
  type Json,
  pollUntil,
  processesWithEnv,
  ROOT,
  type Server,
  waitJob,
  Workspace,
} from "./helpers/server.ts";

const GRACE_SECONDS = 1;

async function submit(base: string, hp: Record<string, unknown>, extra = {}): Promise<string> {
  const r = await http(base, "POST", "/train/fake", {
    retrain: true,
    hyperparameters: hp,
    ...extra,
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data.job_id;
}

async function events(base: string, id: string): Promise<Json[]> {
  const r = await http(base, "GET", `/train/job/${id}/events`);
  assert.equal(r.status, 200);
  return r.body.events;
}

function running(d: Json): boolean {
  return d.status === "running" && d.process?.alive === true && d.progress !== null;
}

function treeGone(pgid: number, jobId: string): boolean {
  return !groupAlive(pgid) && processesWithEnv("TRAIN_JOB_ID", jobId).length === 0;
}

Deno.test("hosted: cancel, a frozen worker, and a worker's graceful stop", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  const workers: WorkerProcess[] = [];
  try {
    const registry = await ws.registry({ fake: await ws.fakeTrainer() });
    server = await startHostedServer(ws, { ...registry, LEASE_SECONDS: "3" });
    const base = server.base;
    const start = async (name: string) => {
      const w = await WorkerProcess.start(ws, base, {
        ...registry,
        WORKER_NAME: name,
        CANCEL_GRACE_SECONDS: String(GRACE_SECONDS),
      });
      workers.push(w);
      return w;
    };
    let worker = await start("box-a");

    await t.step("a cancel stops the remote process tree within the grace period", async () => {
      const id = await submit(base, { sleep: 60, grandchild: true, progress: 1 });
      const d = await waitJob(base, id, running);
      const cancel = await http(base, "DELETE", `/train/job/cancel/${id}`);
      assert.equal(cancel.status, 200, JSON.stringify(cancel.body));
      const asked = Date.now();
      await pollUntil("the process tree to go", () => treeGone(d.process.pgid, id), 20_000, 20);
      const took = Date.now() - asked;
      // Up to a heartbeat (1 s) for the cancel to reach the worker, then the grace period.
      assert.ok(took < (GRACE_SECONDS + 2) * 1000, `the tree went after ${took} ms`);
      const end = await waitJob(base, id, (d) => d.process?.alive === false);
      assert.equal(end.status, "cancelled");
      assert.equal(end.process.group_gone, true);
    });

    await t.step("a worker frozen past its lease loses the job, then stops it", async () => {
      const id = await submit(base, { sleep: 60, progress: 1 });
      const d = await waitJob(base, id, running);
      worker.signal("SIGSTOP");
      const failed = await waitJob(base, id, (d) => d.status === "failed", 20_000);
      assert.equal(failed.failure_reason, "worker_lost");
      assert.match(failed.error, /box-a/);
      const before = await events(base, id);
      assert.equal(before.at(-1).type, "failed");
      assert.equal(before.at(-1).data.evidence.worker_name, "box-a");
      worker.signal("SIGCONT");
      // Its next heartbeat or report learns the lease is gone: it stops the process at once.
      await pollUntil(
        "the stale worker to stop the process",
        () => treeGone(d.process.pgid, id),
        15_000,
      );
      await new Promise((r) => setTimeout(r, 2000));
      assert.deepEqual(await events(base, id), before, "an event from the stale worker got in");
      assert.equal((await http(base, "GET", `/train/status/${id}`)).body.data.status, "failed");
    });

    await t.step("SIGTERM: the worker stops its job, records it interrupted, exits 0", async () => {
      // The frozen one may still be reporting its lost job; a fresh worker takes the next.
      await worker.kill("SIGKILL");
      worker = await start("box-b");
      const id = await submit(base, { sleep: 60, progress: 1 });
      const d = await waitJob(base, id, running);
      const status = await worker.kill("SIGTERM");
      assert.equal(status.code, 0, worker.output);
      const end = await waitJob(base, id, (d) => d.status === "failed", 10_000);
      assert.equal(end.failure_reason, "interrupted");
      assert.ok(treeGone(d.process.pgid, id));
    });

    await t.step(
      "SIGTERM with attempts left: the job waits, and the next worker runs it",
      async () => {
        worker = await start("box-c");
        const id = await submit(base, { sleep: 60, progress: 1 }, { max_attempts: 2 });
        const d = await waitJob(base, id, running);
        // A user following it with the CLI (plain lines: not a terminal).
        const watching = new Deno.Command(join(ROOT, "trainer"), {
          args: ["watch", id],
          env: { TRAINER_URL: base, NO_COLOR: "1" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const watched = watching.output();
        const status = await worker.kill("SIGTERM");
        assert.equal(status.code, 0, worker.output);
        assert.ok(treeGone(d.process.pgid, id));
        const waiting = await waitJob(base, id, (d) => d.process === null, 10_000);
        assert.equal(waiting.status, "started");
        assert.equal(waiting.attempt, 1);
        assert.match(
          waiting.message,
          /^Waiting for a worker: attempt 1 of 2 was stopped when worker box-c shut down; 0 jobs ahead/,
        );
        const log = await events(base, id);
        assert.deepEqual(log.slice(-2).map((e) => e.type), ["process_exited", "requeued"]);
        assert.equal(log.at(-1).data.reason, "worker_stopped");
        // Its open claim ended before the stop requeued the job: it holds no lease on it.
        const health = await http(base, "GET", "/health");
        const gone = health.body.workers.find((w: Json) => w.name === "box-c");
        assert.equal(gone.running, 0, JSON.stringify(gone));
        // It said it stopped: not live at once, not a lease later.
        assert.equal(gone.alive, false, JSON.stringify(gone));
        assert.ok(gone.stopped_at, JSON.stringify(gone));

        // box-c said it stopped; box-a (killed) is live until its heartbeat is a lease old.
        const alone = await waitJob(base, id, (d) => /no live worker/.test(d.message), 10_000);
        assert.match(alone.message, /; no live worker offers model type fake \(GET \/health/);

        worker = await start("box-d");
        const again = await waitJob(base, id, running);
        assert.equal(again.attempt, 2);
        assert.equal(again.worker.name, "box-d");
        watching.kill("SIGTERM");
        const lines = new TextDecoder().decode((await watched).stdout);
        assert.match(
          lines,
          /requeued: attempt 1 ended \(worker box-c shut down\); waiting for a worker\n.*started/,
        );
      },
    );
  } finally {
    for (const w of workers) await w.kill("SIGKILL").catch(() => {});
    await server?.kill();
    await ws.dispose();
  }
});
