/** Read queries behind the SSE streams: pages of the log after a cursor, and the log's end. */
import { sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { logRowText } from "./event_rows.ts";
import { logDirOf } from "./log_files.ts";
import { events } from "./schema.ts";

export interface StreamPage {
  /** Only events after this sequence number. */
  after: number;
  limit: number;
  /**
   * Stop once the page passes this many characters of data (it holds one event at least):
   * what a stream whose client stopped reading keeps in memory is about one page.
   */
  maxChars: number;
  /** Only events of these jobs (all jobs when absent). */
  jobIds?: string[];
  /** Only events of these types (all types when absent). */
  types?: readonly string[];
}

/** An event as a stream sends it: its data is the stored JSON text, never parsed again. */
export interface StreamRow {
  seq: number;
  job_id: string;
  version: number;
  type: string;
  at: string;
  /** Length of the data (of a log chunk's text), in characters. */
  size: number;
  /** The data's JSON text; null when it is longer than `maxChars` (read it in slices). */
  data: string | null;
  /**
   * A log chunk's stream (migration 0007: the lines are one text, outside the JSON); null
   * for every other row. Its `data` is built from the text, or left null like any long data.
   */
  stream: string | null;
}

/** A row's text length when its lines are in a log file; null for every other row. */
const FILE_CHARS = sql.raw(
  `(case when type = 'log' and log_text is null then json_extract(data, '$.file.chars') end)`,
);

/**
 * Events after a cursor, oldest first: one page of a stream. Data longer than the page
 * budget is left out, to be read with `dataSlice`, so a page never holds a 256 KiB log
 * event per stalled client.
 */
export async function eventsAfter(db: Db, page: StreamPage): Promise<StreamRow[]> {
  const where = [sql`seq > ${page.after}`];
  if (page.jobIds) where.push(sql`job_id in ${page.jobIds}`);
  if (page.types?.length) where.push(sql`type in ${[...page.types]}`);
  const inline = page.maxChars;
  // A row whose lines are in a log file (db/log_files.ts) counts its text's length.
  const rows = await db.all<StreamRow & { in_file: number }>(sql`
    select seq, job_id, version, type, at, size, in_file,
      case when size <= ${inline} then coalesce(log_text, data) end as data,
      case when log_text is not null or in_file then json_extract(data, '$.stream') end
        as stream
    from (
      select seq, job_id, version, type, at, data, log_text, chars is not null as in_file,
        coalesce(length(log_text), chars, length(data)) as size,
        sum(min(coalesce(length(log_text), chars, length(data)), ${inline}))
          over (order by seq rows unbounded preceding)
          - min(coalesce(length(log_text), chars, length(data)), ${inline}) as before
      from (
        select *, ${FILE_CHARS} as chars from ${events}
        where ${sql.join(where, sql` and `)} order by seq limit ${page.limit}
      )
    ) where before < ${inline} order by seq`);
  const dir = logDirOf(db.$client);
  for (const row of rows) {
    if (row.in_file && row.data !== null) row.data = logRowText(JSON.parse(row.data), dir);
    // Streams show log lines as an array, as they were stored before migration 0007.
    if (row.stream !== null && row.data !== null) {
      row.data = JSON.stringify({ stream: row.stream, lines: row.data.split("\n") });
    }
  }
  return rows.map(({ in_file: _, ...row }) => row);
}

/**
 * Characters [start, start + length) of one event's data (0-based), or of a log chunk's
 * text: what `size` counted.
 */
export async function dataSlice(
  db: Db,
  seq: number,
  start: number,
  length: number,
): Promise<string> {
  const [row] = await db.all<{ part: string; ref: string | null }>(
    sql`select substr(coalesce(log_text, data), ${start + 1}, ${length}) as part,
      case when ${FILE_CHARS} is not null then data end as ref
      from ${events} where seq = ${seq}`,
  );
  if (row?.ref) {
    const text = logRowText(JSON.parse(row.ref), logDirOf(db.$client)) ?? "";
    return text.slice(start, start + length);
  }
  return row?.part ?? "";
}

/** The highest sequence number in the log (0 when empty); other instances' commits show here. */
export async function lastSeq(db: Db): Promise<number> {
  const [{ max }] = await db.select({ max: sql<number | null>`max(${events.seq})` }).from(events);
  return max ?? 0;
}
