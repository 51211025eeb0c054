/**
 * Hosted mode's shared event store: two writers on ONE libSQL file (two connections in one
 * process, then two processes) submit, start, write output to and cancel the same jobs at
 * once, and submit the same idempotency keys. The log must come out whole: seqs unique and
 * gapless, each job's versions 1..n, every event sent there, one job per key, and the
 * projection equal to a replay.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { systemClock } from "../db/clock.ts";
import { type Database, openDatabase } from "../db/client.ts";
import { EventStore } from "../db/event_store.ts";
import { ROOT } from "./helpers/server.ts";
import { tempDir } from "./helpers/app.ts";
import { assertProjectionIsReplay } from "./helpers/hosted_app.ts";
import { jobId, runWriter, type WriterSummary } from "./helpers/shared_writer.ts";

const JOBS = 200;
const KEYS = 20;

/** Submit + start per job, one output per writer per job, half the jobs cancelled, one job per key. */
const EXPECTED_EVENTS = JOBS * 2 + JOBS * 2 + JOBS / 2 + KEYS;

async function rows(database: Database, sql: string) {
  return (await database.client.execute(sql)).rows;
}

async function checkLog(t: Deno.TestContext, database: Database, summaries: WriterSummary[]) {
  await t.step("no event is lost or doubled: the log holds what the writers sent", async () => {
    const sent = summaries.reduce((n, s) => n + s.events, 0);
    assert.equal(sent, EXPECTED_EVENTS);
    const [{ n }] = await rows(database, "SELECT count(*) AS n FROM events");
    assert.equal(Number(n), EXPECTED_EVENTS);
  });

  await t.step("seqs are unique and gapless", async () => {
    const seqs = (await rows(database, "SELECT seq FROM events ORDER BY seq")).map((r) =>
      Number(r.seq)
    );
    assert.deepEqual(seqs, Array.from({ length: EXPECTED_EVENTS }, (_, i) => i + 1));
  });

  await t.step("every job's versions are 1..n", async () => {
    const bad = await rows(
      database,
      `SELECT job_id, count(*) AS n, count(DISTINCT version) AS d, min(version) AS lo,
        max(version) AS hi FROM events GROUP BY job_id
        HAVING n != d OR lo != 1 OR hi != n`,
    );
    assert.deepEqual(bad.map((r) => r.job_id), []);
  });

  await t.step("each job has both writers' output, and its cancel if it got one", async () => {
    const byJob = new Map<string, string[]>();
    for (const r of await rows(database, "SELECT job_id, type FROM events ORDER BY seq")) {
      const id = String(r.job_id);
      byJob.set(id, [...byJob.get(id) ?? [], String(r.type)]);
    }
    for (let i = 0; i < JOBS; i++) {
      const types = byJob.get(jobId(i)) ?? [];
      assert.deepEqual(types.slice(0, 2), ["submitted", "started"], `job ${i}`);
      assert.equal(types.filter((x) => x === "log").length, 2, `job ${i}: ${types}`);
      assert.equal(types.filter((x) => x === "cancelled").length, i % 4 < 2 ? 1 : 0);
    }
  });

  await t.step("an idempotency key sent to both stores at once makes one job", async () => {
    const [a, b] = summaries.map((s) => s.keys);
    assert.equal(Object.keys(a).length, KEYS);
    assert.deepEqual(a, b);
    assert.equal(summaries.reduce((n, s) => n + s.replayed, 0), KEYS);
    const keyed = await rows(
      database,
      "SELECT idempotency_key, job_id FROM jobs WHERE idempotency_key LIKE 'shared-%'",
    );
    assert.deepEqual(
      Object.fromEntries(keyed.map((r) => [String(r.idempotency_key), String(r.job_id)])),
      a,
    );
  });

  await t.step("the projection equals a replay of the log", async () => {
    await assertProjectionIsReplay(database);
  });
}

Deno.test("two shared stores on one file, two connections in one process", async (t) => {
  await using dir = await tempDir();
  const url = `file:${join(dir.path, "shared.db")}`;
  const databases = [await openDatabase(url), await openDatabase(url)];
  try {
    const stores = await Promise.all(
      databases.map((d) => EventStore.open(d, systemClock, { shared: true })),
    );
    const modelsDir = join(dir.path, "models");
    const summaries = await Promise.all(
      stores.map((store, k) => runWriter(store, { k, jobs: JOBS, keys: KEYS, modelsDir })),
    );
    await checkLog(t, databases[0], summaries);
  } finally {
    for (const d of databases) d.close();
  }
});

Deno.test("two shared stores on one file, two processes", async (t) => {
  await using dir = await tempDir();
  const url = `file:${join(dir.path, "shared.db")}`;
  // The schema first, so the two processes do not race to migrate an empty file.
  (await openDatabase(url)).close();
  const writers = [0, 1].map((k) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--frozen",
        "tests/helpers/shared_writer.ts",
        url,
        String(k),
        String(JOBS),
        String(KEYS),
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output()
  );
  const outputs = await Promise.all(writers);
  const text = new TextDecoder();
  const summaries = outputs.map((o, k) => {
    assert.ok(o.success, `writer ${k} failed:\n${text.decode(o.stderr)}`);
    return JSON.parse(text.decode(o.stdout).trim().split("\n").at(-1)!) as WriterSummary;
  });
  const database = await openDatabase(url);
  try {
    await checkLog(t, database, summaries);
  } finally {
    database.close();
  }
});
