/**
 * Leases: the durable claim of hosted mode (goqite, graphile-worker). A worker claims
 * waiting jobs with one INSERT … SELECT that picks them in submission order and takes a
 * lease on each; every later report about a job is fenced by its attempt and lease token.
 *
 * The fence and the job's log agree because every report runs as a unit of the shared
 * event store: the unit reads the lease, then appends at the job's next version. The
 * reaper's unit appends at that same version when it ends a lease, so of a late report and
 * the reaper, one commits first and the other runs again and sees the lease gone.
 */
import type { InStatement, Row } from "@libsql/client";
import { AppError } from "../errors.ts";
import type { Clock } from "../db/clock.ts";
import type { EventStore, UnitOfWork } from "../db/event_store.ts";
import { isTerminal, type JobState } from "../jobs/state.ts";

export interface LeaseRef {
  job_id: string;
  attempt: number;
  lease_token: string;
}

export interface Claimed {
  job: JobState;
  attempt: number;
  lease_token: string;
  lease_expires_at: string;
}

/** 409: the report's lease is no longer the job's. The worker must stop the process. */
export class LeaseLostError extends AppError {
  constructor(jobId: string, why: string) {
    super(409, `the lease on job ${jobId} is lost (${why}): stop its process`, [
      { code: "lease_lost", job_id: jobId },
    ]);
  }
}

/** 409: an output chunk starts past what the API holds. */
export class OffsetGapError extends AppError {
  constructor(jobId: string, expected: number, got: number) {
    super(409, `job ${jobId}: output offset ${got} leaves a gap; send from ${expected}`, [
      { code: "offset_gap", expected_offset: expected },
    ]);
  }
}

/**
 * The jobs a worker may take: waiting (not a parent of "all"), of one of its model types, and
 * not leased. Shared by the claim and by the read that spares an idle poll a write.
 */
const CLAIMABLE = `FROM jobs j
WHERE j.status = 'started' AND j.process IS NULL AND j.children IS NULL
  AND j.model_type IN (SELECT value FROM json_each(
    (SELECT model_types FROM workers WHERE worker_id = ?1 AND stopped_at IS NULL)))
  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_id = j.job_id AND l.active = 1)`;

const CLAIM_SQL = `
INSERT INTO leases (job_id, attempt, worker_id, token, claim_id, claimed_at, expires_at, active,
  output_offset)
SELECT j.job_id,
  max(j.attempt, (SELECT coalesce(max(l.attempt), 0) FROM leases l WHERE l.job_id = j.job_id)) + 1,
  ?1, lower(hex(randomblob(16))), ?2, ?3, ?4, 1, 0
${CLAIMABLE}
ORDER BY j.submitted_seq
LIMIT ?5
RETURNING job_id, attempt, token, expires_at`;

/** Is there anything to claim? */
const PROBE_SQL = `SELECT 1 ${CLAIMABLE} LIMIT 1`;

const CLAIMED_SQL = `SELECT job_id, attempt, token, expires_at FROM leases
WHERE claim_id = ? AND worker_id = ? AND active = 1`;

/** `leases.active`: 1 while held; 0 once ended by the worker's exit or fail report. */
const ENDED_BY_REPORT = 0;
/** Ended by the reaper (the lease expired): the worker's later reports are stale. */
const ENDED_BY_REAPER = -1;

export interface LeaseOptions {
  clock: Clock;
  leaseMs: number;
}

/** Claims, fences, extends and ends leases in SQL. */
export class Leases {
  constructor(readonly store: EventStore, readonly opts: LeaseOptions) {}

  get #client() {
    return this.store.database.client;
  }

  /**
   * Waiting jobs of the worker's types, oldest first, each now leased to it. A retry of the
   * same `claimId` answers the jobs that claim took (its answer may have been lost).
   */
  async claim(workerId: string, claimId: string, max: number): Promise<Claimed[]> {
    const now = this.opts.clock.now().getTime();
    const again = await this.#client.execute({ sql: CLAIMED_SQL, args: [claimId, workerId] });
    let rows = again.rows;
    // Most polls find nothing: a read costs no write transaction (and no fsync).
    if (rows.length === 0 && !await this.#anyWaiting(workerId)) return [];
    if (rows.length === 0) {
      const rs = await this.#client.batch([
        { sql: CLAIM_SQL, args: [workerId, claimId, iso(now), now + this.opts.leaseMs, max] },
        touchWorker(workerId, now),
      ], "write");
      rows = rs[0].rows;
    }
    const claimed: Claimed[] = [];
    for (const row of rows) {
      const job = await this.store.load(String(row.job_id));
      if (!job) continue;
      claimed.push({
        job,
        attempt: Number(row.attempt),
        lease_token: String(row.token),
        lease_expires_at: iso(Number(row.expires_at)),
      });
    }
    return claimed.sort((a, b) => a.job.submitted_seq - b.job.submitted_seq);
  }

  async #anyWaiting(workerId: string): Promise<boolean> {
    const rs = await this.#client.execute({ sql: PROBE_SQL, args: [workerId] });
    return rs.rows.length > 0;
  }

  /**
   * Inside a unit: the lease `ref` names, if it is still the job's live lease; throws
   * LeaseLostError otherwise.
   */
  async hold(uow: UnitOfWork, ref: LeaseRef): Promise<{ job: JobState; offset: number }> {
    const rs = await this.#client.execute({
      sql: "SELECT active, expires_at, output_offset FROM leases " +
        "WHERE job_id = ? AND attempt = ? AND token = ?",
      args: [ref.job_id, ref.attempt, ref.lease_token],
    });
    const row = rs.rows[0];
    if (!row) throw new LeaseLostError(ref.job_id, "no such lease: another attempt owns the job");
    if (Number(row.active) !== 1) throw new LeaseLostError(ref.job_id, "the lease was ended");
    if (Number(row.expires_at) <= this.opts.clock.now().getTime()) {
      throw new LeaseLostError(ref.job_id, "the lease expired: no heartbeat in time");
    }
    const job = await uow.get(ref.job_id);
    if (!job) throw new LeaseLostError(ref.job_id, "no such job");
    // Checked again inside the unit's transaction (migration 0005): the read above may be
    // stale by the time the unit commits.
    uow.also({
      sql: "INSERT INTO lease_fence (job_id, attempt, token) VALUES (?, ?, ?)",
      args: [ref.job_id, ref.attempt, ref.lease_token],
    });
    return { job, offset: Number(row.output_offset) };
  }

  /**
   * True when `ref` names a lease that exists with this token and has ended: a final report
   * (exit, fail) sent again after its answer was lost. Nothing is left to record: the lease
   * ended with that report, or with the reaper, whose events stand.
   */
  async endedBy(ref: LeaseRef): Promise<boolean> {
    const rs = await this.#client.execute({
      sql: "SELECT active FROM leases WHERE job_id = ? AND attempt = ? AND token = ?",
      args: [ref.job_id, ref.attempt, ref.lease_token],
    });
    return rs.rows.length > 0 && Number(rs.rows[0].active) === ENDED_BY_REPORT;
  }

  /**
   * Ends a lease in the unit's transaction: by the worker's own final report, or by the
   * reaper (then a late report from that worker is stale and refused).
   */
  end(uow: UnitOfWork, ref: { job_id: string; attempt: number }, by: "report" | "reaper"): void {
    uow.also({
      sql: "UPDATE leases SET active = ? WHERE job_id = ? AND attempt = ?",
      args: [by === "report" ? ENDED_BY_REPORT : ENDED_BY_REAPER, ref.job_id, ref.attempt],
    });
  }

  /**
   * Gives back a claim whose job never started, in the unit's transaction: the lease goes, as
   * the reaper's does for an unstarted claim, so no attempt is used and the job waits again.
   */
  release(uow: UnitOfWork, ref: LeaseRef): void {
    uow.also({
      // Only while the job is still unstarted when this commits (another instance may have
      // recorded its start since the unit read it), as the reaper's release does.
      sql: "DELETE FROM leases WHERE job_id = ? AND attempt = ? AND token = ? AND active = 1 " +
        "AND EXISTS (SELECT 1 FROM jobs WHERE job_id = ? AND process IS NULL)",
      args: [ref.job_id, ref.attempt, ref.lease_token, ref.job_id],
    });
  }

  /** Moves a lease's output offset in the unit's transaction. */
  advance(uow: UnitOfWork, ref: LeaseRef, by: number): void {
    uow.also({
      sql: "UPDATE leases SET output_offset = output_offset + ? WHERE job_id = ? AND attempt = ?",
      args: [by, ref.job_id, ref.attempt],
    });
  }

  /**
   * Extends the worker's live leases; per job, whether it was cancelled, or is lost to this
   * worker (its lease ended or expired, or the job ended some other way).
   */
  async heartbeat(
    workerId: string,
    refs: LeaseRef[],
  ): Promise<{ job_id: string; cancel_requested: boolean; lost: boolean }[]> {
    const now = this.opts.clock.now().getTime();
    const statements: InStatement[] = [touchWorker(workerId, now)];
    for (const r of refs) {
      statements.push({
        sql: "UPDATE leases SET expires_at = ? WHERE job_id = ? AND attempt = ? AND token = ? " +
          "AND worker_id = ? AND active = 1 AND expires_at > ? RETURNING job_id",
        args: [now + this.opts.leaseMs, r.job_id, r.attempt, r.lease_token, workerId, now],
      });
    }
    const rs = await this.#client.batch(statements, "write");
    const answers = [];
    for (const [i, r] of refs.entries()) {
      const held = rs[i + 1].rows.length > 0;
      const job = held ? await this.store.load(r.job_id) : undefined;
      answers.push({
        job_id: r.job_id,
        cancel_requested: job?.status === "cancelled",
        lost: !job || job.status === "failed" || job.status === "completed",
      });
    }
    return answers;
  }

  /**
   * Ends every expired lease: a job with attempts left waits again (`requeued`); any other
   * fails with `worker_lost` and the evidence. Returns how many leases it ended.
   */
  async reap(): Promise<number> {
    const now = this.opts.clock.now().getTime();
    const rs = await this.#client.execute({
      sql: "SELECT l.job_id, l.attempt, l.worker_id, l.expires_at, w.name, w.last_heartbeat " +
        "FROM leases l LEFT JOIN workers w ON w.worker_id = l.worker_id " +
        "WHERE l.active = 1 AND l.expires_at <= ? LIMIT 500",
      args: [now],
    });
    let ended = 0;
    for (const row of rs.rows) {
      if (await this.store.run((uow) => this.#expire(uow, row, now))) ended++;
    }
    return ended;
  }

  async #expire(uow: UnitOfWork, row: Row, now: number): Promise<boolean> {
    const ref = { job_id: String(row.job_id), attempt: Number(row.attempt) };
    // Read again inside the unit: a heartbeat may have extended it, another instance ended it.
    const cur = await this.#client.execute({
      sql: "SELECT active, expires_at FROM leases WHERE job_id = ? AND attempt = ?",
      args: [ref.job_id, ref.attempt],
    });
    const lease = cur.rows[0];
    if (!lease || Number(lease.active) !== 1 || Number(lease.expires_at) > now) return false;
    const job = await uow.get(ref.job_id);
    if (job?.status === "started" && !job.process && !job.children) {
      // Claimed but never started (the worker died with the claim's answer in flight, say):
      // nothing ran, so no attempt is used up. The lease goes, and the job waits again at
      // once. Only if it is still unstarted when this commits: a start that got in first
      // keeps its lease.
      uow.also({
        sql: "DELETE FROM leases WHERE job_id = ? AND attempt = ? AND active = 1 AND " +
          "expires_at <= ? AND EXISTS (SELECT 1 FROM jobs WHERE job_id = ? AND " +
          "status = 'started' AND process IS NULL)",
        args: [ref.job_id, ref.attempt, now, ref.job_id],
      });
      return true;
    }
    this.end(uow, ref, "reaper");
    if (!job) return true;
    const worker = {
      worker_id: String(row.worker_id),
      worker_name: row.name === null ? null : String(row.name),
      last_heartbeat: row.last_heartbeat === null ? null : String(row.last_heartbeat),
      lease_expired_at: iso(Number(row.expires_at)),
    };
    if (isTerminal(job.status)) {
      // Cancelled while its worker was gone: its process can no longer be accounted for.
      if (job.process?.alive) await uow.execute(ref.job_id, lostExit(job));
      return true;
    }
    if (ref.attempt < job.max_attempts) {
      await uow.execute(ref.job_id, {
        type: "requeue",
        data: { attempt: ref.attempt, reason: "worker_lost", ...worker },
      });
      return true;
    }
    await uow.execute(ref.job_id, {
      type: "fail",
      reason: "worker_lost",
      error: `worker ${worker.worker_name ?? "?"} (${worker.worker_id}) stopped sending ` +
        `heartbeats: last heartbeat ${worker.last_heartbeat ?? "never"}, lease expired ` +
        `${worker.lease_expired_at} (attempt ${ref.attempt} of ${job.max_attempts})`,
      evidence: { ...worker, attempt: ref.attempt, max_attempts: job.max_attempts },
    });
    return true;
  }
}

/** The exit of a process whose worker was lost: nothing is known of how it ended. */
function lostExit(job: JobState) {
  return {
    type: "exit" as const,
    report: {
      exit_code: null,
      signal: null,
      artifact: null,
      stderr_tail: "",
      script_failure: null,
      stopped_for: null,
      stopped_with: null,
      group_gone: false,
      timeout_seconds: job.timeout_seconds,
    },
  };
}

function touchWorker(workerId: string, now: number): InStatement {
  return {
    sql: "UPDATE workers SET last_heartbeat = ? WHERE worker_id = ?",
    args: [iso(now), workerId],
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
