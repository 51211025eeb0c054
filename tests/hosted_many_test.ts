/**
 * E2E, hosted mode at scale: two API instances on one database, two workers each talking to
 * a different instance, 500 submissions and 100 cancels spread over both. Every job runs at
 * most once per attempt, the log's seqs are unique, the projection equals a replay, and
 * nothing is left waiting, running or leased.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openDatabase } from "../db/client.ts";
import { logProblems, startHostedServer, WorkerProcess } from "./helpers/hosted.ts";
import { http, pollUntil, type Server, Workspace } from "./helpers/server.ts";

const JOBS = 500;
const CANCELS = 100;
/** Fast enough that 500 finish in seconds, slow enough that some cancels meet it running. */
const QUICK = ["/bin/sh", "-c", 'echo start; sleep 0.2; echo model > "$TRAIN_ARTIFACT_PATH"'];

/** Runs `fn` over `items`, `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  }));
}

Deno.test("hosted: two servers, two workers, 500 jobs and 100 cancels on one database", async (t) => {
  const ws = await Workspace.create();
  const servers: Server[] = [];
  const workers: WorkerProcess[] = [];
  try {
    const registry = await ws.registry({ quick: QUICK });
    for (let i = 0; i < 2; i++) {
      servers.push(await startHostedServer(ws, { ...registry, LEASE_SECONDS: "10" }));
    }
    for (const [i, s] of servers.entries()) {
      workers.push(
        await WorkerProcess.start(ws, s.base, {
          ...registry,
          WORKER_NAME: `node-${i}`,
          MAX_CONCURRENT_JOBS: "8",
        }),
      );
    }
    const ids: string[] = [];
    const cancelled = new Set<string>();

    await t.step(`${JOBS} submissions and ${CANCELS} cancels over both servers`, async () => {
      const cancelAt = new Set(Array.from({ length: CANCELS }, (_, i) => i * (JOBS / CANCELS) + 3));
      await pool(Array.from({ length: JOBS }, (_, i) => i), 16, async (i) => {
        const r = await http(servers[i % 2].base, "POST", "/train/quick", { retrain: true });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const id = r.body.data.job_id;
        ids.push(id);
        if (!cancelAt.has(i)) return;
        // Through the other instance: the cancel must reach a job it never saw.
        const c = await http(servers[(i + 1) % 2].base, "DELETE", `/train/job/cancel/${id}`);
        if (c.status === 200) cancelled.add(id);
        else assert.equal(c.status, 409, JSON.stringify(c.body));
      });
      assert.equal(ids.length, JOBS);
      assert.ok(cancelled.size > 0);
    });

    await t.step("nothing is stuck: every job ends, no lease is left", async () => {
      await pollUntil(
        "every job to end",
        async () => {
          const h = await http(servers[1].base, "GET", "/health");
          return h.body.queue_depth === 0 && h.body.running === 0;
        },
        180_000,
        250,
      );
      for (const s of servers) {
        const h = await http(s.base, "GET", "/health");
        assert.equal(h.body.queue_depth, 0);
        assert.equal(h.body.running, 0);
        for (const w of h.body.workers) assert.equal(w.running, 0, JSON.stringify(w));
      }
    });

    await t.step("each job ran at most once; cancels held; the log is sound", async () => {
      const database = await openDatabase(`file:${join(ws.dir, "t.db")}`);
      try {
        const twice = await database.client.execute(
          "SELECT job_id, count(*) AS n FROM events WHERE type = 'started' " +
            "GROUP BY job_id HAVING n > 1",
        );
        assert.deepEqual(twice.rows, [], "a job started twice");
        const rs = await database.client.execute(
          "SELECT job_id, status, process FROM jobs WHERE model_type = 'quick'",
        );
        assert.equal(rs.rows.length, JOBS);
        const statuses: Record<string, number> = {};
        for (const row of rs.rows) {
          const status = String(row.status);
          statuses[status] = (statuses[status] ?? 0) + 1;
          assert.ok(["completed", "cancelled"].includes(status), `${row.job_id} is ${status}`);
          if (cancelled.has(String(row.job_id))) assert.equal(status, "cancelled");
          const process = row.process === null ? null : JSON.parse(String(row.process));
          assert.ok(!process?.alive, `${row.job_id}: its process is still marked alive`);
        }
        assert.equal(statuses.cancelled, cancelled.size);
        const leases = await database.client.execute(
          "SELECT count(*) AS n FROM leases WHERE active = 1",
        );
        assert.equal(Number(leases.rows[0].n), 0);
        const byWorker = await database.client.execute(
          "SELECT json_extract(data, '$.worker_name') AS w, count(*) AS n FROM events " +
            "WHERE type = 'started' GROUP BY w",
        );
        console.log(
          `[hosted] ${JSON.stringify(statuses)}; started per worker: ${
            JSON.stringify(byWorker.rows.map((r) => [r.w, r.n]))
          }`,
        );
        assert.equal(byWorker.rows.length, 2, "both workers took jobs");
      } finally {
        database.close();
      }
      assert.deepEqual(await logProblems(join(ws.dir, "t.db")), []);
    });
  } finally {
    for (const w of workers) await w.kill("SIGKILL").catch(() => {});
    for (const s of servers) await s.kill();
    await ws.dispose();
  }
});
