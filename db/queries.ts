/** Read queries over the projection and the log. Routes call these; no SQL elsewhere. */
import { and, asc, count, desc, eq, gt, inArray, isNull, lt, type SQL, sql } from "drizzle-orm";
import type { JobStatus, StoredEvent } from "../jobs/events.ts";
import { JobEvent } from "../jobs/events.ts";
import type { JobState } from "../jobs/state.ts";
import type { Db } from "./client.ts";
import { rowToState } from "./rows.ts";
import { events, jobs } from "./schema.ts";

/** One job's projected state. */
export async function getJob(db: Db, jobId: string): Promise<JobState | undefined> {
  const [row] = await db.select().from(jobs).where(eq(jobs.job_id, jobId));
  return row ? rowToState(row) : undefined;
}

/** Several jobs by id, in the order asked. */
export async function getJobs(db: Db, ids: string[]): Promise<JobState[]> {
  if (ids.length === 0) return [];
  const rows = await db.select().from(jobs).where(inArray(jobs.job_id, ids));
  const byId = new Map(rows.map((r) => [r.job_id, rowToState(r)]));
  return ids.map((id) => byId.get(id)).filter((j): j is JobState => !!j);
}

/** The last `lines` lines of a job's log, oldest first. */
export async function logTail(db: Db, jobId: string, lines: number): Promise<string[]> {
  const out: string[][] = [];
  let have = 0;
  let before = Number.MAX_SAFE_INTEGER;
  while (have < lines) {
    const rows = await db.select({ seq: events.seq, data: events.data }).from(events)
      .where(and(eq(events.job_id, jobId), eq(events.type, "log"), lt(events.seq, before)))
      .orderBy(desc(events.seq)).limit(16);
    if (rows.length === 0) break;
    for (const row of rows) {
      const chunk = (JSON.parse(row.data) as { lines: string[] }).lines;
      out.unshift(chunk);
      have += chunk.length;
      before = row.seq;
      if (have >= lines) break;
    }
  }
  return out.flat().slice(-lines);
}

export interface ListFilter {
  status?: JobStatus;
  model_type?: string;
  parent_id?: string;
  limit: number;
  offset: number;
}

/** Newest jobs first, with the total and the number matching the filter. */
export async function listJobs(db: Db, f: ListFilter) {
  const conditions = [
    f.status ? eq(jobs.status, f.status) : undefined,
    f.model_type ? eq(jobs.model_type, f.model_type) : undefined,
    f.parent_id ? eq(jobs.parent_id, f.parent_id) : undefined,
  ].filter((c): c is SQL => c !== undefined);
  const where = conditions.length ? and(...conditions) : undefined;
  const rows = await db.select().from(jobs).where(where).orderBy(desc(jobs.submitted_seq))
    .limit(f.limit).offset(f.offset);
  const [{ total }] = await db.select({ total: count() }).from(jobs);
  const filtered = where ? (await db.select({ n: count() }).from(jobs).where(where))[0].n : total;
  return { jobs: rows.map(rowToState), total, filtered };
}

/** A job's events after `after`, oldest first, optionally of some types only. */
export async function jobEvents(
  db: Db,
  jobId: string,
  opts: { after: number; limit: number; types?: string[] },
): Promise<StoredEvent[]> {
  const rows = await db.select().from(events).where(and(
    eq(events.job_id, jobId),
    gt(events.seq, opts.after),
    opts.types?.length ? inArray(events.type, opts.types) : undefined,
  )).orderBy(asc(events.seq)).limit(opts.limit);
  return rows.map((r) => ({
    seq: r.seq,
    job_id: r.job_id,
    version: r.version,
    at: r.at,
    event: JobEvent.parse({ type: r.type, data: JSON.parse(r.data) }),
  }));
}

/**
 * How many jobs submitted before the one at `submittedSeq` still wait for a slot. A range of
 * the (status, submitted_seq) index: it reads only waiting jobs, never the whole table.
 */
export async function waitingBefore(db: Db, submittedSeq: number): Promise<number> {
  const [{ n }] = await db.select({ n: count() }).from(jobs).where(and(
    eq(jobs.status, "started"),
    lt(jobs.submitted_seq, submittedSeq),
    isNull(jobs.children),
    isNull(jobs.process),
  ));
  return n;
}

/** True when the database answers. */
export async function ping(db: Db): Promise<void> {
  await db.run(sql`select 1`);
}
