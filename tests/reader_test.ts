/**
 * The prepared-statement reader (db/reader.ts) is a second connection: a read right after a
 * commit must see it (a 2xx means the job can be read), and the reader must refuse writes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import type { Db } from "../db/client.ts";
import { getJob, getJobs, listJobs } from "../db/queries.ts";
import { getJobWithTail } from "../db/log_tail.ts";
import { readRows } from "../db/reader.ts";
import * as schema from "../db/schema.ts";
import { openTestStore } from "./helpers/app.ts";
import { cancel, logLines, start, submit } from "./helpers/jobs.ts";

const JOB = "00000000-0000-4000-8000-0000000000c1";

Deno.test("the reader sees every commit at once and cannot write", async (t) => {
  await using s = await openTestStore();
  const db = s.database.db;
  await t.step("a job is readable as soon as its submission commits", async () => {
    assert.equal(await getJob(db, JOB), undefined);
    await s.store.run((uow) => uow.execute(JOB, submit()));
    assert.equal((await getJob(db, JOB))?.status, "started");
    const list = await listJobs(db, { status: "started", limit: 5, offset: 0 });
    assert.deepEqual([list.total, list.filtered, list.jobs[0].job_id], [1, 1, JOB]);
  });
  await t.step("a later change is seen by the same cached statements", async () => {
    await s.store.run((uow) => uow.execute(JOB, cancel));
    assert.equal((await getJob(db, JOB))?.status, "cancelled");
    const list = await listJobs(db, { status: "started", limit: 5, offset: 0 });
    assert.deepEqual([list.total, list.filtered, list.jobs.length], [1, 0, 0]);
  });
  await t.step("the reader refuses a write", async () => {
    await assert.rejects(
      readRows(s.database.client, "DELETE FROM jobs RETURNING job_id", []),
      /readonly/,
    );
    assert.ok(await getJob(db, JOB));
  });
});

Deno.test("a job reads the same through the reader and through the client alone", async () => {
  // A remote database has no reader: its reads take the client's rows by position.
  await using s = await openTestStore();
  const other = "00000000-0000-4000-8000-0000000000c2";
  await s.store.run((uow) => uow.execute(JOB, submit({ hyperparameters: { depth: 3 } })));
  await s.store.run((uow) => uow.execute(other, submit({ use_cv: false })));
  await s.store.run((uow) => uow.execute(JOB, start()));
  await s.store.run((uow) => uow.execute(JOB, logLines("one", "two ü")));
  await s.store.run((uow) => uow.execute(JOB, logLines("three")));
  // An old job's log event: its lines in the JSON data, no text column (before log_text).
  const old = "00000000-0000-4000-8000-0000000000c3";
  await s.store.run((uow) => uow.execute(old, submit()));
  const client = createClient({ url: `file:${join(s.dir, "trainer.db")}` });
  await client.execute({
    sql: `INSERT INTO events (seq, job_id, version, type, data, at, log_text)
      SELECT max(seq) + 1, ?, 2, 'log', ?, '2025-01-01T00:00:00.000Z', NULL FROM events`,
    args: [old, JSON.stringify({ stream: "stdout", lines: ["old a", "null", "old b"] })],
  });
  try {
    const plain = drizzle(client, { schema }) as unknown as Db;
    const limits = { lines: 2, bytes: 1000 };
    for (const db of [s.database.db, plain]) {
      const job = await getJob(db, JOB);
      assert.equal(job?.status, "running");
      assert.deepEqual(job?.hyperparameters, { depth: 3 });
      assert.equal(job?.retrain, true);
      assert.equal(job?.log_lines, 3);
      assert.ok(job?.process === null || typeof job?.process === "object");
      const tail = await getJobWithTail(db, JOB, limits);
      assert.deepEqual(tail?.logs, { lines: ["two ü", "three"], truncated: false });
      assert.deepEqual(tail?.job, job);
      assert.deepEqual((await getJobs(db, [other, JOB])).map((j) => [j.job_id, j.use_cv]), [
        [other, false],
        [JOB, true],
      ]);
      const list = await listJobs(db, { limit: 5, offset: 0 });
      assert.deepEqual(list.jobs.map((j) => j.job_id), [old, other, JOB]);
      assert.deepEqual(list.jobs[2], job);
      assert.equal(
        await getJobWithTail(db, "00000000-0000-4000-8000-0000000000ff", limits),
        undefined,
      );
      assert.deepEqual((await getJobWithTail(db, other, limits))?.logs, {
        lines: [],
        truncated: false,
      });
      assert.deepEqual((await getJobWithTail(db, old, { lines: 5, bytes: 1000 }))?.logs, {
        lines: ["old a", "null", "old b"],
        truncated: false,
      });
    }
    assert.deepEqual(await getJob(plain, JOB), await getJob(s.database.db, JOB));
  } finally {
    client.close();
  }
});
