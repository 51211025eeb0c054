/**
 * `GET /health`: open without a token; 200 when the database answers, 503 otherwise. With
 * API_TOKEN set, a caller without the token learns only `status`: paths, programs and the
 * registry tell an attacker what runs where.
 */
import { Hono } from "hono";
import { healthDoc } from "../contract/docs.ts";
import type { Db } from "../db/client.ts";
import { ping } from "../db/queries.ts";
import type { EventStore } from "../db/event_store.ts";
import type { RuntimeChecker } from "../models/runtime_checker.ts";
import { isWaiting } from "../jobs/state.ts";
import { hasToken } from "./middleware.ts";
import type { WorkerInfo } from "../queue/workers.ts";

export interface HealthDeps {
  db: Db;
  store: EventStore;
  runtimes: RuntimeChecker;
  maxConcurrent: number;
  lifecycle: { shuttingDown: boolean };
  startedAt: Date;
  apiToken?: string;
  /** Hosted mode: the registered workers. Jobs run on them, and counts come from the table. */
  remote?: { workers(): Promise<WorkerInfo[]> };
}

export function healthRoutes(deps: HealthDeps): Hono {
  const app = new Hono();
  app.get("/", healthDoc, async (c) => {
    let database = "ok";
    try {
      await ping(deps.db);
    } catch (e) {
      database = `error: ${e instanceof Error ? e.message : String(e)}`;
    }
    const ok = database === "ok" && !deps.lifecycle.shuttingDown;
    const status = deps.lifecycle.shuttingDown ? "shutting_down" : ok ? "ok" : "error";
    if (!hasToken(c.req.header("authorization"), deps.apiToken)) {
      return c.json({ status }, ok ? 200 : 503);
    }
    if (deps.remote && ok) {
      try {
        return c.json(await remoteHealth(deps, status, database), 200);
      } catch (e) {
        return c.json({ status: "error", database: `error: ${e}` }, 503);
      }
    }
    const active = deps.store.activeJobs();
    const runtimes = deps.runtimes.snapshot();
    const model_types = Object.fromEntries(
      [...deps.runtimes.registry.keys()].map((name) => {
        const r = runtimes?.get(name);
        return [
          name,
          r
            ? { runnable: r.runnable, program: r.program, missing: r.missing, hint: r.hint }
            : { runnable: null, checking: true },
        ];
      }),
    );
    return c.json({
      status,
      database,
      queue_depth: active.filter(isWaiting).length,
      // A parent of "all" runs only through its children, which are counted themselves.
      running: active.filter((j) => j.status === "running" && !j.children).length,
      max_concurrent_jobs: deps.maxConcurrent,
      model_types,
      uptime_seconds: Math.round((Date.now() - deps.startedAt.getTime()) / 1000),
      workers_mode: "local" as const,
    }, ok ? 200 : 503);
  });
  return app;
}

/**
 * Hosted mode: other instances share the queue, so counts come from the `job_counts` rows
 * (parents of "all" left out), and a model type is runnable when a live worker offers it.
 */
async function remoteHealth(deps: HealthDeps, status: string, database: string) {
  const workers = await deps.remote!.workers();
  const rs = await deps.store.database.client.execute(
    "SELECT status, sum(n) AS n FROM job_counts WHERE model_type != 'all' GROUP BY status",
  );
  const count = (s: string) => Number(rs.rows.find((r) => r.status === s)?.n ?? 0);
  const model_types = Object.fromEntries(
    [...deps.runtimes.registry.keys()].map((name) => {
      const offered = workers.some((w) => w.alive && w.model_types.includes(name));
      return [name, {
        runnable: offered,
        program: null,
        missing: [],
        hint: offered ? null : "no live worker offers this model type",
      }];
    }),
  );
  return {
    status,
    database,
    queue_depth: count("started"),
    running: count("running"),
    max_concurrent_jobs: workers.filter((w) => w.alive).reduce((n, w) => n + w.max_concurrent, 0),
    model_types,
    uptime_seconds: Math.round((Date.now() - deps.startedAt.getTime()) / 1000),
    workers_mode: "remote" as const,
    workers,
  };
}
