/**
 * The `jobs` projection always equals a replay of the event log: random command sequences
 * (seeded) run through the real EventStore on a temp libSQL file, concurrently, then the
 * table is compared with `replay()` and rebuilt.
 */
import { FolderStore } from "../artifacts/folder_store.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Database } from "../db/client.ts";
import { listJobs } from "../db/queries.ts";
import { rebuildProjections, replay } from "../db/rebuild.ts";
import { rowToState } from "../db/rows.ts";
import { jobs } from "../db/schema.ts";
import { AppError } from "../errors.ts";
import type { Command, OutputEvent } from "../jobs/decide.ts";
import { cancelJob, type JobDeps, submitJob } from "../jobs/service.ts";
import type { JobState } from "../jobs/state.ts";
import { loadRegistry } from "../models/registry.ts";
import { openTestStore, recordTrainedModel, steppingClock } from "./helpers/app.ts";
import type { ArtifactRecord } from "../jobs/events.ts";
import { allModelRows } from "../projections/models.ts";
import { exitReport, startedData } from "./helpers/jobs.ts";

/** mulberry32: a small seeded PRNG, so a failure can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    chance: (p: number) => next() < p,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)],
  };
}
type Rng = ReturnType<typeof prng>;

type Action = () => Promise<unknown>;

function randomOutput(r: Rng, n: number): OutputEvent[] {
  return Array.from({ length: 1 + r.int(3) }, (_, i): OutputEvent => {
    switch (r.int(5)) {
      case 0:
        return {
          type: "log",
          data: { stream: r.pick(["stdout", "stderr"]), lines: [`l${n}.${i}`, "x"] },
        };
      case 1:
        return {
          type: "progress",
          data: {
            step: i,
            total: 5,
            message: r.chance(0.5) ? "m" : null,
            metrics: r.chance(0.5) ? { loss: i / 4 } : null,
          },
        };
      case 2:
        return { type: "metrics", data: { metrics: { [`m${r.int(3)}`]: r.int(100) / 100 } } };
      case 3:
        return { type: "warning", data: { message: `w${n}.${i}` } };
      default:
        return { type: "artifact", data: { path: `/models/a${n}.joblib` } };
    }
  });
}

/** A stored model's record; names repeat across jobs, so upserts replace rows. */
function randomRecord(r: Rng, n: number): ArtifactRecord {
  const name = `xgboost_model_2025-01-01_000000_${String(n % 97).padStart(8, "0")}.joblib`;
  return {
    name,
    size: r.int(1000),
    sha256: r.pick(["a", "b", "c"]).repeat(64),
    stored_in: "folder /models",
    location: `/models/${name}`,
    worker_id: r.pick(["w1", "w2"]),
    metadata: r.chance(0.5)
      ? { model_type: "xgboost", spec_fingerprint: "f".repeat(64), metrics: { acc: r.int(9) } }
      : null,
  };
}

function randomExit(r: Rng, n: number): Command {
  const stored = r.chance(0.5) ? { artifact_record: randomRecord(r, n) } : {};
  return {
    type: "exit",
    report: r.chance(0.75) ? exitReport(stored) : r.pick([
      exitReport({ artifact: null }),
      exitReport({ exit_code: 1, artifact: null, stderr_tail: "boom" }),
      exitReport({ exit_code: 2, script_failure: { reason: "dataset_invalid", message: "bad" } }),
      exitReport({ exit_code: null, signal: "SIGKILL" }),
      exitReport({
        exit_code: null,
        signal: "SIGTERM",
        stopped_for: "timeout",
        stopped_with: "SIGTERM",
        timeout_seconds: 5,
      }),
      exitReport({
        exit_code: null,
        signal: "SIGTERM",
        stopped_for: "shutdown",
        stopped_with: "SIGKILL",
        group_gone: false,
      }),
      exitReport({ artifact: null, artifact_refused: "the model file is a symlink" }),
      exitReport({ strays_killed: [4242, 4243] }),
    ]),
  };
}

/** The life of one leaf job as a list of actions, in order. */
function leafLife(r: Rng, deps: JobDeps, id: string, n: number): Action[] {
  const run = (c: Command): Action => () => deps.store.run((uow) => uow.execute(id, c));
  const life: Action[] = [];
  if (r.chance(0.05)) return life; // never claimed: stays waiting
  if (r.chance(0.1)) life.push(() => cancelJob(deps, id, "random cancel"));
  if (r.chance(0.08)) {
    life.push(run({ type: "fail", reason: "runtime_missing", error: "no runtime" }));
  }
  if (r.chance(0.05)) life.push(run(randomExit(r, n)));
  life.push(run({ type: "start", data: startedData({ pid: 1000 + n, pgid: 1000 + n }) }));
  for (let i = r.int(5); i > 0; i--) life.push(run({ type: "output", events: randomOutput(r, n) }));
  if (r.chance(0.12)) life.push(() => cancelJob(deps, id, "cancel while running"));
  if (r.chance(0.9)) life.push(run(randomExit(r, n)));
  if (r.chance(0.15)) {
    const name = randomRecord(r, n).name;
    life.push(run({ type: "delete_model", name, reason: "random delete" }));
  }
  if (r.chance(0.2)) life.push(run({ type: "output", events: randomOutput(r, n) }));
  if (r.chance(0.1)) life.push(() => cancelJob(deps, id, "cancel after the end"));
  if (r.chance(0.1)) life.push(run({ type: "strays_killed", pids: [9000 + n] }));
  return life;
}

const TYPES = ["xgboost", "random-forest", "neural-net"];

/** Submits `count` requests and then runs every job's life in random concurrent waves. */
async function randomHistory(deps: JobDeps, seed: number, count: number) {
  const r = prng(seed);
  const pending: Action[][] = [];
  const unexpected: unknown[] = [];
  const settle = async (actions: Action[]) => {
    for (const result of await Promise.allSettled(actions.map((a) => a()))) {
      if (result.status === "rejected" && !(result.reason instanceof AppError)) {
        unexpected.push(result.reason);
      }
    }
  };
  const submissions: Action[] = [];
  for (let n = 0; n < count; n++) {
    const all = r.chance(0.2);
    const key = r.chance(0.1) ? `key-${r.int(20)}` : undefined;
    const req = {
      model_type: all ? "all" : r.pick(TYPES),
      retrain: r.chance(0.7),
      use_cv: r.chance(0.5),
      hyperparameters: r.chance(0.3) ? { n_estimators: 1 + r.int(50) } : null,
    };
    submissions.push(async () => {
      const sub = await submitJob(deps, req, { idempotencyKey: key, typeStatus: 422 });
      if (sub.replayed) return;
      const leaves = sub.job.children ? sub.children : [sub.job];
      leaves.forEach((leaf, i) => pending.push(leafLife(r, deps, leaf.job_id, n * 10 + i)));
      if (sub.job.children && r.chance(0.2)) {
        pending.push([
          ...Array(r.int(4)).fill(async () => {}),
          () => cancelJob(deps, sub.job.job_id, "parent"),
        ]);
      }
    });
  }
  for (let i = 0; i < submissions.length; i += 25) await settle(submissions.slice(i, i + 25));
  while (pending.length) {
    const wave: Action[] = [];
    for (const life of pending) if (r.chance(0.3) && life.length) wave.push(life.shift()!);
    await settle(wave);
    for (let i = pending.length - 1; i >= 0; i--) if (!pending[i].length) pending.splice(i, 1);
  }
  assert.deepEqual(unexpected, [], "only typed (409/404/422) rejections are expected");
}

async function tableStates(database: Database): Promise<Map<string, JobState>> {
  const rows = await database.db.select().from(jobs);
  return new Map(rows.map((row) => [row.job_id, rowToState(row)]));
}

/** job_counts (rows at 0 left out) and a GROUP BY of the jobs table, to compare. */
async function countsAndGroupBy(database: Database) {
  const read = async (sql: string) =>
    (await database.client.execute(sql)).rows.map((r) => `${r.status}/${r.model_type}=${r.n}`);
  return {
    counts: await read(
      "SELECT status, model_type, n FROM job_counts WHERE n != 0 ORDER BY status, model_type",
    ),
    groupBy: await read(
      "SELECT status, model_type, count(*) AS n FROM jobs GROUP BY status, model_type ORDER BY status, model_type",
    ),
  };
}

/** The raw table, as stored (JSON columns as their text). */
async function rawTable(database: Database, table = "jobs", key = "job_id"): Promise<unknown[][]> {
  const res = await database.client.execute(`SELECT * FROM ${table} ORDER BY ${key}`);
  return res.rows.map((row) => Array.from(row));
}

for (const seed of [1, 2, 3]) {
  Deno.test(`projection equals replay of random event sequences (seed ${seed})`, async (t) => {
    await using s = await openTestStore(steppingClock());
    const modelsDir = join(s.dir, "models");
    await Deno.mkdir(modelsDir);
    // Reuse needs a recorded model trained with the default spec.
    await recordTrainedModel(
      s.store,
      modelsDir,
      "xgboost_model_2024-01-01_000000_00000000.joblib",
      {
        model_type: "xgboost",
        dataset: { builtin: "breast_cancer", task: "auto" },
      },
    );
    let ids = 0;
    const deps: JobDeps = {
      store: s.store,
      registry: await loadRegistry(),
      clock: s.store.clock,
      newId: () => `00000000-0000-4000-8000-${String(++ids).padStart(12, "0")}`,
      modelsDir,
      defaultTimeoutSeconds: 60,
      artifacts: new FolderStore(modelsDir),
      dataset: {},
    };
    await randomHistory(deps, seed, 300);
    await s.store.flush();

    const replayed = await replay(s.database);
    await t.step("the history is rich: every status, parents and reuses occur", () => {
      const states = [...replayed.values()];
      const statuses = new Set(states.map((j) => j.status));
      for (const status of ["started", "running", "completed", "failed", "cancelled"]) {
        assert.ok(statuses.has(status as never), `no ${status} job`);
      }
      assert.ok(states.filter((j) => j.children).length > 20);
      assert.ok(states.some((j) => j.children && j.status === "completed"));
      assert.ok(states.some((j) => j.children && j.status === "failed"));
      assert.ok(
        states.some((j) => j.model_path && j.exit_code === null && j.status === "completed"),
      );
      assert.ok(states.some((j) => j.status === "cancelled" && j.process && !j.started_at));
      assert.ok(states.length > 350, `only ${states.length} jobs`);
    });
    await t.step("models were recorded, replaced and deleted", async () => {
      const rows = await allModelRows(s.database.db);
      assert.ok(rows.length > 20, `only ${rows.length} models`);
      assert.ok(rows.some((m) => m.deleted_at), "no deleted model");
      assert.ok(rows.some((m) => !m.deleted_at), "no live model");
      assert.ok(rows.some((m) => m.fingerprint && m.metrics), "no model with metadata");
    });
    await t.step("every row of the jobs table equals the replay of its log", async () => {
      const table = await tableStates(s.database);
      assert.deepEqual([...table.keys()].sort(), [...replayed.keys()].sort());
      for (const [id, state] of replayed) assert.deepEqual(table.get(id), state, `job ${id}`);
    });
    await t.step("job_counts equals a GROUP BY of the jobs table", async () => {
      const { counts, groupBy } = await countsAndGroupBy(s.database);
      assert.ok(groupBy.length >= 10, `only ${groupBy.length} (status, model_type) pairs`);
      assert.deepEqual(counts, groupBy);
    });
    await t.step("listJobs' counts equal counting the table, for every filter", async () => {
      const all = [...replayed.values()];
      for (const status of [undefined, "started", "running", "completed", "failed"] as const) {
        for (const model_type of [undefined, "xgboost", "all"]) {
          const got = await listJobs(s.database.db, { status, model_type, limit: 1, offset: 0 });
          const want = all.filter((j) =>
            (!status || j.status === status) && (!model_type || j.model_type === model_type)
          );
          assert.equal(got.total, all.length);
          assert.equal(got.filtered, want.length, `${status} ${model_type}`);
        }
      }
      const parent = all.find((j) => j.children)!;
      const got = await listJobs(s.database.db, { parent_id: parent.job_id, limit: 1, offset: 0 });
      assert.equal(got.filtered, parent.children!.length);
    });
    await t.step("the store's in-memory active jobs equal the replay", () => {
      const active = s.store.activeJobs();
      const expected = [...replayed.values()].filter((j) =>
        !["completed", "failed", "cancelled"].includes(j.status) || j.process?.alive
      );
      assert.deepEqual(
        active.map((j) => j.job_id).sort(),
        expected.map((j) => j.job_id).sort(),
      );
      for (const j of active) assert.deepEqual(j, replayed.get(j.job_id));
    });
    await t.step("rebuilding leaves the models table identical", async () => {
      const before = await rawTable(s.database, "models", "name");
      await rebuildProjections(s.database);
      assert.deepEqual(await rawTable(s.database, "models", "name"), before);
      await s.database.client.execute("UPDATE models SET deleted_at = NULL, size = -1");
      await s.database.client.execute("DELETE FROM models WHERE rowid % 3 = 0");
      await rebuildProjections(s.database);
      assert.deepEqual(await rawTable(s.database, "models", "name"), before, "repaired");
    });
    await t.step("rebuilding leaves the table identical, and rebuilding twice too", async () => {
      const before = await rawTable(s.database);
      assert.equal(await rebuildProjections(s.database), before.length);
      assert.deepEqual(await rawTable(s.database), before);
      await rebuildProjections(s.database);
      assert.deepEqual(await rawTable(s.database), before);
      const { counts, groupBy } = await countsAndGroupBy(s.database);
      assert.deepEqual(counts, groupBy);
    });
    await t.step("a rebuild repairs a damaged projection", async () => {
      const before = await rawTable(s.database);
      await s.database.client.execute("UPDATE jobs SET status = 'running', log_lines = 0");
      await s.database.client.execute("DELETE FROM jobs WHERE rowid % 3 = 0");
      await s.database.client.execute("UPDATE job_counts SET n = n + 7 WHERE rowid % 2 = 0");
      assert.notDeepEqual(await rawTable(s.database), before);
      await rebuildProjections(s.database);
      assert.deepEqual(await rawTable(s.database), before);
      const { counts, groupBy } = await countsAndGroupBy(s.database);
      assert.deepEqual(counts, groupBy);
    });
  });
}
