/**
 * The prepared-statement reader (db/reader.ts) is a second connection: a read right after a
 * commit must see it (a 2xx means the job can be read), and the reader must refuse writes.
 */
import assert from "node:assert/strict";
import { getJob, listJobs } from "../db/queries.ts";
import { readRows } from "../db/reader.ts";
import { openTestStore } from "./helpers/app.ts";
import { cancel, submit } from "./helpers/jobs.ts";

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
