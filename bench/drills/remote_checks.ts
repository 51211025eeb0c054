/**
 * What must hold on the shared database of the remote kill drill once it is quiet: every job
 * ended, no lease is left, each job ran at most once per attempt and never two attempts at
 * once, and a job whose worker was lost was requeued while it had attempts left, and failed
 * with the evidence otherwise.
 */
import { openDatabase } from "../../db/client.ts";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** Jobs of an attempt that a worker held when it was killed. */
export interface WorkerKill {
  worker: string;
  at: number;
  leases: { job_id: string; attempt: number }[];
}

export interface LogFigures {
  completed: number;
  failed: number;
  cancelled: number;
  worker_lost: number;
  requeued: number;
  jobs_in_database: number;
  /** From a worker's SIGKILL to its job's `failed` or `requeued` event, ms (-1: none). */
  longest_kill_to_lost_ms: number;
  leases_lost_to_worker_kills: number;
}

async function withDb<T>(
  dbPath: string,
  fn: (exec: (sql: string) => Promise<Record<string, unknown>[]>) => Promise<T>,
): Promise<T> {
  const database = await openDatabase(`file:${dbPath}`);
  try {
    return await fn(async (sql) => (await database.client.execute(sql)).rows);
  } finally {
    database.close();
  }
}

/** What is still going on: jobs not ended, and active leases. */
export function busy(dbPath: string): Promise<{ unfinished: number; leases: number }> {
  return withDb(dbPath, async (exec) => {
    const [j] = await exec(
      "SELECT count(*) AS n FROM jobs WHERE status NOT IN ('completed', 'failed', 'cancelled')",
    );
    const [l] = await exec("SELECT count(*) AS n FROM leases WHERE active = 1");
    return { unfinished: Number(j.n), leases: Number(l.n) };
  });
}

/** Waits until no job is waiting or running and no lease is active; returns the ms it took. */
export async function quiesce(dbPath: string, deadlineMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    const b = await busy(dbPath);
    if (b.unfinished === 0 && b.leases === 0) return Date.now() - started;
    if (Date.now() - started > deadlineMs) {
      throw new Error(
        `not quiet after ${deadlineMs} ms: ${b.unfinished} job(s) not ended, ${b.leases} ` +
          `active lease(s)`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Ev {
  job_id: string;
  type: string;
  at: string;
  data: Record<string, unknown>;
}

/**
 * Checks every job's log; throws naming the first broken rule with up to 10 examples.
 * `kills` are the worker kills with the leases each worker held, for the latency figure.
 */
export function checkRemoteLog(dbPath: string, kills: WorkerKill[]): Promise<LogFigures> {
  return withDb(dbPath, async (exec) => {
    const jobs = new Map(
      (await exec("SELECT job_id, status, attempt, max_attempts, failure_reason FROM jobs"))
        .map((r) => [String(r.job_id), r]),
    );
    const byJob = new Map<string, Ev[]>();
    for (
      const r of await exec("SELECT job_id, type, at, data FROM events ORDER BY job_id, version")
    ) {
      const e = { ...r, data: JSON.parse(String(r.data)) } as Ev;
      byJob.set(e.job_id, [...byJob.get(e.job_id) ?? [], e]);
    }
    const rules = new Map<string, string[]>();
    const broke = (rule: string, example: string) => {
      const list = rules.get(rule) ?? [];
      if (list.length < 10) list.push(example);
      rules.set(rule, list);
    };
    const figures: LogFigures = {
      completed: 0,
      failed: 0,
      cancelled: 0,
      worker_lost: 0,
      requeued: 0,
      jobs_in_database: jobs.size,
      longest_kill_to_lost_ms: -1,
      leases_lost_to_worker_kills: 0,
    };
    for (const [id, job] of jobs) {
      const status = String(job.status);
      if (!TERMINAL.has(status)) broke("every job is terminal", `${id} is ${status}`);
      else figures[status as "completed" | "failed" | "cancelled"]++;
      checkJob(id, job, byJob.get(id) ?? [], broke, figures);
    }
    const [l] = await exec("SELECT count(*) AS n FROM leases WHERE active = 1");
    if (Number(l.n)) broke("no active lease is left", `${l.n} active lease(s)`);
    for (const k of kills) {
      for (const lease of k.leases) {
        const lost = (byJob.get(lease.job_id) ?? []).find((e) =>
          (e.type === "requeued" && e.data.reason === "worker_lost" &&
            e.data.attempt === lease.attempt) ||
          (e.type === "failed" && e.data.failure_reason === "worker_lost" &&
            (e.data.evidence as { attempt?: number } | null)?.attempt === lease.attempt)
        );
        if (!lost) continue; // it ended before the kill took it, or was cancelled
        figures.leases_lost_to_worker_kills++;
        figures.longest_kill_to_lost_ms = Math.max(
          figures.longest_kill_to_lost_ms,
          Date.parse(lost.at) - k.at,
        );
      }
    }
    const [first] = rules.entries();
    if (first) throw new Error(`${first[0]}:\n  ${first[1].join("\n  ")}`);
    return figures;
  });
}

function checkJob(
  id: string,
  job: Record<string, unknown>,
  log: Ev[],
  broke: (rule: string, example: string) => void,
  figures: LogFigures,
): void {
  const maxAttempts = Number(job.max_attempts);
  let open: number | null = null;
  let last = 0;
  let starts = 0;
  let ended = false;
  for (const e of log) {
    if (e.type === "started") {
      const attempt = Number(e.data.attempt ?? 1);
      starts++;
      if (ended) broke("no job starts after it ended", `${id}: attempt ${attempt}`);
      if (open !== null) {
        broke(
          "no job has two overlapping runs",
          `${id}: attempt ${attempt} started while attempt ${open} had not ended`,
        );
      }
      if (attempt <= last) {
        broke("attempts only grow", `${id}: attempt ${attempt} after ${last}`);
      }
      open = last = attempt;
    } else if (e.type === "requeued") {
      if (e.data.reason === "worker_lost") figures.requeued++;
      const attempt = Number(e.data.attempt);
      if (attempt !== open) {
        broke("a requeue ends the running attempt", `${id}: requeued ${attempt}, ran ${open}`);
      }
      if (attempt >= maxAttempts) {
        broke(
          "only a job with attempts left is requeued",
          `${id}: attempt ${attempt} of ${maxAttempts}`,
        );
      }
      open = null;
    } else if (e.type === "completed" || e.type === "failed") {
      // A cancel is not an end here: the run goes on until its process is stopped, and a
      // worker whose claim crossed the cancel may still report the start (and is told to stop).
      ended = true;
      open = null;
      if (e.type === "failed" && e.data.failure_reason === "worker_lost") {
        figures.worker_lost++;
        checkLost(id, e, maxAttempts, broke);
      }
    }
  }
  if (starts > Number(job.attempt) || starts > maxAttempts) {
    broke(
      "no job has more starts than attempts",
      `${id}: ${starts} started event(s), attempt ${job.attempt} of ${maxAttempts}`,
    );
  }
}

function checkLost(
  id: string,
  e: Ev,
  maxAttempts: number,
  broke: (rule: string, example: string) => void,
): void {
  const evidence = e.data.evidence as Record<string, unknown> | null;
  if (!evidence || typeof evidence.worker_id !== "string" || !evidence.lease_expired_at) {
    broke("a worker_lost failure carries evidence", `${id}: ${JSON.stringify(evidence)}`);
    return;
  }
  if (Number(evidence.attempt) < maxAttempts) {
    broke(
      "a job with attempts left that lost its worker is requeued, not failed",
      `${id}: failed at attempt ${evidence.attempt} of ${maxAttempts}`,
    );
  }
}
