/** Read queries over the projection and the log. Routes call these; no SQL elsewhere. */
import { Buffer } from "node:buffer";
import type { InValue } from "@libsql/client";
import { and, asc, count, eq, gt, inArray, sql } from "drizzle-orm";
import type { JobStatus, StoredEvent } from "../jobs/events.ts";
import { JobEvent } from "../jobs/events.ts";
import type { JobState } from "../jobs/state.ts";
import type { Db } from "./client.ts";
import { decodeLogLines, logRowText } from "./event_rows.ts";
import { logDirOf } from "./log_files.ts";
import { decodeJob, JOB_SELECT, JOB_WIDTH, LOAD_JOB_SQL } from "./job_sql.ts";
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

export interface LogTail {
  lines: string[];
  /** True when the byte cap left out lines the line count would have shown, or cut one. */
  truncated: boolean;
}

/** Log events read per query of a tail; most jobs' whole tail fits in one read. */
const TAIL_BATCH = 16;
const LOG_TAIL_SQL = `SELECT seq, data, log_text FROM events
  WHERE job_id = ? AND type = 'log' AND seq < ? ORDER BY seq DESC LIMIT ${TAIL_BATCH}`;

/** A log event of a tail, newest first: its seq, and its lines as an array or one text. */
interface TailRow {
  seq: number;
  data: { lines?: string[]; file?: unknown; count?: number };
  text: string | null;
}

// The job's row and the first batch of its tail in one statement: a statement through the
// driver costs 25-40 us whatever it reads, and this is the whole read of most status views.
// The batch ends with the chunk that completes the line limit (?2; `count` is in a chunk's
// data, and an older row counts 0): a job printing fast would otherwise have 16 chunks of
// 256 KiB encoded and parsed for every status read, to show the last few lines of one.
// The batch comes as one JSON text of [seq, data, log_text] rows, `data` left as its text:
// JSON.parse reads it faster than SQLite's json() would re-encode it.
const JOB_WITH_TAIL_SQL = `SELECT ${JOB_SELECT}, (SELECT json_group_array(json_array(seq,
  data, log_text) ORDER BY seq DESC) FROM events WHERE seq IN (
    SELECT seq FROM (SELECT seq, sum(n) OVER (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING) - n
      AS newer FROM (SELECT seq, coalesce(json_extract(data, '$.count'), 0) AS n FROM events
        WHERE job_id = jobs.job_id AND type = 'log' ORDER BY seq DESC LIMIT ${TAIL_BATCH}))
    WHERE newer < ?2)) AS log_tail FROM jobs WHERE job_id = ?1`;

/** A job and the tail of its log (as `logTail` reads it), or undefined when there is none. */
export async function getJobWithTail(
  db: Db,
  jobId: string,
  limits: { lines: number; bytes: number },
): Promise<{ job: JobState; logs: LogTail } | undefined> {
  const row = await readFirst(db.$client, JOB_WITH_TAIL_SQL, [jobId, limits.lines]);
  if (!row) return undefined;
  const first = (JSON.parse(String(row[JOB_WIDTH])) as unknown[][]).map(tailRow);
  return { job: decodeJob(row), logs: await logTail(db, jobId, limits, first) };
}

async function tailRows(db: Db, jobId: string, before: number): Promise<TailRow[]> {
  return (await readValues(db.$client, LOG_TAIL_SQL, [jobId, before])).map(tailRow);
}

/** A tail row from its values: seq, data (JSON text), log_text. */
function tailRow([seq, data, text]: unknown[]): TailRow {
  return {
    seq: Number(seq),
    data: JSON.parse(String(data)),
    text: text === null || text === undefined ? null : String(text),
  };
}

/**
 * A tail row's lines, newest first; a text is cut from its end only as far as it is read. A
 * range of a log file (`logDir`) is read only when the tail gets to it.
 */
function* newestFirst(row: TailRow, logDir: string | null): Generator<string> {
  const text = row.text ?? logRowText(row.data, logDir);
  if (text === null) {
    const lines = row.data.lines ?? [];
    for (let i = lines.length - 1; i >= 0; i--) yield lines[i];
    return;
  }
  let end = text.length;
  for (;;) {
    const nl = end === 0 ? -1 : text.lastIndexOf("\n", end - 1);
    yield text.slice(nl + 1, end);
    if (nl < 0) return;
    end = nl;
  }
}

/**
 * The newest lines of a job's log, oldest first: at most `lines` lines and `bytes` UTF-8
 * bytes once joined with newlines. A newest line longer than `bytes` is cut, with a marker.
 * `first` is the first batch when the caller has read it already.
 */
export async function logTail(
  db: Db,
  jobId: string,
  limits: { lines: number; bytes: number },
  first?: TailRow[],
): Promise<LogTail> {
  const tail: string[] = [];
  let used = 0;
  let rows = first ?? await tailRows(db, jobId, Number.MAX_SAFE_INTEGER);
  for (;;) {
    if (rows.length === 0) break;
    for (const row of rows) {
      for (const line of newestFirst(row, logDirOf(db.$client))) {
        if (tail.length >= limits.lines) {
          return { lines: tail.reverse(), truncated: false };
        }
        const size = Buffer.byteLength(line) + (tail.length ? 1 : 0);
        if (used + size > limits.bytes) {
          if (tail.length === 0) tail.push(cutLine(line, limits.bytes));
          return { lines: tail.reverse(), truncated: true };
        }
        tail.push(line);
        used += size;
      }
    }
    // A short read was the log's start: asking again would only find nothing, and a query
    // costs more than the rest of a status read's log work.
    if (rows.length < TAIL_BATCH) break;
    rows = await tailRows(db, jobId, rows[rows.length - 1].seq);
  }
  return { lines: tail.reverse(), truncated: false };
}

/** The start of `line` in at most `bytes` UTF-8 bytes, marker included, never mid-character. */
function cutLine(line: string, bytes: number): string {
  const marker = ` … [line cut: ${Buffer.byteLength(line)} bytes]`;
  const room = new Uint8Array(Math.max(0, bytes - Buffer.byteLength(marker)));
  // encodeInto writes whole characters only, so `read` never splits one.
  const { read } = new TextEncoder().encodeInto(line, room);
  return line.slice(0, read) + marker;
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
