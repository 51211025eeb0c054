/** Read queries behind the SSE streams: pages of the log after a cursor, and the log's end. */
import { sql } from "drizzle-orm";
import { JobEvent, type StoredEvent } from "../jobs/events.ts";
import type { Db } from "./client.ts";
import { events } from "./schema.ts";

export interface StreamPage {
  /** Only events after this sequence number. */
  after: number;
  limit: number;
  /**
   * Stop once the page's data passes this many bytes (it holds one event at least): what
   * a stream whose client stopped reading keeps in memory is one page.
   */
  maxBytes: number;
  /** Only events of these jobs (all jobs when absent). */
  jobIds?: string[];
  /** Only events of these types (all types when absent). */
  types?: readonly string[];
}

/** Events after a cursor, oldest first: one page of a stream. */
export async function eventsAfter(db: Db, page: StreamPage): Promise<StoredEvent[]> {
  const where = [sql`seq > ${page.after}`];
  if (page.jobIds) where.push(sql`job_id in ${page.jobIds}`);
  if (page.types?.length) where.push(sql`type in ${[...page.types]}`);
  const rows = await db.all<Row>(sql`
    select seq, job_id, version, type, data, at from (
      select seq, job_id, version, type, data, at,
        sum(length(data)) over (order by seq rows unbounded preceding) - length(data) as before
      from ${events} where ${sql.join(where, sql` and `)} order by seq limit ${page.limit}
    ) where before < ${page.maxBytes} order by seq`);
  return rows.map((r) => ({
    seq: r.seq,
    job_id: r.job_id,
    version: r.version,
    at: r.at,
    event: JobEvent.parse({ type: r.type, data: JSON.parse(r.data) }),
  }));
}

interface Row {
  seq: number;
  job_id: string;
  version: number;
  type: string;
  data: string;
  at: string;
}

/** The highest sequence number in the log (0 when empty); other instances' commits show here. */
export async function lastSeq(db: Db): Promise<number> {
  const [{ max }] = await db.select({ max: sql<number | null>`max(${events.seq})` }).from(events);
  return max ?? 0;
}
