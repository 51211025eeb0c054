/**
 * The `models` projection: one row per stored model, from the `artifact` events that carry a
 * record and the `model_deleted` events. The event store runs `modelStatements` inside the
 * transaction that appends the events, and a rebuild runs the same function over the whole
 * log, so the table always equals a replay.
 */
import type { InStatement } from "@libsql/client";
import { and, desc, eq, isNull } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { models } from "../db/schema.ts";
import type { StoredEvent } from "../jobs/events.ts";
import type { JobState } from "../jobs/state.ts";

export type ModelRow = typeof models.$inferSelect;

// Idempotent both ways: an upsert replaces the whole row (a model stored again under the same
// name is live again), and a delete keeps the first deletion's time.
const UPSERT = `INSERT INTO models (name, job_id, model_type, size, sha256, stored_in, location,
  worker_id, metrics, fingerprint, metadata, recorded_seq, created_at, deleted_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
  ON CONFLICT (name) DO UPDATE SET job_id = excluded.job_id, model_type = excluded.model_type,
  size = excluded.size, sha256 = excluded.sha256, stored_in = excluded.stored_in,
  location = excluded.location, worker_id = excluded.worker_id, metrics = excluded.metrics,
  fingerprint = excluded.fingerprint, metadata = excluded.metadata,
  recorded_seq = excluded.recorded_seq, created_at = excluded.created_at, deleted_at = NULL`;
const DELETE = "UPDATE models SET deleted_at = ? WHERE name = ? AND deleted_at IS NULL";

/**
 * The statements that bring the projection up to date with `appended`, in log order.
 * `jobOf` gives the job's state (its model type, and its metrics when the script's metadata
 * has none): a job's metrics cannot change after its artifact is recorded, since output is
 * dropped once its process has ended, so the state after the batch and after a full replay
 * agree.
 */
export function modelStatements(
  appended: readonly StoredEvent[],
  jobOf: (jobId: string) => JobState | undefined,
): InStatement[] {
  const statements: InStatement[] = [];
  for (const { event, job_id, seq, at } of appended) {
    if (event.type === "model_deleted") {
      statements.push({ sql: DELETE, args: [at, event.data.name] });
      continue;
    }
    if (event.type !== "artifact" || !event.data.record) continue;
    const r = event.data.record;
    const job = jobOf(job_id);
    const meta = r.metadata;
    const metrics = isObject(meta?.metrics)
      ? meta.metrics
      : job && Object.keys(job.metrics).length
      ? job.metrics
      : null;
    const fingerprint = typeof meta?.spec_fingerprint === "string" ? meta.spec_fingerprint : null;
    const modelType = job?.model_type ??
      (typeof meta?.model_type === "string" ? meta.model_type : "unknown");
    statements.push({
      sql: UPSERT,
      args: [
        r.name,
        job_id,
        modelType,
        r.size,
        r.sha256,
        r.stored_in,
        r.location,
        r.worker_id,
        metrics === null ? null : JSON.stringify(metrics),
        fingerprint,
        meta === null ? null : JSON.stringify(meta),
        seq,
        at,
      ],
    });
  }
  return statements;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

/** Live (not deleted) models, newest first; optionally of one type. */
export async function liveModels(db: Db, opts: { type?: string } = {}): Promise<ModelRow[]> {
  const where = opts.type
    ? and(isNull(models.deleted_at), eq(models.model_type, opts.type))
    : isNull(models.deleted_at);
  return await db.select().from(models).where(where).orderBy(desc(models.recorded_seq));
}

/** One model by name, deleted or not; undefined when the log never recorded it. */
export async function modelByName(db: Db, name: string): Promise<ModelRow | undefined> {
  const [row] = await db.select().from(models).where(eq(models.name, name));
  return row;
}

/** Live models of `type` trained with the spec `fingerprint`, newest first. */
export async function modelsWithSpec(db: Db, type: string, fingerprint: string) {
  return await db.select().from(models).where(and(
    isNull(models.deleted_at),
    eq(models.model_type, type),
    eq(models.fingerprint, fingerprint),
  )).orderBy(desc(models.recorded_seq));
}

/** Every row, in name order: for comparing the table with a replay. */
export async function allModelRows(db: Db): Promise<ModelRow[]> {
  return await db.select().from(models).orderBy(models.name);
}

/**
 * Jobs not finished that use the model at `location` (named `name`):
 * - its own job, or any job, whose model_path or artifact_path is that file;
 * - a job given the model as an input: a hyperparameter whose value is its name or location
 *   (a script that warm-starts from an earlier model, say);
 * - an "all" job still running one of whose children reused the model: its result, the set of
 *   its children's models, is not delivered yet.
 * At most `limit` job ids, for the 409's details.
 */
export async function jobsUsingModel(
  db: Db,
  model: { name: string; location: string },
  limit = 5,
): Promise<string[]> {
  const rs = await db.$client.execute({
    sql: `SELECT job_id FROM jobs WHERE status IN ('started', 'running') AND (
        model_path = :location OR artifact_path = :location
        OR EXISTS (SELECT 1 FROM json_each(jobs.hyperparameters)
                   WHERE json_each.value IN (:name, :location))
        OR EXISTS (SELECT 1 FROM jobs AS child
                   WHERE child.parent_id = jobs.job_id AND child.model_path = :location))
      LIMIT :limit`,
    args: { name: model.name, location: model.location, limit },
  });
  return rs.rows.map((r) => String(r.job_id));
}
