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

/**
 * The jobs table's columns, in the order `decodeJob` reads them. Reads take a row as its
 * values by position: the driver builds a keyed row object column by column, and for a
 * job's 31 columns that was a third of a status read's SQL time.
 */
export const JOB_SELECT = NAMES.join(", ");
/** How many columns JOB_SELECT reads: a column selected after them is at this index. */
export const JOB_WIDTH = NAMES.length;
export const LOAD_JOB_SQL = `SELECT ${JOB_SELECT} FROM jobs WHERE job_id = ?`;

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

/**
 * The state held by a `jobs` row read as `SELECT ${JOB_SELECT}`: its values by position, as
 * an array or as the client's row (which can be indexed too). Later columns are ignored.
 */
export function decodeJob(values: ArrayLike<unknown>): JobState {
  const row: Record<string, unknown> = {};
  for (let i = 0; i < JOB_COLUMNS.length; i++) {
    const [key, col] = JOB_COLUMNS[i];
    const v = values[i];
    row[key] = v === null || v === undefined ? null : col.mapFromDriverValue(v);
  }
  return rowToState(row as JobRow);
}
