/** EventStore on a temp libSQL file: group commit, failure isolation, append-only log. */
import assert from "node:assert/strict";
import { openDatabase } from "../db/client.ts";
import { EventStore, unfinishedJobs } from "../db/event_store.ts";
import { ConflictError } from "../errors.ts";
import type { Command } from "../jobs/decide.ts";
import type { StoredEvent } from "../jobs/events.ts";
import { openTestStore, type TestStore } from "./helpers/app.ts";
import { exitReport, logLines, start, submit } from "./helpers/jobs.ts";

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

function exec(s: TestStore, jobId: string, command: Command) {
  return s.store.run((uow) => uow.execute(jobId, command));
}

/** Every event in the log, in seq order, straight from the database. */
async function logRows(s: TestStore) {
  const res = await s.database.client.execute(
    "SELECT seq, job_id, version, type FROM events ORDER BY seq",
  );
  return res.rows.map((r) => ({
    seq: Number(r.seq),
    job_id: String(r.job_id),
    version: Number(r.version),
    type: String(r.type),
  }));
}

/** A rejection's message, with its cause's. */
function errorText(result: PromiseSettledResult<unknown>): string {
  const e = result.status === "rejected" ? result.reason : null;
  return `${e}; cause: ${e?.cause}`;
}

/** Seqs are 1..n without gaps; each job's versions are 1..k without gaps. */
function assertContiguous(rows: { seq: number; job_id: string; version: number }[]) {
  assert.deepEqual(rows.map((r) => r.seq), rows.map((_, i) => i + 1));
  const versions = new Map<string, number>();
  for (const r of rows) {
    assert.equal(
      r.version,
      (versions.get(r.job_id) ?? 0) + 1,
      `version of ${r.job_id} at ${r.seq}`,
    );
    versions.set(r.job_id, r.version);
  }
}

Deno.test("the database keeps events append-only", async (t) => {
  await using s = await openTestStore();
  await exec(s, id(1), submit());
  await t.step("UPDATE fails with the trigger's message", async () => {
    await assert.rejects(
      s.database.client.execute("UPDATE events SET type = 'completed'"),
      /events are append-only: UPDATE is not allowed/,
    );
  });
  await t.step("DELETE fails with the trigger's message", async () => {
    await assert.rejects(
      s.database.client.execute("DELETE FROM events"),
      /events are append-only: DELETE is not allowed/,
    );
  });
  await t.step("the event is unchanged", async () => {
    assert.deepEqual((await logRows(s)).map((r) => r.type), ["submitted"]);
  });
});

Deno.test("group commit", async (t) => {
  await using s = await openTestStore();
  const commits: StoredEvent[][] = [];
  s.store.onCommit((events) => commits.push(events));
  const jobs = 300;
  await t.step("many concurrent units all resolve after their events are stored", async () => {
    const units = [];
    for (let n = 1; n <= jobs; n++) {
      units.push(exec(s, id(n), submit()));
      units.push(s.store.run(async (uow) => {
        await uow.execute(id(n), start({ pid: n }));
        await uow.execute(id(n), logLines(`line ${n}`));
        return n;
      }));
    }
    const results = await Promise.all(units);
    assert.equal(results.length, 2 * jobs);
    assert.ok(commits.length < jobs / 4, `${commits.length} commits for ${2 * jobs} units`);
  });
  await t.step("seqs are contiguous and versions per job too", async () => {
    const rows = await logRows(s);
    assert.equal(rows.length, 3 * jobs);
    assertContiguous(rows);
    assert.deepEqual(commits.flat().map((e) => e.seq), rows.map((r) => r.seq));
  });
  await t.step("all of it is durable: a second connection sees every job running", async () => {
    const other = await openDatabase(`file:${s.dir}/trainer.db`);
    try {
      const res = await other.client.execute(
        "SELECT status, count(*) AS n FROM jobs GROUP BY status",
      );
      assert.deepEqual(res.rows.map((r) => [r.status, Number(r.n)]), [["running", jobs]]);
    } finally {
      other.close();
    }
  });
});

Deno.test("a unit that throws is rejected alone; its batch commits", async () => {
  await using s = await openTestStore();
  await exec(s, id(1), submit());
  const units = [
    exec(s, id(2), submit()),
    s.store.run(async (uow) => {
      await uow.execute(id(3), submit());
      throw new Error("unit failed half way");
    }),
    exec(s, id(1), submit()), // decide refuses: the job exists
    exec(s, id(4), submit()),
    // A unit that recovers from one bad command keeps the events of the others.
    s.store.run(async (uow) => {
      const bad = {
        type: "output",
        events: [
          { type: "log", data: { stream: "stdout", lines: ["ok"] } },
          { type: "log", data: { stream: "nowhere", lines: [] } },
        ],
      } as unknown as Command;
      await uow.execute(id(1), start());
      await assert.rejects(uow.execute(id(1), bad));
      await uow.execute(id(1), logLines("after"));
    }),
  ];
  const results = await Promise.allSettled(units);
  assert.deepEqual(results.map((r) => r.status), [
    "fulfilled",
    "rejected",
    "rejected",
    "fulfilled",
    "fulfilled",
  ]);
  assert.match(errorText(results[1]), /unit failed half way/);
  assert.ok((results[2] as PromiseRejectedResult).reason instanceof ConflictError);
  const rows = await logRows(s);
  assertContiguous(rows);
  assert.deepEqual(rows.map((r) => `${r.job_id.slice(-1)}:${r.type}`), [
    "1:submitted",
    "2:submitted",
    "4:submitted",
    "1:started",
    "1:log",
  ]);
  assert.equal(await s.store.load(id(3)), undefined);
  assert.equal((await s.store.load(id(1)))?.log_lines, 1);
});

Deno.test("a failing write batch is retried unit by unit", async () => {
  await using s = await openTestStore();
  await exec(s, id(1), submit({ idempotency_key: "k" }));
  const commits: string[][] = [];
  s.store.onCommit((events) => commits.push(events.map((e) => e.job_id.slice(-1))));
  // The second unit passes decide but breaks the unique idempotency index on write.
  const results = await Promise.allSettled([
    exec(s, id(2), submit()),
    exec(s, id(3), submit({ idempotency_key: "k" })),
    exec(s, id(4), submit()),
  ]);
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.match(errorText(results[1]), /UNIQUE constraint failed: jobs.idempotency_key/);
  assert.deepEqual(commits, [["2"], ["4"]]);
  const rows = await logRows(s);
  assertContiguous(rows);
  assert.deepEqual(rows.map((r) => r.job_id.slice(-1)), ["1", "2", "4"]);
  assert.equal(await s.store.load(id(3)), undefined);
  // The store goes on working with the seqs it gave back.
  await exec(s, id(3), submit());
  assertContiguous(await logRows(s));
});

Deno.test("a listener that throws does not stop the writer", async () => {
  await using s = await openTestStore();
  s.store.onCommit(() => {
    throw new Error("listener failed");
  });
  const error = console.error;
  const logged: unknown[] = [];
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    await exec(s, id(1), submit());
    await exec(s, id(2), submit());
  } finally {
    console.error = error;
  }
  assert.equal(logged.length, 2);
  assert.equal((await logRows(s)).length, 2);
});

Deno.test("a database error while deriving a parent rejects the unit", async () => {
  await using s = await openTestStore();
  {
    // A cancelled parent leaves memory; its child's process still runs there.
    await s.store.run(async (uow) => {
      await uow.execute(id(10), submit({ model_type: "all", children: [id(11)] }));
      await uow.execute(id(11), submit({ parent_id: id(10) }));
    });
    await exec(s, id(11), start());
    await s.store.run(async (uow) => {
      await uow.execute(id(10), { type: "cancel", reason: "t" });
      await uow.execute(id(11), { type: "cancel", reason: "t" });
    });
    s.database.client.close();
    await assert.rejects(exec(s, id(11), { type: "exit", report: exitReport() }));
  }
});

Deno.test("reopening continues the log and reloads the jobs that can still change", async () => {
  await using s = await openTestStore();
  await exec(s, id(1), submit());
  await exec(s, id(2), submit());
  await exec(s, id(2), start());
  await exec(s, id(3), submit());
  await exec(s, id(3), { type: "cancel", reason: "t" });
  await s.store.flush();
  const reopened = await EventStore.open(s.database, s.store.clock);
  assert.deepEqual(reopened.activeJobs().map((j) => [j.job_id, j.status]).sort(), [
    [id(1), "started"],
    [id(2), "running"],
  ]);
  await reopened.run((uow) => uow.execute(id(2), { type: "exit", report: exitReport() }));
  const rows = await logRows(s);
  assertContiguous(rows);
  assert.equal(rows.at(-1)?.type, "process_exited");
  assert.equal((await reopened.load(id(2)))?.status, "completed");
  assert.equal((await reopened.load(id(3)))?.status, "cancelled");
});

Deno.test("the store's start reads only unfinished jobs, through indexes", async () => {
  await using t = await openTestStore();
  const query = unfinishedJobs(t.database.db).toSQL();
  const plan = await t.database.client.execute({
    sql: `EXPLAIN QUERY PLAN ${query.sql}`,
    args: query.params as string[],
  });
  const steps = plan.rows.map((r) => String(r.detail));
  assert.ok(steps.every((s) => !s.startsWith("SCAN")), steps.join("; "));
  assert.ok(steps.some((s) => s.includes("jobs_alive")), steps.join("; "));
});
