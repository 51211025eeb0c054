/**
 * Hand-built SQL for the hot write paths. Drizzle rebuilt the query for every row (about
 * half the CPU of a submission under load); these multi-row statements use drizzle's own
 * column codecs, so rows are encoded exactly as drizzle would.
 */
import type { InStatement, InValue } from "@libsql/client";
import { getTableColumns } from "drizzle-orm";
import type { JobState } from "../jobs/state.ts";
import type { StoredEvent } from "../jobs/events.ts";
import { encodeEvent } from "./event_rows.ts";
import { type JobRow, rowToState, stateToRow } from "./rows.ts";
import { jobs } from "./schema.ts";

const JOB_COLUMNS = Object.entries(getTableColumns(jobs));
/** SQLite allows 32,766 parameters per statement. */
const JOB_ROWS = Math.floor(32_000 / JOB_COLUMNS.length);
const EVENT_ROWS = 500;
const NAMES = JOB_COLUMNS.map(([, c]) => `"${c.name}"`);
const ONE_JOB = `(${NAMES.map(() => "?").join(", ")})`;
const sqlCache = new Map<string, string>();

export const LOAD_JOB_SQL = "SELECT * FROM jobs WHERE job_id = ?";

function cached(key: string, build: () => string): string {
  let text = sqlCache.get(key);
  if (!text) sqlCache.set(key, text = build());
  return text;
}

/** INSERT statements for events, in chunks. */
export function insertEvents(appended: StoredEvent[]): InStatement[] {
  const statements: InStatement[] = [];
  for (let i = 0; i < appended.length; i += EVENT_ROWS) {
    const chunk = appended.slice(i, i + EVENT_ROWS);
    const args: InValue[] = [];
    for (const e of chunk) {
      const [data, logText] = encodeEvent(e.event);
      args.push(e.seq, e.job_id, e.version, e.event.type, data, e.at, logText);
    }
    const sql = cached(
      `e${chunk.length}`,
      () =>
        `INSERT INTO events (seq, job_id, version, type, data, at, log_text) VALUES ${
          Array(chunk.length).fill("(?, ?, ?, ?, ?, ?, ?)").join(", ")
        }`,
    );
    statements.push({ sql, args });
  }
  return statements;
}

/** Upserts of job rows (insert, or replace every column of an existing row), in chunks. */
export function upsertJobs(states: JobState[]): InStatement[] {
  const statements: InStatement[] = [];
  for (let i = 0; i < states.length; i += JOB_ROWS) {
    const chunk = states.slice(i, i + JOB_ROWS);
    const args: InValue[] = [];
    for (const s of chunk) args.push(...jobArgs(stateToRow(s)));
    const sql = cached(
      `j${chunk.length}`,
      () =>
        `INSERT INTO jobs (${NAMES.join(", ")}) VALUES ${Array(chunk.length).fill(ONE_JOB)} ` +
        `ON CONFLICT (job_id) DO UPDATE SET ${NAMES.map((n) => `${n} = excluded.${n}`)}`,
    );
    statements.push({ sql, args });
  }
  return statements;
}

/** A row's values in column order. */
function jobArgs(row: JobRow): InValue[] {
  const r = row as unknown as Record<string, unknown>;
  return JOB_COLUMNS.map(([key, col]) => {
    const v = r[key];
    return v === null || v === undefined ? null : col.mapToDriverValue(v) as InValue;
  });
}

/** The state held by a raw `jobs` row as the client returns it. */
export function decodeJob(raw: Record<string, unknown>): JobState {
  const row: Record<string, unknown> = {};
  for (const [key, col] of JOB_COLUMNS) {
    const v = raw[col.name];
    row[key] = v === null || v === undefined ? null : col.mapFromDriverValue(v);
  }
  return rowToState(row as JobRow);
}
