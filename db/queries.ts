/**
 * Read queries over the projection and the log. Routes call these and `log_tail.ts`; no SQL
 * elsewhere.
 */
import { Buffer } from "node:buffer";
import type { InValue } from "@libsql/client";
import { and, asc, count, eq, gt, inArray, sql } from "drizzle-orm";
import type { JobStatus, StoredEvent } from "../jobs/events.ts";
import { JobEvent } from "../jobs/events.ts";
import type { JobState } from "../jobs/state.ts";
import type { Db } from "./client.ts";
import { decodeLogLines } from "./event_rows.ts";
import { logDirOf } from "./log_files.ts";
import { decodeJob, JOB_SELECT, LOAD_JOB_SQL } from "./job_sql.ts";
import { readFirst, readRows, readValues } from "./reader.ts";
import { events, jobs } from "./schema.ts";

// The read path runs raw statements on the client: drizzle rebuilt each query per request
// and was most of a status read's CPU. Rows are written only by us, so no parsing either.
// Job rows are read as values by position (`JOB_SELECT`, `decodeJob`), not as keyed rows.

/** One job's projected state. */
export async function getJob(db: Db, jobId: string): Promise<JobState | undefined> {
  const row = await readFirst(db.$client, LOAD_JOB_SQL, [jobId]);
  return row ? decodeJob(row) : undefined;
}

/** Several jobs by id, in the order asked. */
export async function getJobs(db: Db, ids: string[]): Promise<JobState[]> {
  if (ids.length === 0) return [];
  const rows = await readValues(
    db.$client,
    `SELECT ${JOB_SELECT} FROM jobs WHERE job_id IN (${ids.map(() => "?").join(", ")})`,
    ids,
  );
  const byId = new Map(rows.map(decodeJob).map((j) => [j.job_id, j]));
  return ids.map((id) => byId.get(id)).filter((j): j is JobState => !!j);
}

export interface ListFilter {
  status?: JobStatus;
  model_type?: string;
  parent_id?: string;
  limit: number;
  offset: number;
}

/**
 * Newest jobs first, with the total and the number matching the filter. The counts come from
 * `job_counts` (a dozen rows), not from counting `jobs`; only a parent filter counts rows, on
 * the parent index (a parent has three children).
 */
export async function listJobs(db: Db, f: ListFilter) {
  const where: string[] = [];
  const args: InValue[] = [];
  for (const column of ["status", "model_type", "parent_id"] as const) {
    const v = f[column];
    if (v !== undefined) {
      where.push(`${column} = ?`);
      args.push(v);
    }
  }
  const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
  // Two statements, not one read transaction: the writer commits on this JS thread, so
  // nothing commits between them in this process.
  const rows = await readValues(
    db.$client,
    `SELECT ${JOB_SELECT} FROM jobs ${clause} ORDER BY submitted_seq DESC LIMIT ? OFFSET ?`,
    [...args, f.limit, f.offset],
  );
  const [counts] = f.parent_id === undefined
    ? await readRows(
      db.$client,
      `SELECT coalesce(sum(n), 0) AS total, coalesce(sum(CASE WHEN
        (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR model_type = ?2) THEN n END), 0)
        AS filtered FROM job_counts`,
      [f.status ?? null, f.model_type ?? null],
    )
    : await readRows(
      db.$client,
      `SELECT (SELECT coalesce(sum(n), 0) FROM job_counts) AS total,
        (SELECT count(*) FROM jobs ${clause}) AS filtered`,
      args,
    );
  return {
    jobs: rows.map(decodeJob),
    total: Number(counts.total),
    filtered: Number(counts.filtered),
  };
}

export interface EventPage {
  events: StoredEvent[];
  /** The byte cap ended the page before `limit`. */
  truncated: boolean;
  /** More matching events follow the last one returned. */
  more: boolean;
}

/** Rows read per query while filling a page: bounds the reading past a byte cap. */
const PAGE_BATCH = 32;
/** What an event costs in a response besides its data: seq, version, time, type, keys. */
const EVENT_OVERHEAD = 192;

/**
 * A job's events after `after`, oldest first, optionally of some types only: at most
 * `limit` events and `maxBytes` of response, but always at least one event, so that a
 * reader paging with `after` always moves forward.
 */
export async function jobEvents(
  db: Db,
  jobId: string,
  opts: { after: number; limit: number; maxBytes: number; types?: string[] },
): Promise<EventPage> {
  const out: StoredEvent[] = [];
  let bytes = 0;
  let cursor = opts.after;
  for (;;) {
    const fetch = Math.min(opts.limit - out.length, PAGE_BATCH) + 1;
    const rows = await db.select().from(events).where(and(
      eq(events.job_id, jobId),
      gt(events.seq, cursor),
      opts.types?.length ? inArray(events.type, opts.types) : undefined,
    )).orderBy(asc(events.seq)).limit(fetch);
    for (const r of rows) {
      if (out.length === opts.limit) return { events: out, truncated: false, more: true };
      // Pages show log lines as arrays, whichever way they are stored.
      const data = r.type === "log"
        ? decodeLogLines(r.data, r.log_text, logDirOf(db.$client))
        : JSON.parse(r.data);
      const json = r.type === "log" ? JSON.stringify(data) : r.data;
      const size = Buffer.byteLength(json) + EVENT_OVERHEAD;
      if (out.length > 0 && bytes + size > opts.maxBytes) {
        return { events: out, truncated: true, more: true };
      }
      bytes += size;
      cursor = r.seq;
      out.push({
        seq: r.seq,
        job_id: r.job_id,
        version: r.version,
        at: r.at,
        event: JobEvent.parse({ type: r.type, data }),
      });
    }
    if (rows.length < fetch) return { events: out, truncated: false, more: false };
  }
}

// A statement, not a drizzle query: drizzle builds its SQL again on every call, and a waiting
// job's status is what a client polls.
const WAITING_BEFORE_SQL = `SELECT count(*) FROM jobs WHERE status = 'started'
  AND submitted_seq < ? AND children IS NULL AND process IS NULL`;

/**
 * How many jobs submitted before the one at `submittedSeq` still wait for a slot. A range of
 * the (status, submitted_seq) index: it reads only waiting jobs, never the whole table.
 */
export async function waitingBefore(db: Db, submittedSeq: number): Promise<number> {
  const [n] = (await readFirst(db.$client, WAITING_BEFORE_SQL, [submittedSeq]))!;
  return Number(n);
}

/** True when the database answers. */
export async function ping(db: Db): Promise<void> {
  await db.run(sql`select 1`);
}

export interface JobCounts {
  byStatus: { status: string; count: number }[];
  /** Jobs waiting for a process (not a parent of "all", not started yet). */
  queued: number;
  /** `created_at` of the oldest of those, or null. */
  oldestQueued: string | null;
}

/**
 * Jobs per status and the waiting ones, from the projection (for /metrics, so the numbers
 * are right whichever process wrote the jobs). Two queries, both on the status index: one
 * query that also tested `process` and `children` read every row and took 200 ms at 10,000
 * jobs.
 */
export async function jobCounts(db: Db): Promise<JobCounts> {
  const byStatus = await db.select({ status: jobs.status, count: count() }).from(jobs)
    .groupBy(jobs.status);
  const [waiting] = await db.select({
    queued: count(),
    oldestQueued: sql<string | null>`min(${jobs.created_at})`,
  }).from(jobs).where(
    and(eq(jobs.status, "started"), sql`${jobs.children} is null and ${jobs.process} is null`),
  );
  return { byStatus, ...waiting };
}

/**
 * Where jobs still running (or whose process is still alive) write their models: such a file
 * is no model yet, and its record comes with the job's end. Both terms are indexed.
 */
export async function unfinishedArtifactPaths(db: Db): Promise<string[]> {
  const rows = await readValues(
    db.$client,
    "SELECT artifact_path FROM jobs WHERE artifact_path IS NOT NULL AND status = 'running' " +
      "UNION SELECT artifact_path FROM jobs WHERE artifact_path IS NOT NULL AND " +
      "json_extract(process, '$.alive') = 1",
    [],
  );
  return rows.map((r) => String(r[0]));
}
