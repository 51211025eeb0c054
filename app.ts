/** Builds the HTTP application from its dependencies; tests inject what they need. */
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Database } from "./db/client.ts";
import type { EventStore } from "./db/event_store.ts";
import { loadConfig } from "./config.ts";
import { AppError } from "./errors.ts";
import type { JobDeps } from "./jobs/service.ts";
import type { RuntimeChecker } from "./models/runtime_checker.ts";
import { createMetrics } from "./metrics/collector.ts";
import { registerDocs } from "./routes/docs.ts";
import { healthRoutes } from "./routes/health.ts";
import {
  bearerAuth,
  hostCheck,
  limitBody,
  originCheck,
  shutdownGate,
} from "./routes/middleware.ts";
import { registerMetrics } from "./routes/metrics.ts";
import { streamRoutes } from "./routes/stream.ts";
import { openStreamCount } from "./routes/stream_hub.ts";
import { trainRoutes } from "./routes/train.ts";
import { ListCache } from "./routes/list_cache.ts";
import { StatusCache } from "./routes/status_cache.ts";
import { modelRoutes } from "./routes/models.ts";
import { webRoutes } from "./web/routes.ts";
import { workerRoutes } from "./routes/worker.ts";
import type { Leases } from "./queue/leases.ts";
import type { Reaper } from "./queue/reaper.ts";
import { listWorkers, liveWorkerOffers } from "./queue/workers.ts";
import { tokenGate } from "./routes/middleware.ts";

export interface AppDeps {
  database: Database;
  store: EventStore;
  jobs: JobDeps;
  runtimes: RuntimeChecker;
  apiToken?: string;
  /** A second token that opens /metrics only. */
  metricsToken?: string;
  /** Open server-sent-event streams, for /metrics; this process's count when unset. */
  sseConnections?: () => number;
  /** Origins a web page may call the API from ("*" for any); none when unset. */
  corsOrigins?: string;
  /**
   * Host names answered besides loopback ones (ALLOWED_HOSTS); `null` answers any Host, for
   * a bind that is not loopback. Unset means loopback names only.
   */
  allowedHosts?: readonly string[] | null;
  maxConcurrent: number;
  logTailLines: number;
  /** LOG_TAIL_BYTES; the default when unset. */
  logTailBytes?: number;
  /** LOG_PAGE_BYTES; the default when unset. */
  logPageBytes?: number;
  /** Time a client has to send its whole request body (BODY_TIMEOUT_SECONDS). */
  bodyTimeoutMs?: number;
  lifecycle: { shuttingDown: boolean };
  startedAt?: Date;
  /** Bytes of finished jobs' status answers kept in memory (STATUS_CACHE_MB); 0 keeps none. */
  statusCacheBytes?: number;
  /** Cap on open SSE streams (MAX_STREAMS); past it, 503. */
  maxStreams?: number;
  /** Seconds between keep-alive comments on an idle SSE stream (SSE_PING_SECONDS). */
  ssePingSeconds?: number;
  /** Hosted mode (WORKERS=remote): remote workers claim jobs at /worker with this token. */
  hosted?: { leases: Leases; reaper: Reaper; workerToken: string; leaseSeconds: number };
}

export const MAX_BODY_BYTES = 64 * 1024;
/** A worker's output chunk carries up to 16 MiB of log text, JSON-escaped. */
const MAX_WORKER_BODY_BYTES = 48 * 1024 * 1024;
/** config.ts holds every default; an empty environment yields them. */
const DEFAULTS = loadConfig({});

/** Paths the API serves, for 405 answers to other methods. */
const ROUTES: [string, string[]][] = [
  ["/train", ["POST"]],
  ["/train/jobs", ["GET"]],
  ["/train/models/available", ["GET"]],
  ["/train/models/:name/download", ["GET"]],
  ["/train/models/:name", ["DELETE"]],
  ["/train/status/:job_id", ["GET"]],
  ["/train/logs/:job_id", ["GET"]],
  ["/train/job/:job_id/events", ["GET"]],
  ["/train/job/:job_id/stream", ["GET"]],
  ["/train/stream", ["GET"]],
  ["/train/job/cancel/:job_id", ["DELETE"]],
  ["/train/job/:job_id", ["DELETE"]],
  ["/train/:model_type", ["POST"]],
  ["/health", ["GET"]],
  ["/metrics", ["GET"]],
  ["/openapi.json", ["GET"]],
  ["/docs", ["GET"]],
];

export function createApp(deps: AppDeps): Hono {
  const app = new Hono({ strict: false });
  const metrics = createMetrics({
    ...deps,
    db: deps.database.db,
    clock: deps.jobs.clock,
    sseConnections: deps.sseConnections ?? openStreamCount,
    leaseSeconds: deps.hosted?.leaseSeconds,
  });
  // First, so that it also counts the answers of the middleware below (401, 413, 503).
  app.use(metrics.http);
  if (deps.allowedHosts !== null) app.use(hostCheck(deps.allowedHosts ?? []));
  if (deps.corsOrigins) {
    const origins = deps.corsOrigins.split(",");
    app.use(cors({
      origin: deps.corsOrigins === "*" ? "*" : origins,
      allowHeaders: ["Authorization", "Content-Type", "Idempotency-Key"],
      allowMethods: ["GET", "POST", "DELETE"],
      exposeHeaders: ["Idempotent-Replayed"],
    }));
  }
  app.use(originCheck(deps.corsOrigins));
  app.use(shutdownGate(deps.lifecycle));
  // Before the token check: the page must load to ask for the token. It holds no data.
  app.route("/", webRoutes({ registry: deps.jobs.registry }));
  // The docs are open so a browser can load them; /metrics checks its own tokens.
  const bodyTimeoutMs = deps.bodyTimeoutMs ?? DEFAULTS.BODY_TIMEOUT_SECONDS * 1000;
  // The worker endpoints have their own token: API_TOKEN does not open them, nor WORKER_TOKEN
  // the user endpoints.
  app.use(
    bearerAuth(deps.apiToken, [
      "/health",
      "/metrics",
      "/openapi.json",
      "/docs",
      "/docs/*",
      "/worker/*",
    ]),
  );
  if (deps.hosted) {
    const h = deps.hosted;
    app.use("/worker/*", tokenGate([h.workerToken], "WORKER_TOKEN"));
    app.use("/worker/*", limitBody(MAX_WORKER_BODY_BYTES, bodyTimeoutMs * 6));
    app.route(
      "/worker",
      workerRoutes({
        store: deps.store,
        leases: h.leases,
        reaper: h.reaper,
        clock: deps.jobs.clock,
        newId: deps.jobs.newId,
        leaseSeconds: h.leaseSeconds,
        lifecycle: deps.lifecycle,
      }),
    );
  } else {
    app.all("/worker/*", (c) =>
      errorBody(
        c,
        404,
        "this server runs its jobs itself (WORKERS=local); remote workers connect to a " +
          "server started with WORKERS=remote",
      ));
  }
  const userBody = limitBody(MAX_BODY_BYTES, bodyTimeoutMs);
  app.use(async function userBodyLimit(c, next) {
    if (c.req.path.startsWith("/worker/")) return await next();
    return await userBody(c, next);
  });
  // Static paths answer 405 before the routes run: otherwise `POST /train/jobs` would be
  // taken by `POST /train/:model_type` as a request to train a model type named "jobs".
  for (const [path, methods] of ROUTES) {
    if (path.includes(":")) continue;
    app.use(path, async function allowedMethods(c, next) {
      const method = c.req.method === "HEAD" ? "GET" : c.req.method;
      if (methods.includes(method)) return await next();
      return methodNotAllowed(c, methods);
    });
  }
  // The status view's log tail, the same in GET /train/status and a stream's `end`.
  const cacheBytes = deps.statusCacheBytes ?? DEFAULTS.STATUS_CACHE_MB * 1024 * 1024;
  const tail = {
    logTailLines: deps.logTailLines,
    logTailBytes: deps.logTailBytes ?? DEFAULTS.LOG_TAIL_BYTES,
  };
  const leaseMs = (deps.hosted?.leaseSeconds ?? 0) * 1000;
  app.route(
    "/health",
    healthRoutes({
      ...deps,
      db: deps.database.db,
      startedAt: deps.startedAt ?? new Date(),
      remote: deps.hosted && {
        workers: () => listWorkers(deps.database.client, deps.jobs.clock, leaseMs),
      },
    }),
  );
  app.route(
    "/train",
    trainRoutes({
      db: deps.database.db,
      jobs: deps.jobs,
      ...tail,
      logPageBytes: deps.logPageBytes ?? DEFAULTS.LOG_PAGE_BYTES,
      statusCache: StatusCache.forStore(deps.store, cacheBytes),
      // A quarter of the same budget: a few pages asked for again and again.
      listCache: ListCache.forStore(deps.store, Math.floor(cacheBytes / 4)),
      remote: deps.hosted
        ? {
          offers: (type: string) =>
            liveWorkerOffers(deps.database.client, deps.jobs.clock, leaseMs, type),
        }
        : null,
    }),
  );
  app.route("/train", modelRoutes({ jobs: deps.jobs }));
  app.route(
    "/train",
    streamRoutes({
      db: deps.database.db,
      store: deps.store,
      ...tail,
      maxStreams: deps.maxStreams ?? DEFAULTS.MAX_STREAMS,
      keepAliveMs: (deps.ssePingSeconds ?? DEFAULTS.SSE_PING_SECONDS) * 1000,
      lifecycle: deps.lifecycle,
    }),
  );
  registerMetrics(app, metrics, deps);
  registerDocs(app);
  for (const [path, methods] of ROUTES) app.all(path, (c) => methodNotAllowed(c, methods));
  app.notFound((c) => errorBody(c, 404, `no route ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof AppError) return errorBody(c, err.status, err.message, err.details);
    if (err instanceof HTTPException) return errorBody(c, err.status, err.message);
    // The client hung up or broke the framing while its body was being read: its fault.
    if (err instanceof Deno.errors.BadResource) {
      return errorBody(c, 400, "could not read the request body (connection closed mid-body)");
    }
    console.error(`${c.req.method} ${c.req.path} failed:`, err);
    return errorBody(c, 500, "internal error; the server log has the details");
  });
  return app;
}

/** Job paths whose id is missing; `GET /train/status` would otherwise read as "use POST". */
const NEEDS_ID = new Set(["/train/status", "/train/logs", "/train/status/", "/train/logs/"]);

function methodNotAllowed(c: Context, methods: string[]) {
  if (c.req.method === "GET" && NEEDS_ID.has(c.req.path)) {
    const what = c.req.path.split("/")[2];
    return errorBody(c, 404, `missing job id: use GET /train/${what}/{job_id}`);
  }
  c.header("Allow", methods.join(", "));
  const message = `method ${c.req.method} is not allowed on ${c.req.path}; use ${
    methods.join(", ")
  }`;
  return errorBody(c, 405, message);
}

function errorBody(c: Context, status: number, message: string, details: unknown[] = []) {
  return c.json({ status: "error", message, details }, status as 400);
}
