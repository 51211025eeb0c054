/** Read queries behind the SSE streams: pages of the log after a cursor, and the log's end. */
import { and, asc, gt, inArray, sql } from "drizzle-orm";
import { JobEvent, type StoredEvent } from "../jobs/events.ts";
import type { Db } from "./client.ts";
import { events } from "./schema.ts";

export interface StreamPage {
  /** Only events after this sequence number. */
  after: number;
  limit: number;
  /** Only events of these jobs (all jobs when absent). */
  jobIds?: string[];
  /** Only events of these types (all types when absent). */
  types?: readonly string[];
}

/** Events after a cursor, oldest first: one page of a stream. */
export async function eventsAfter(db: Db, page: StreamPage): Promise<StoredEvent[]> {
  const rows = await db.select().from(events).where(and(
    gt(events.seq, page.after),
    page.jobIds ? inArray(events.job_id, page.jobIds) : undefined,
    page.types?.length ? inArray(events.type, [...page.types]) : undefined,
  )).orderBy(asc(events.seq)).limit(page.limit);
  return rows.map((r) => ({
    seq: r.seq,
    job_id: r.job_id,
    version: r.version,
    at: r.at,
    event: JobEvent.parse({ type: r.type, data: JSON.parse(r.data) }),
  }));
}

/** The highest sequence number in the log (0 when empty); other instances' commits show here. */
export async function lastSeq(db: Db): Promise<number> {
  const [{ max }] = await db.select({ max: sql<number | null>`max(${events.seq})` }).from(events);
  return max ?? 0;
}
