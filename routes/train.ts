/** The Train API routes. Thin: parse, call one use case or query, shape the response. */
import { Hono } from "hono";
import type { z } from "zod";
import { getJob, getJobs, jobEvents, listJobs, waitingBefore } from "../db/queries.ts";
import { getJobWithTail } from "../db/log_tail.ts";
import type { Db } from "../db/client.ts";
import { trainDocs } from "../contract/docs.ts";
import type { CancelResponse } from "../contract/responses.ts";
import { NotFoundError } from "../errors.ts";
import { cancelJob, type JobDeps, type Submission, submitJob } from "../jobs/service.ts";
import { isTerminal, isWaiting, type JobState } from "../jobs/state.ts";
import { check, eventTypes, jobIdParam, readJson, refuseQuery } from "./input.ts";
import {
  EventsQuery,
  IdempotencyKey,
  ListQuery,
  PageQuery,
  TrainingOptions,
  TrainingRequest,
} from "./schemas.ts";
import { listItem, statusView } from "./views.ts";
import type { ListCache } from "./list_cache.ts";
import type { StatusCache } from "./status_cache.ts";

export interface TrainDeps {
  db: Db;
  jobs: JobDeps;
  logTailLines: number;
  logTailBytes: number;
  /** Cap on a `/logs` or `/events` page's JSON, in bytes (one event always goes out). */
  logPageBytes: number;
  /** Finished jobs' status answers (none in hosted mode: other instances write too). */
  statusCache?: StatusCache | null;
  listCache?: ListCache | null;
  /** Hosted mode: whether a live worker offers a model type, said of a waiting job. */
  remote?: { offers(modelType: string): Promise<boolean> } | null;
}

const JSON_TYPE = { "content-type": "application/json" };

/** Room kept in a page for its envelope around the events. */
const PAGE_ENVELOPE = 1024;

/** Builds the `/train` routes. */
export function trainRoutes(deps: TrainDeps): Hono {
  const app = new Hono();

  app.post("/", trainDocs.submit, async (c) => {
    refuseQuery(c);
    const body = check(TrainingRequest, await readJson(c, true), "request body");
    const key = idempotencyKey(c.req.header("idempotency-key"));
    const sub = await submitJob(deps.jobs, body, { idempotencyKey: key, typeStatus: 422 });
    replayHeader(c.header.bind(c), sub);
    return c.json({
      job_id: sub.job.job_id,
      status: sub.job.status,
      message: sub.job.message,
      model_type: sub.job.model_type,
      model_path: sub.job.model_path,
      children: sub.job.children ? sub.children.map(brief) : undefined,
    });
  });

  app.get("/status/:job_id", trainDocs.status, async (c) => {
    const jobId = jobIdParam(c);
    const cache = deps.statusCache;
    const kept = cache?.get(jobId);
    if (kept !== undefined) return c.body(kept, 200, JSON_TYPE);
    const ticket = cache?.ticket();
    const limits = { lines: deps.logTailLines, bytes: deps.logTailBytes };
    const found = await getJobWithTail(deps.db, jobId, limits);
    if (!found) throw new NotFoundError(`no job with id ${jobId}`);
    const { job, logs } = found;
    const waiting = isWaiting(job);
    const [children, ahead, note] = await Promise.all([
      getJobs(deps.db, job.children ?? []),
      waiting ? waitingBefore(deps.db, job.submitted_seq) : null,
      waiting && deps.remote ? noWorkerNote(deps.remote, job.model_type) : null,
    ]);
    const json = JSON.stringify({
      status: "success",
      message: "Job status retrieved successfully",
      data: statusView(job, logs, children, ahead, note),
    });
    if (cache && ticket !== undefined && isSettled(job) && children.every(isSettled)) {
      cache.set(ticket, jobId, json, job.children ?? []);
    }
    return c.body(json, 200, JSON_TYPE);
  });

  app.get("/jobs", trainDocs.list, async (c) => {
    const q = check(ListQuery, c.req.query(), "query");
    const cache = deps.listCache;
    // The parsed query: `?limit=05` and `?limit=5` are one page.
    const key = JSON.stringify(q);
    const kept = cache?.get(key);
    if (kept !== undefined) return c.body(kept, 200, JSON_TYPE);
    const ticket = cache?.ticket();
    const { jobs, total, filtered } = await listJobs(deps.db, q);
    const json = JSON.stringify({
      jobs: jobs.map(listItem),
      total_count: total,
      filtered_count: filtered,
    });
    if (cache && ticket !== undefined) cache.set(ticket, key, json);
    return c.body(json, 200, JSON_TYPE);
  });

  const cancel = async (jobId: string) => {
    const job = await cancelJob(deps.jobs, jobId, "cancelled by request");
    return {
      status: "success",
      message: `Job ${jobId} cancelled successfully`,
      data: { job_id: jobId, status: job.status, cancelled_at: job.cancelled_at },
    } satisfies z.input<typeof CancelResponse>;
  };
  app.delete(
    "/job/cancel/:job_id",
    trainDocs.cancel,
    async (c) => c.json(await cancel(jobIdParam(c))),
  );
  app.delete("/job/:job_id", trainDocs.cancel, async (c) => c.json(await cancel(jobIdParam(c))));

  app.get("/logs/:job_id", trainDocs.logs, async (c) => {
    const job = await findJob(deps.db, jobIdParam(c));
    const q = check(PageQuery, c.req.query(), "query");
    const page = await jobEvents(deps.db, job.job_id, {
      ...q,
      types: ["log"],
      maxBytes: deps.logPageBytes - PAGE_ENVELOPE,
    });
    return c.json({
      job_id: job.job_id,
      entries: page.events.map((e) => ({ seq: e.seq, at: e.at, ...e.event.data })),
      next_after: page.events.at(-1)?.seq ?? q.after,
      truncated: page.truncated,
      more: page.more,
    });
  });

  app.get("/job/:job_id/events", trainDocs.events, async (c) => {
    const job = await findJob(deps.db, jobIdParam(c));
    const q = check(EventsQuery, c.req.query(), "query");
    const types = eventTypes([q.type, q.types], { emptyIsAll: true });
    const page = await jobEvents(deps.db, job.job_id, {
      ...q,
      types,
      maxBytes: deps.logPageBytes - PAGE_ENVELOPE,
    });
    return c.json({
      job_id: job.job_id,
      events: page.events.map((e) => ({
        seq: e.seq,
        version: e.version,
        at: e.at,
        type: e.event.type,
        data: e.event.data,
      })),
      next_after: page.events.at(-1)?.seq ?? q.after,
      truncated: page.truncated,
      more: page.more,
    });
  });

  app.post("/:model_type", trainDocs.submitType, async (c) => {
    refuseQuery(c);
    const body = await readJson(c, false);
    // Only an absent body means "all defaults"; `null` is a body, and not an object.
    const opts = check(TrainingOptions, body === undefined ? {} : body, "request body");
    const key = idempotencyKey(c.req.header("idempotency-key"));
    const req = { ...opts, model_type: c.req.param("model_type") };
    const sub = await submitJob(deps.jobs, req, { idempotencyKey: key, typeStatus: 404 });
    replayHeader(c.header.bind(c), sub);
    return c.json({
      status: "success",
      message: sub.job.status === "completed"
        ? sub.job.message
        : `Training initiated for ${req.model_type === "all" ? "all model types" : req.model_type}`,
      data: {
        job_id: sub.job.job_id,
        model_type: sub.job.model_type,
        status: sub.job.status,
        model_path: sub.job.model_path,
        children: sub.job.children ? sub.children.map(brief) : undefined,
      },
    });
  });

  return app;
}

async function findJob(db: Db, jobId: string): Promise<JobState> {
  const job = await getJob(db, jobId);
  if (!job) throw new NotFoundError(`no job with id ${jobId}`);
  return job;
}

function idempotencyKey(header: string | undefined): string | undefined {
  return header === undefined ? undefined : check(IdempotencyKey, header, "Idempotency-Key");
}

function replayHeader(set: (name: string, value: string) => void, sub: Submission): void {
  if (sub.replayed) set("Idempotent-Replayed", "true");
}

function brief(j: JobState) {
  return { job_id: j.job_id, model_type: j.model_type, status: j.status };
}

/** Finished, with its process gone: its view changes only when an event is appended to it. */
function isSettled(job: JobState): boolean {
  return isTerminal(job.status) && !job.process?.alive;
}

/** Hosted mode: says so when no live worker offers the job's model type (it would wait on). */
async function noWorkerNote(
  remote: { offers(modelType: string): Promise<boolean> },
  modelType: string,
): Promise<string | null> {
  if (await remote.offers(modelType)) return null;
  return `no live worker offers model type ${modelType} (GET /health lists the workers)`;
}
