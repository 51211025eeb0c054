/**
 * Rebuilds the projections from the event log: `jobs` (with its `job_counts`) by replaying
 * every event through `evolve` and deriving parents, and `models` by running its inline
 * projection over the log; then replaces the tables' rows in one transaction.
 */
import { sql } from "drizzle-orm";
import { JobEvent } from "../jobs/events.ts";
import { deriveParent, evolve, type JobState } from "../jobs/state.ts";
import type { Database } from "./client.ts";
import { upsertJobs } from "./job_sql.ts";
import { modelStatements } from "../projections/models.ts";
import type { InStatement } from "@libsql/client";

const PAGE = 20_000;

// One JSON array per page: the client builds one row object per page instead of one per
// event (its per-column row objects were most of the replay's time).
// Log text is not read: a replay needs a log event's count only, which `data` holds.
const PAGE_SQL = `SELECT json_group_array(json_array(seq, job_id, version, type, json(data), at))
  AS page FROM (SELECT seq, job_id, version, type, data, at FROM events WHERE seq > ?
  ORDER BY seq LIMIT ?)`;

/** Every job's state as a replay of the log gives it. */
export async function replay(database: Database): Promise<Map<string, JobState>> {
  return (await replayAll(database)).states;
}

/** Job states, and the statements that write the `models` projection, from a replay. */
export async function replayAll(
  database: Database,
): Promise<{ states: Map<string, JobState>; models: InStatement[] }> {
  const states = new Map<string, JobState>();
  const models: InStatement[] = [];
  let after = 0;
  for (;;) {
    const rs = await database.client.execute({ sql: PAGE_SQL, args: [after, PAGE] });
    const rows = JSON.parse(String(rs.rows[0].page)) as [
      number,
      string,
      number,
      string,
      unknown,
      string,
    ][];
    for (const [seq, job_id, version, type, data, at] of rows) {
      // A log chunk's row (migration 0007) has `count` and no `lines`; its text stays unread.
      const chunk = type === "log" && !Object.hasOwn(data as object, "lines");
      const event = JobEvent.parse({ type, data: chunk ? { ...data as object, text: "" } : data });
      const stored = { seq, job_id, version, at, event };
      states.set(job_id, evolve(states.get(job_id), stored));
      if (event.type === "artifact" || event.type === "model_deleted") {
        models.push(...modelStatements([stored], (id) => states.get(id)));
      }
    }
    if (rows.length < PAGE) break;
    after = rows[rows.length - 1][0];
  }
  for (const s of states.values()) {
    if (!s.children) continue;
    const children = s.children.map((c) => states.get(c)).filter((c): c is JobState => !!c);
    states.set(s.job_id, deriveParent(s, children));
  }
  return { states, models };
}

/** Replaces the projection with a replay of the log; returns how many jobs it holds. */
export async function rebuildProjections(database: Database): Promise<number> {
  const { states, models } = await replayAll(database);
  const all = [...states.values()];
  // The triggers keep job_counts right through the delete and the inserts, but only from a
  // right start: recount, so a rebuild also repairs damaged counts.
  await database.client.batch([
    "DELETE FROM jobs",
    ...upsertJobs(all),
    "DELETE FROM job_counts",
    `INSERT INTO job_counts (status, model_type, n)
      SELECT status, model_type, count(*) FROM jobs GROUP BY status, model_type`,
    "DELETE FROM models",
    ...models,
  ], "write");
  await database.db.run(sql`PRAGMA optimize`);
  return all.length;
}
