/**
 * Finished jobs' status answers kept in memory (routes/status_cache.ts), on a real libSQL
 * file and the real event store: kept answers are served, every commit to the job or to one
 * of its children drops them, unfinished jobs are always read, a read that a commit overtook is
 * not kept, the byte bound holds, and a shared store (hosted mode) gets no cache.
 */
import assert from "node:assert/strict";
import { StatusCache } from "../routes/status_cache.ts";
import { buildApp, finishedJob, openTestStore, type TestApp } from "./helpers/app.ts";

/** Changes the projection behind the store's back: only a fresh read can show it. */
async function rewriteMessage(app: TestApp, jobId: string, message: string) {
  await app.database.client.execute({
    sql: "UPDATE jobs SET message = ? WHERE job_id = ?",
    args: [message, jobId],
  });
}

Deno.test("a finished job's answer is kept until a commit to the job", async () => {
  await using app = await buildApp();
  const file = "xgboost_model_2025-06-01_100001_00000001.joblib";
  const jobId = await finishedJob(app, file);
  const first = await app.request("GET", `/train/status/${jobId}`);
  assert.equal(first.status, 200);
  assert.equal(first.headers.get("content-type"), "application/json");
  assert.equal(first.body.data.status, "completed");

  await rewriteMessage(app, jobId, "changed behind the store");
  const kept = await app.request("GET", `/train/status/${jobId}`);
  assert.deepEqual(kept.body, first.body, "the kept answer is served");

  assert.equal((await app.request("DELETE", `/train/models/${file}`)).status, 200);
  const after = await app.request("GET", `/train/status/${jobId}`);
  const events = await app.request("GET", `/train/job/${jobId}/events?type=model_deleted`);
  // Read again after the commit: the row's own message, with the deletion the commit added.
  assert.equal(
    after.body.data.message,
    `changed behind the store; its model ${file} was deleted at ${
      events.body.events[0].at
    } (deleted by request)`,
  );
  assert.equal(after.body.data.updated_at, events.body.events[0].at);
});

Deno.test("an unfinished job is read every time", async () => {
  await using app = await buildApp({ registry: { xgboost: { command: ["true"] } } });
  const sub = await app.request("POST", "/train/xgboost", { json: {} });
  assert.equal(sub.status, 200);
  const jobId = sub.body.data.job_id;
  assert.equal((await app.request("GET", `/train/status/${jobId}`)).body.data.status, "started");
  await rewriteMessage(app, jobId, "read afresh");
  const again = await app.request("GET", `/train/status/${jobId}`);
  assert.equal(again.body.data.status, "started");
  assert.match(again.body.data.message, /waiting for a free slot/);
  assert.equal(again.body.data.queue_position, 1);
});

Deno.test("the cache itself: children, overtaken reads, the byte bound", async (t) => {
  await using app = await buildApp();
  const cache = StatusCache.forStore(app.store, 8 * 1024 * 1024)!;
  const parent = await finishedJob(app, "xgboost_model_2025-06-01_100002_00000002.joblib");
  const childFile = "xgboost_model_2025-06-01_100003_00000003.joblib";
  const child = await finishedJob(app, childFile);

  await t.step("a commit to a child drops its parent's answer", async () => {
    cache.set(cache.ticket(), parent, '{"parent":1}', [child]);
    cache.set(cache.ticket(), child, '{"child":1}', []);
    assert.equal(cache.get(parent), '{"parent":1}');
    assert.equal((await app.request("DELETE", `/train/models/${childFile}`)).status, 200);
    assert.equal(cache.get(child), undefined);
    assert.equal(cache.get(parent), undefined);
  });

  await t.step("a read overtaken by a commit is not kept", async () => {
    const ticket = cache.ticket();
    await finishedJob(app, "xgboost_model_2025-06-01_100004_00000004.joblib");
    cache.set(ticket, parent, '{"stale":1}', []);
    assert.equal(cache.get(parent), undefined);
  });

  await t.step("the oldest answers go past 8 MiB", () => {
    const big = "x".repeat(64 * 1024);
    for (let i = 0; i < 200; i++) cache.set(cache.ticket(), `job-${i}`, big, []);
    assert.equal(cache.size, 128);
    assert.equal(cache.get("job-0"), undefined);
    assert.equal(cache.get("job-199"), big);
    cache.set(cache.ticket(), "huge", "x".repeat(256 * 1024), []);
    assert.equal(cache.get("huge"), undefined, "one answer over 128 KiB is not kept");
  });
});

Deno.test("STATUS_CACHE_MB=0: every answer is read", async () => {
  await using app = await buildApp({ statusCacheBytes: 0 });
  const jobId = await finishedJob(app, "xgboost_model_2025-06-01_100005_00000005.joblib");
  assert.equal((await app.request("GET", `/train/status/${jobId}`)).status, 200);
  await rewriteMessage(app, jobId, "read afresh");
  const again = await app.request("GET", `/train/status/${jobId}`);
  assert.equal(again.body.data.message, "read afresh");
});

Deno.test("a shared store (hosted mode) gets no cache", async () => {
  await using shared = await openTestStore(undefined, { shared: true });
  assert.equal(StatusCache.forStore(shared.store, 8 * 1024 * 1024), null);
});
