/**
 * The worker endpoints of hosted mode (`/worker/*`, WORKER_TOKEN only). The protocol and
 * its messages are in contract/worker.ts; leases and their fence in queue/leases.ts.
 */
import { Hono } from "hono";
import {
  ClaimRequest,
  ExitRequest,
  FailRequest,
  HeartbeatRequest,
  LeaveRequest,
  OutputRequest,
  RegisterRequest,
  ReleaseRequest,
  StartedRequest,
} from "../contract/worker.ts";
import type { Clock } from "../db/clock.ts";
import type { EventStore } from "../db/event_store.ts";
import type { Command, OutputEvent } from "../jobs/decide.ts";
import { type LeaseRef, Leases, OffsetGapError } from "../queue/leases.ts";
import type { Reaper } from "../queue/reaper.ts";
import { registerWorker, stopWorker } from "../queue/workers.ts";
import { check, jobIdParam, readJson } from "./input.ts";
import { ConflictError, NotFoundError } from "../errors.ts";

export interface WorkerRouteDeps {
  store: EventStore;
  leases: Leases;
  reaper: Reaper;
  clock: Clock;
  newId: () => string;
  leaseSeconds: number;
  lifecycle?: { shuttingDown: boolean };
}

const MAX_WAIT_MS = 20_000;
/** Another instance's submissions wake no one here: a waiting claim looks again this often. */
const CLAIM_POLL_MS = 500;

export function workerRoutes(deps: WorkerRouteDeps): Hono {
  const app = new Hono();
  const wake = wakeOnWork(deps.store);
  const oneAtATime = perJob();
  const heartbeatSeconds = Math.min(1, deps.leaseSeconds / 3);

  app.post("/register", async (c) => {
    const body = check(RegisterRequest, await readJson(c, true), "request body");
    const worker_id = `${body.name.replace(/[^A-Za-z0-9._-]/g, "_")}-${deps.newId().slice(0, 8)}`;
    await registerWorker(deps.store.database.client, deps.clock, { ...body, worker_id });
    await deps.reaper.maybe();
    return c.json({
      worker_id,
      lease_seconds: deps.leaseSeconds,
      heartbeat_seconds: heartbeatSeconds,
    });
  });

  app.post("/claim", async (c) => {
    const body = check(ClaimRequest, await readJson(c, true), "request body");
    const deadline = Date.now() + Math.min(MAX_WAIT_MS, (body.wait_seconds ?? 20) * 1000);
    // A worker that goes away mid-poll may still be given jobs: it claims again with a new
    // claim id, and the leases of the answer it never read expire like any lost worker's.
    for (;;) {
      await deps.reaper.maybe();
      // The worker hung up (it is stopping): leases it would never read are not taken.
      if (c.req.raw.signal.aborted) return c.json({ jobs: [] });
      const jobs = await deps.leases.claim(body.worker_id, body.claim_id, body.max);
      const left = deadline - Date.now();
      // A server shutting down answers at once rather than hold its shutdown for 20 s.
      if (jobs.length || left <= 0 || deps.lifecycle?.shuttingDown) return c.json({ jobs });
      await wake(Math.min(left, CLAIM_POLL_MS));
    }
  });

  app.post("/leave", async (c) => {
    const body = check(LeaveRequest, await readJson(c, true), "request body");
    if (!await stopWorker(deps.store.database.client, deps.clock, body.worker_id)) {
      throw new NotFoundError(`no worker with id ${body.worker_id.slice(0, 200)}`);
    }
    // Its leases expired just now: their jobs wait again at once.
    await deps.reaper.maybe();
    return c.json({ ok: true });
  });

  app.post("/heartbeat", async (c) => {
    const body = check(HeartbeatRequest, await readJson(c, true), "request body");
    const jobs = await deps.leases.heartbeat(body.worker_id, body.leases);
    void deps.reaper.maybe();
    return c.json({ lease_seconds: deps.leaseSeconds, jobs });
  });

  app.post("/jobs/:job_id/started", async (c) => {
    const job_id = jobIdParam(c);
    const body = check(StartedRequest, await readJson(c, true), "request body");
    const ref: LeaseRef = { job_id, attempt: body.attempt, lease_token: body.lease_token };
    const cancelled = await deps.store.run(async (uow) => {
      const { job } = await deps.leases.hold(uow, ref);
      // Sent again because its answer was lost: the start is recorded already.
      if (job.process && (job.process.attempt ?? 1) === body.attempt) {
        return job.status === "cancelled";
      }
      await uow.execute(job_id, {
        type: "start",
        data: { ...body.process, attempt: body.attempt },
      });
      return (await uow.get(job_id))?.status === "cancelled";
    });
    return c.json({ cancelled });
  });

  app.post("/jobs/:job_id/output", async (c) => {
    const job_id = jobIdParam(c);
    const body = check(OutputRequest, await readJson(c, true), "request body");
    const ref: LeaseRef = { job_id, attempt: body.attempt, lease_token: body.lease_token };
    const next_offset = await oneAtATime(job_id, () =>
      deps.store.run(async (uow) => {
        const { job, offset } = await deps.leases.hold(uow, ref);
        // Output only follows its attempt's recorded start: stored before it, it would be
        // dropped (no process) while its offset counted it as held.
        if (!job.process || (job.process.attempt ?? 1) !== body.attempt) {
          throw new ConflictError(
            `job ${job_id}: output of attempt ${body.attempt} before its start`,
            [
              { code: "not_started" },
            ],
          );
        }
        if (body.offset > offset) throw new OffsetGapError(job_id, offset, body.offset);
        // A chunk sent again (its answer was lost) is stored once: skip what is already held.
        const fresh = body.events.slice(offset - body.offset) as OutputEvent[];
        if (fresh.length === 0) return offset;
        await uow.execute(job_id, { type: "output", events: fresh });
        deps.leases.advance(uow, ref, fresh.length);
        return offset + fresh.length;
      }));
    return c.json({ next_offset });
  });

  /**
   * A final report (exit, fail) ends its lease with the job's last events. Sent again after
   * its answer was lost, it finds its own lease ended: done, nothing more to record.
   */
  const finalReport = (ref: LeaseRef, command: Command) =>
    deps.store.run(async (uow) => {
      if (await deps.leases.endedBy(ref)) return;
      await deps.leases.hold(uow, ref);
      await uow.execute(ref.job_id, command);
      deps.leases.end(uow, ref, "report");
    });

  app.post("/jobs/:job_id/exit", async (c) => {
    const job_id = jobIdParam(c);
    const body = check(ExitRequest, await readJson(c, true), "request body");
    const ref: LeaseRef = { job_id, attempt: body.attempt, lease_token: body.lease_token };
    await finalReport(ref, { type: "exit", report: body.report });
    return c.json({ ok: true });
  });

  app.post("/jobs/:job_id/fail", async (c) => {
    const job_id = jobIdParam(c);
    const body = check(FailRequest, await readJson(c, true), "request body");
    const ref: LeaseRef = { job_id, attempt: body.attempt, lease_token: body.lease_token };
    await finalReport(ref, { type: "fail", reason: body.reason, error: body.error });
    return c.json({ ok: true });
  });

  app.post("/jobs/:job_id/release", async (c) => {
    const job_id = jobIdParam(c);
    const body = check(ReleaseRequest, await readJson(c, true), "request body");
    const ref: LeaseRef = { job_id, attempt: body.attempt, lease_token: body.lease_token };
    await deps.store.run(async (uow) => {
      const { job } = await deps.leases.hold(uow, ref);
      if (job.process && (job.process.attempt ?? 1) === body.attempt) {
        throw new ConflictError(
          `job ${job_id}: attempt ${body.attempt} has started; report its exit instead`,
          [{ code: "started" }],
        );
      }
      deps.leases.release(uow, ref);
    });
    // It waits again: a claim waiting on this instance may take it now.
    wake.now();
    return c.json({ ok: true });
  });

  return app;
}

/**
 * Runs a job's units one after another. A unit reads the lease's committed offset, not what
 * an earlier unit of the same batch staged: a chunk resent while its first send was still
 * in flight would share that batch and be stored twice. Across instances no such wait is
 * needed: the two units append at the same version, and the loser runs again.
 */
function perJob(): <T>(jobId: string, fn: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return (jobId, fn) => {
    const run = (tails.get(jobId) ?? Promise.resolve()).then(fn);
    const tail = run.catch(() => {});
    tails.set(jobId, tail);
    void tail.then(() => {
      if (tails.get(jobId) === tail) tails.delete(jobId);
    });
    return run;
  };
}

/** A wait that ends early when this instance commits work a worker could take. */
function wakeOnWork(store: EventStore): ((ms: number) => Promise<void>) & { now(): void } {
  const waiting = new Set<() => void>();
  const now = () => {
    for (const wake of [...waiting]) wake();
  };
  store.onCommit((events) => {
    if (events.some((e) => e.event.type === "submitted" || e.event.type === "requeued")) now();
  });
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiting.add(done);
    });
  return Object.assign(wait, { now });
}
