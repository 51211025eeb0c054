/**
 * Rebuilds the `jobs` projection from the event log: replay every event through `evolve`,
 * derive parents, then replace the table's rows in one transaction.
 */
import { asc, gt, sql } from "drizzle-orm";
import { JobEvent } from "../jobs/events.ts";
import { deriveParent, evolve, type JobState } from "../jobs/state.ts";
import type { Database } from "./client.ts";
import { upsertJob } from "./event_store.ts";
import { stateToRow } from "./rows.ts";
import { events, jobs } from "./schema.ts";

const PAGE = 5000;

/** Every job's state as a replay of the log gives it. */
export async function replay(database: Database): Promise<Map<string, JobState>> {
  const states = new Map<string, JobState>();
  let after = 0;
  for (;;) {
    const rows = await database.db.select().from(events).where(gt(events.seq, after))
      .orderBy(asc(events.seq)).limit(PAGE);
    for (const r of rows) {
      const event = JobEvent.parse({ type: r.type, data: JSON.parse(r.data) });
      const stored = { seq: r.seq, job_id: r.job_id, version: r.version, at: r.at, event };
      states.set(r.job_id, evolve(states.get(r.job_id), stored));
    }
    if (rows.length < PAGE) break;
    after = rows[rows.length - 1].seq;
  }
  for (const s of states.values()) {
    if (!s.children) continue;
    const children = s.children.map((c) => states.get(c)).filter((c): c is JobState => !!c);
    states.set(s.job_id, deriveParent(s, children));
  }
  return states;
}

/** Replaces the projection with a replay of the log; returns how many jobs it holds. */
export async function rebuildProjections(database: Database): Promise<number> {
  const states = await replay(database);
  const statements = [database.db.delete(jobs)];
  const all = [...states.values()];
  const writes = all.map((s) => upsertJob(database, stateToRow(s)));
  await database.db.batch([statements[0], ...writes]);
  await database.db.run(sql`PRAGMA optimize`);
  return all.length;
}
