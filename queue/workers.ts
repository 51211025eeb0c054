/** Remote workers: registration, and the list that GET /health shows. */
import type { Client } from "@libsql/client";
import type { Clock } from "../db/clock.ts";

export interface WorkerInfo {
  worker_id: string;
  name: string;
  model_types: string[];
  max_concurrent: number;
  registered_at: string;
  last_heartbeat: string;
  /** Jobs it holds a live lease on. */
  running: number;
  /** Heard from within the lease length, and not stopped. */
  alive: boolean;
  /** When it said it was stopping (a graceful stop); null while it runs, or if it died. */
  stopped_at: string | null;
}

/**
 * Records a worker that starts. Leases that an earlier run of a worker with the same name
 * still holds expire now: that run is gone (its processes were killed by this one at
 * start), so its jobs need not wait out their leases.
 */
export async function registerWorker(
  client: Client,
  clock: Clock,
  w: { worker_id: string; name: string; model_types: string[]; max_concurrent: number },
): Promise<void> {
  const now = clock.now();
  await client.batch([
    {
      sql: "UPDATE leases SET expires_at = ? WHERE active = 1 AND worker_id IN " +
        "(SELECT worker_id FROM workers WHERE name = ?)",
      args: [now.getTime(), w.name],
    },
    // The earlier run is gone: its row no longer counts as live (nor its slots twice).
    {
      sql: "UPDATE workers SET stopped_at = ? WHERE name = ? AND stopped_at IS NULL",
      args: [now.toISOString(), w.name],
    },
    {
      sql: "INSERT INTO workers (worker_id, name, model_types, max_concurrent, registered_at, " +
        "last_heartbeat) VALUES (?, ?, ?, ?, ?, ?)",
      args: [
        w.worker_id,
        w.name,
        JSON.stringify(w.model_types),
        w.max_concurrent,
        now.toISOString(),
        now.toISOString(),
      ],
    },
  ], "write");
}

/** The workers heard from most recently (at most 100), newest first. */
export async function listWorkers(
  client: Client,
  clock: Clock,
  leaseMs: number,
): Promise<WorkerInfo[]> {
  const rs = await client.execute(
    "SELECT w.*, (SELECT count(*) FROM leases l WHERE l.worker_id = w.worker_id AND " +
      "l.active = 1) AS running FROM workers w ORDER BY w.last_heartbeat DESC LIMIT 100",
  );
  const now = clock.now().getTime();
  return rs.rows.map((r) => ({
    worker_id: String(r.worker_id),
    name: String(r.name),
    model_types: JSON.parse(String(r.model_types)),
    max_concurrent: Number(r.max_concurrent),
    registered_at: String(r.registered_at),
    last_heartbeat: String(r.last_heartbeat),
    running: Number(r.running),
    alive: r.stopped_at === null && now - Date.parse(String(r.last_heartbeat)) < leaseMs,
    stopped_at: r.stopped_at === null ? null : String(r.stopped_at),
  }));
}

/**
 * A worker says it is stopping (a graceful stop): it is not live from now on, and any lease
 * it still holds (a claim whose answer it never read) expires now, for the reaper to release.
 * False when no worker has that id.
 */
export async function stopWorker(client: Client, clock: Clock, workerId: string): Promise<boolean> {
  const now = clock.now();
  const [found] = await client.batch([
    {
      sql: "UPDATE workers SET stopped_at = coalesce(stopped_at, ?) WHERE worker_id = ? " +
        "RETURNING worker_id",
      args: [now.toISOString(), workerId],
    },
    {
      sql: "UPDATE leases SET expires_at = ? WHERE active = 1 AND worker_id = ? AND expires_at > ?",
      args: [now.getTime(), workerId, now.getTime()],
    },
  ], "write");
  return found.rows.length > 0;
}

/** True when a worker heard from within `leaseMs` (a live one) offers `modelType`. */
export async function liveWorkerOffers(
  client: Client,
  clock: Clock,
  leaseMs: number,
  modelType: string,
): Promise<boolean> {
  // ISO times of one format compare as text, as listWorkers' `alive` compares them as times.
  const since = new Date(clock.now().getTime() - leaseMs).toISOString();
  const rs = await client.execute({
    sql: "SELECT 1 FROM workers w, json_each(w.model_types) t " +
      "WHERE w.last_heartbeat > ? AND w.stopped_at IS NULL AND t.value = ? LIMIT 1",
    args: [since, modelType],
  });
  return rs.rows.length > 0;
}
