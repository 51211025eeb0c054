/**
 * Hosted-mode test helpers: the app built with `hosted` on a shared event store over a temp
 * libSQL file, a clock the test moves by hand (lease expiry without sleeping), a small worker
 * client for the `/worker/*` routes, and the projection-equals-replay check.
 */
import assert from "node:assert/strict";
import type { Hono } from "hono";
import { createApp } from "../../app.ts";
import type { Clock } from "../../db/clock.ts";
import type { Database } from "../../db/client.ts";
import type { EventStore } from "../../db/event_store.ts";
import { decodeLogLines } from "../../db/event_rows.ts";
import { logDirOf } from "../../db/log_files.ts";
import { replay } from "../../db/rebuild.ts";
import { rowToState } from "../../db/rows.ts";
import { jobs as jobsTable } from "../../db/schema.ts";
import { type JobDeps, submitJob } from "../../jobs/service.ts";
import type { JobState } from "../../jobs/state.ts";
import { RuntimeChecker } from "../../models/runtime_checker.ts";
import { Leases } from "../../queue/leases.ts";
import { Reaper } from "../../queue/reaper.ts";
import { openTestStore, testJobDeps } from "./app.ts";

export const WORKER_TOKEN = "worker-token-0123456789";
export const API_TOKEN = "api-token-0123456789abcdef";
export const LEASE_SECONDS = 30;
export const LEASE_MS = LEASE_SECONDS * 1000;

/** A clock that stands still until the test moves it. */
export class FakeTime implements Clock {
  constructor(public t = Date.parse("2025-01-01T00:00:00Z")) {}
  now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
  iso(offsetMs = 0): string {
    return new Date(this.t + offsetMs).toISOString();
  }
}

// deno-lint-ignore no-explicit-any
export type Json = any;

export interface Reply {
  status: number;
  body: Json;
}

export interface Hosted extends AsyncDisposable {
  time: FakeTime;
  app: Hono;
  store: EventStore;
  database: Database;
  leases: Leases;
  jobs: JobDeps;
  /** Submits a job of `type` through submitJob; returns its id. */
  submit(type: string, opts?: { maxAttempts?: number }): Promise<string>;
  /** POST /worker/<path> with the worker token (or `token`). */
  post(path: string, body: unknown, token?: string | null): Promise<Reply>;
  register(name: string, types: string[], max?: number): Promise<string>;
  claim(workerId: string, claimId: string, max: number): Promise<Json[]>;
  job(id: string): Promise<JobState>;
  /** The job's events from the log, oldest first. */
  events(id: string): Promise<{ version: number; type: string; data: Json }[]>;
}

/** Model types of the test registry; their commands never run (workers are simulated). */
export const TYPES = ["alpha", "beta", "gamma"];

/** The app of a hosted-mode server on a fresh database, driven by a hand-moved clock. */
export async function hostedApp(opts: { apiToken?: string } = {}): Promise<Hosted> {
  const time = new FakeTime();
  const base = await openTestStore(time, { shared: true });
  const { store, database } = base;
  const registry = Object.fromEntries(TYPES.map((t) => [t, { command: ["/bin/true"] }]));
  const jobs = { ...await testJobDeps(store, base.dir, registry), clock: time };
  const leases = new Leases(store, { clock: time, leaseMs: LEASE_MS });
  const app = createApp({
    database,
    store,
    jobs,
    runtimes: new RuntimeChecker(jobs.registry),
    apiToken: opts.apiToken,
    maxConcurrent: 2,
    logTailLines: 200,
    lifecycle: { shuttingDown: false },
    hosted: {
      leases,
      reaper: new Reaper(leases),
      workerToken: WORKER_TOKEN,
      leaseSeconds: LEASE_SECONDS,
    },
  });
  const post = async (path: string, body: unknown, token: string | null = WORKER_TOKEN) => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await app.request(`/worker/${path}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  return {
    ...base,
    time,
    app,
    leases,
    jobs,
    post,
    async submit(type, o = {}) {
      const sub = await submitJob(jobs, {
        model_type: type,
        retrain: true,
        use_cv: false,
        hyperparameters: null,
        max_attempts: o.maxAttempts,
      }, { typeStatus: 422 });
      return sub.job.job_id;
    },
    async register(name, types, max = 4) {
      const r = await post("register", { name, model_types: types, max_concurrent: max });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.worker_id;
    },
    async claim(workerId, claimId, max) {
      const r = await post("claim", {
        worker_id: workerId,
        claim_id: claimId,
        max,
        wait_seconds: 0,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.jobs;
    },
    async job(id) {
      const state = await store.load(id);
      assert.ok(state, `no job ${id}`);
      return state;
    },
    async events(id) {
      const rs = await database.client.execute({
        sql: "SELECT version, type, data, log_text FROM events WHERE job_id = ? ORDER BY version",
        args: [id],
      });
      // Log lines as the API shows them, however they are stored.
      return rs.rows.map((r) => ({
        version: Number(r.version),
        type: String(r.type),
        data: r.type === "log"
          ? decodeLogLines(
            String(r.data),
            r.log_text === null ? null : String(r.log_text),
            logDirOf(database.client),
          )
          : JSON.parse(String(r.data)),
      }));
    },
  };
}

/** What a worker reports when it started a job's process. */
export function startInfo(workerId: string, pid = 4242) {
  return { pid, pgid: pid, start_ticks: 99, worker_id: workerId, command: ["/bin/true"] };
}

/** Log events with numbered lines `first`, `first+1`, …, one line each. */
export function logLines(first: number, n: number) {
  return Array.from({ length: n }, (_, i) => ({
    type: "log",
    data: { stream: "stdout", lines: [`line ${first + i}`] },
  }));
}

/** Asserts the `jobs` table holds exactly what a replay of the log gives. */
export async function assertProjectionIsReplay(database: Database): Promise<void> {
  const replayed = await replay(database);
  const rows = await database.db.select().from(jobsTable);
  const table = new Map(rows.map((row) => [row.job_id, rowToState(row)]));
  assert.deepEqual([...table.keys()].sort(), [...replayed.keys()].sort());
  for (const [id, state] of replayed) assert.deepEqual(table.get(id), state, `job ${id}`);
}
