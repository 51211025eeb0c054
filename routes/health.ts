/** `GET /health`: open without a token; 200 when the database answers, 503 otherwise. */
import { Hono } from "hono";
import { healthDoc } from "../contract/docs.ts";
import type { Db } from "../db/client.ts";
import { ping } from "../db/queries.ts";
import type { EventStore } from "../db/event_store.ts";
import type { RuntimeChecker } from "../models/runtime_checker.ts";

export interface HealthDeps {
  db: Db;
  store: EventStore;
  runtimes: RuntimeChecker;
  maxConcurrent: number;
  lifecycle: { shuttingDown: boolean };
  startedAt: Date;
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
    const ok = database === "ok" && !deps.lifecycle.shuttingDown;
    return c.json({
      status: deps.lifecycle.shuttingDown ? "shutting_down" : ok ? "ok" : "error",
      database,
      queue_depth: active.filter((j) => j.status === "started" && !j.children && !j.process).length,
      running: active.filter((j) => j.status === "running").length,
      max_concurrent_jobs: deps.maxConcurrent,
      model_types,
      uptime_seconds: Math.round((Date.now() - deps.startedAt.getTime()) / 1000),
    }, ok ? 200 : 503);
  });
  return app;
}
