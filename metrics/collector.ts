/**
 * Prometheus metrics. Job counters and histograms follow the event store's commits, so
 * events written by the supervisor count as well as those from HTTP requests; the per-status
 * gauges are read from the projection at scrape time, so they stay right whichever process
 * wrote the jobs. No metric has a job id as a label: one series per job would never end.
 */
import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Clock } from "../db/clock.ts";
import type { Db } from "../db/client.ts";
import type { EventStore } from "../db/event_store.ts";
import { jobCounts } from "../db/queries.ts";
import { Buffer } from "node:buffer";
import { JOB_STATUSES, type LogData, type StoredEvent } from "../jobs/events.ts";
import { isTerminal, type JobState } from "../jobs/state.ts";

export interface MetricsDeps {
  db: Db;
  store: EventStore;
  clock: Clock;
  /** Open server-sent-event streams; 0 when the app serves none. */
  sseConnections?: () => number;
  /** Hosted mode's LEASE_SECONDS: a worker heard from within it is alive. */
  leaseSeconds?: number;
}

export interface Metrics {
  /** Counts every request by method, route pattern and status. */
  http: MiddlewareHandler;
  /** The text exposition (format 0.0.4), with the scrape-time gauges brought up to date. */
  render(): Promise<string>;
  contentType: string;
}

const QUEUE_BUCKETS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600];
const RUN_BUCKETS = [1, 5, 15, 60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 24 * 3600];
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** Creates the metrics of one app on their own registry and subscribes to `store`'s commits. */
export function createMetrics(deps: MetricsDeps): Metrics {
  const registers = [new Registry()];
  const [registry] = registers;
  collectDefaultMetrics({ register: registry });

  const jobs = new Gauge({
    name: "trainer_jobs",
    help: "Jobs by status, from the jobs table at scrape time",
    labelNames: ["status"],
    registers,
  });
  const queueDepth = new Gauge({
    name: "trainer_queue_depth",
    help: "Jobs waiting for a process slot",
    registers,
  });
  const oldestQueued = new Gauge({
    name: "trainer_oldest_queued_job_age_seconds",
    help: "Age of the oldest job waiting for a process slot (0 when none waits)",
    registers,
  });
  new Gauge({
    name: "trainer_sse_connections",
    help: "Open server-sent-event streams",
    registers,
    collect() {
      this.set(deps.sseConnections?.() ?? 0);
    },
  });
  const submitted = new Counter({
    name: "trainer_jobs_submitted_total",
    help: 'Jobs submitted (an "all" job counts once as "all" and once per child type)',
    labelNames: ["model_type"],
    registers,
  });
  const finished = new Counter({
    name: "trainer_jobs_finished_total",
    help: "Jobs that reached a final status, by outcome (completed, failed, cancelled)",
    labelNames: ["model_type", "outcome"],
    registers,
  });
  const queueWait = new Histogram({
    name: "trainer_job_queue_wait_seconds",
    help: "From submission to the start of the job's process",
    labelNames: ["model_type"],
    buckets: QUEUE_BUCKETS,
    registers,
  });
  const duration = new Histogram({
    name: "trainer_job_duration_seconds",
    help: "From the start of a job to its final status, for jobs that started",
    labelNames: ["model_type", "outcome"],
    buckets: RUN_BUCKETS,
    registers,
  });
  const logBytes = new Counter({
    name: "trainer_log_bytes_total",
    help: "Bytes of training output stored in the log (UTF-8, one newline per line)",
    labelNames: ["stream"],
    registers,
  });
  const workers = new Gauge({
    name: "trainer_workers",
    help: "Remote workers (hosted mode) heard from within LEASE_SECONDS (alive) or within the " +
      "last hour but not since (silent), from the workers table at scrape time; a worker " +
      "stopped gracefully is neither",
    labelNames: ["state"],
    registers,
  });
  const leaseExpirations = new Counter({
    name: "trainer_lease_expirations_total",
    help: "Leases of started jobs that expired (hosted mode): the job was requeued, or failed " +
      "as worker_lost",
    labelNames: ["outcome"],
    registers,
  });
  const requeues = new Counter({
    name: "trainer_requeues_total",
    help: "Jobs that waited for a worker again (hosted mode), by why their attempt ended: " +
      "worker_lost (its lease expired) or worker_stopped (its worker was stopped gracefully)",
    labelNames: ["reason"],
    registers,
  });
  const requests = new Counter({
    name: "trainer_http_requests_total",
    help: "HTTP requests by method, route pattern and status",
    labelNames: ["method", "route", "status"],
    registers,
  });
  const latency = new Histogram({
    name: "trainer_http_request_duration_seconds",
    help: "Time to answer an HTTP request (to its headers, for streams)",
    labelNames: ["method", "route", "status"],
    buckets: HTTP_BUCKETS,
    registers,
  });

  const finish = (job: JobState, at: string) => {
    const labels = { model_type: job.model_type, outcome: job.status };
    finished.inc(labels);
    if (job.started_at) duration.observe(labels, seconds(job.started_at, at));
  };
  deps.store.onCommit((events: StoredEvent[], states: ReadonlyMap<string, JobState>) => {
    const parents = new Set<string>();
    for (const { job_id, at, event } of events) {
      const job = states.get(job_id);
      switch (event.type) {
        case "submitted":
          submitted.inc({ model_type: event.data.model_type });
          break;
        case "started":
          // Only the start that moved the job from waiting to running sets started_at.
          if (job?.started_at === at) {
            queueWait.observe({ model_type: job.model_type }, seconds(job.created_at, at));
          }
          break;
        case "log": {
          logBytes.inc({ stream: event.data.stream }, logBytesOf(event.data));
          break;
        }
        case "requeued":
          requeues.inc({ reason: event.data.reason });
          // A graceful stop's requeue ended no lease by expiry.
          if (event.data.reason === "worker_lost") leaseExpirations.inc({ outcome: "requeued" });
          break;
        case "completed":
        case "failed":
        case "cancelled":
          if (event.type === "failed" && event.data.failure_reason === "worker_lost") {
            leaseExpirations.inc({ outcome: "failed" });
          }
          if (!job) break;
          finish(job, at);
          if (job.parent_id) parents.add(job.parent_id);
      }
    }
    // A parent of "all" has no final event of its own unless cancelled: it finishes in the
    // commit where its last child does.
    for (const id of parents) {
      const parent = states.get(id);
      if (parent && isTerminal(parent.status) && !parent.cancelled_at && parent.completed_at) {
        finish(parent, parent.completed_at);
      }
    }
  });

  return {
    contentType: registry.contentType,
    http: async function httpMetrics(c, next) {
      const start = performance.now();
      try {
        await next();
      } finally {
        const labels = {
          method: METHODS.has(c.req.method) ? c.req.method : "other",
          route: routeLabel(c),
          status: String(c.res.status),
        };
        requests.inc(labels);
        latency.observe(labels, (performance.now() - start) / 1000);
      }
    },
    async render() {
      const counts = await jobCounts(deps.db);
      for (const status of JOB_STATUSES) jobs.set({ status }, 0);
      for (const row of counts.byStatus) jobs.set({ status: row.status }, row.count);
      queueDepth.set(counts.queued);
      const oldest = counts.oldestQueued;
      const now = deps.clock.now().toISOString();
      oldestQueued.set(oldest ? Math.max(0, seconds(oldest, now)) : 0);
      const heard = await workerStates(deps, now);
      workers.set({ state: "alive" }, heard.alive);
      workers.set({ state: "silent" }, heard.silent);
      return await registry.metrics();
    },
  };
}

/** Workers by how recently they were heard from (ISO times compare as strings). */
async function workerStates(deps: MetricsDeps, now: string) {
  const ms = Date.parse(now);
  const lease = new Date(ms - (deps.leaseSeconds ?? 30) * 1000).toISOString();
  const hour = new Date(ms - 3600_000).toISOString();
  const rs = await deps.store.database.client.execute({
    // A worker that said it stopped (a graceful stop) is neither: it is gone, not silent.
    sql: "SELECT coalesce(sum(last_heartbeat >= ?), 0) AS alive, " +
      "coalesce(sum(last_heartbeat < ? AND last_heartbeat >= ?), 0) AS silent FROM workers " +
      "WHERE stopped_at IS NULL",
    args: [lease, lease, hour],
  });
  return { alive: Number(rs.rows[0].alive), silent: Number(rs.rows[0].silent) };
}

/**
 * UTF-8 bytes of a log event's lines, a newline after each. Counted on the joined text: one
 * TextEncoder call per line was half a second of the main thread for a million lines.
 */
function logBytesOf(data: LogData): number {
  if ("text" in data) return Buffer.byteLength(data.text) + 1;
  if ("file" in data) return data.file.bytes + 1;
  return data.lines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
}

function seconds(from: string, to: string): number {
  return (Date.parse(to) - Date.parse(from)) / 1000;
}

/**
 * The route pattern a request matched (e.g. /train/status/:job_id), never its raw path: a
 * label per path would grow without end. Requests that matched no route share one label.
 */
function routeLabel(c: Parameters<MiddlewareHandler>[0]): string {
  const route = matchedRoutes(c).find((r) => !r.path.endsWith("*"));
  return route?.path ?? "unmatched";
}
