/**
 * Job-list answers kept in memory (routes/list_cache.ts), on a real libSQL file and the real
 * event store: a kept page is served until any commit, equal queries share one entry, a read
 * that a commit overtook is not kept, the byte bound holds, STATUS_CACHE_MB=0 turns it off,
 * and a shared store (hosted mode) gets no cache.
 */
import assert from "node:assert/strict";
import { ListCache } from "../routes/list_cache.ts";
import { buildApp, finishedJob, openTestStore, type TestApp } from "./helpers/app.ts";

/** Changes the projection behind the store's back: only a fresh read can show it. */
async function rewriteModelType(app: TestApp, jobId: string, modelType: string) {
  await app.database.client.execute({
    sql: "UPDATE jobs SET model_type = ? WHERE job_id = ?",
    args: [modelType, jobId],
  });
}

const PAGE = "/train/jobs?limit=5&status=completed";

Deno.test("a list page is kept until the next commit", async (t) => {
  await using app = await buildApp({ registry: { xgboost: { command: ["true"] } } });
  const jobId = await finishedJob(app, "xgboost_model_2025-06-01_110001_00000001.joblib");
  const first = await app.request("GET", PAGE);
  assert.equal(first.status, 200);
  assert.equal(first.headers.get("content-type"), "application/json");
  assert.deepEqual(first.body.jobs.map((j: { job_id: string }) => j.job_id), [jobId]);
  assert.equal(first.body.total_count, 1);

  await t.step("served from memory while nothing is committed", async () => {
    await rewriteModelType(app, jobId, "behind-the-store");
    const kept = await app.request("GET", PAGE);
    assert.deepEqual(kept.body, first.body);
    const same = await app.request("GET", "/train/jobs?status=completed&limit=05");
    assert.deepEqual(same.body, first.body, "an equal query is the same page");
    const other = await app.request("GET", "/train/jobs?limit=6&status=completed");
    assert.equal(other.body.jobs[0].model_type, "behind-the-store", "another page is read");
  });

  await t.step("any commit drops every page", async () => {
    const sub = await app.request("POST", "/train/xgboost", { json: {} });
    assert.equal(sub.status, 200);
    const after = await app.request("GET", PAGE);
    assert.equal(after.body.jobs[0].model_type, "behind-the-store");
    assert.equal(after.body.total_count, 2, "the new job is counted");
  });
});

Deno.test("the cache itself: overtaken reads, the byte bound", async (t) => {
  await using app = await buildApp();
  const cache = ListCache.forStore(app.store, 1024 * 1024)!;

  await t.step("a read overtaken by a commit is not kept", async () => {
    const ticket = cache.ticket();
    await finishedJob(app, "xgboost_model_2025-06-01_110002_00000002.joblib");
    cache.set(ticket, "page", '{"stale":1}');
    assert.equal(cache.get("page"), undefined);
    cache.set(cache.ticket(), "page", '{"fresh":1}');
    assert.equal(cache.get("page"), '{"fresh":1}');
  });

  await t.step("the oldest pages go past the bound; one over a sixteenth is not kept", () => {
    const big = "x".repeat(32 * 1024);
    for (let i = 0; i < 64; i++) cache.set(cache.ticket(), `page-${i}`, big);
    assert.equal(cache.size, 32);
    assert.equal(cache.get("page-0"), undefined);
    assert.equal(cache.get("page-63"), big);
    cache.set(cache.ticket(), "huge", "x".repeat(65 * 1024));
    assert.equal(cache.get("huge"), undefined);
  });
});

Deno.test("STATUS_CACHE_MB=0: every list is read", async () => {
  await using app = await buildApp({ statusCacheBytes: 0 });
  const jobId = await finishedJob(app, "xgboost_model_2025-06-01_110003_00000003.joblib");
  assert.equal((await app.request("GET", PAGE)).status, 200);
  await rewriteModelType(app, jobId, "read-afresh");
  assert.equal((await app.request("GET", PAGE)).body.jobs[0].model_type, "read-afresh");
});

Deno.test("a shared store (hosted mode) gets no list cache", async () => {
  await using shared = await openTestStore(undefined, { shared: true });
  assert.equal(ListCache.forStore(shared.store, 1024 * 1024), null);
});
