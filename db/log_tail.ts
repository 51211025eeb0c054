/**
 * The tail of a job's log, newest lines last, for the status view and the streams: the job's
 * row and the first batch of its log events in one statement, more batches only when needed.
 */
import { Buffer } from "node:buffer";
import type { JobState } from "../jobs/state.ts";
import type { Db } from "./client.ts";
import { logRowText } from "./event_rows.ts";
import { decodeJob, JOB_SELECT, JOB_WIDTH } from "./job_sql.ts";
import { logDirOf } from "./log_files.ts";
import { readFirst, readValues } from "./reader.ts";

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
