/**
 * The narrow contract between the job log and whatever runs jobs. The local supervisor uses
 * the in-process implementation below; a remote worker can implement the same calls over
 * HTTP (claim with a lease, report events back) without the supervisor changing.
 */
import type { EventStore } from "../db/event_store.ts";
import type { ExitReport, OutputEvent } from "./decide.ts";
import type { EventOf, FailureReason } from "./events.ts";
import { isWaiting, type JobState } from "./state.ts";

export type StartInfo = EventOf<"started">["data"];

export interface WorkerPort {
  /** Up to `max` waiting jobs, oldest first, now owned by the caller; empty when none. */
  claim(max: number): Promise<JobState[]>;
  /** Records the started process; `cancelled` tells the worker to stop it at once. */
  started(jobId: string, info: StartInfo): Promise<{ cancelled: boolean }>;
  output(jobId: string, events: OutputEvent[]): Promise<void>;
  exited(jobId: string, report: ExitReport): Promise<void>;
  fail(jobId: string, reason: FailureReason, error: string): Promise<void>;
  /** False once the job is known to be lost to this worker (a remote lease); else true. */
  holds?(jobId: string): boolean;
  /** Calls back when work is queued and when a job is cancelled. */
  watch(listener: { queued(): void; cancelled(jobId: string): void }): void;
}

/** The in-process port over the event store. */
export class LocalPort implements WorkerPort {
  #queue: string[];

  constructor(readonly store: EventStore) {
    this.#queue = store.activeJobs().filter(isWaiting)
      .sort((a, b) => a.submitted_seq - b.submitted_seq).map((j) => j.job_id);
  }

  async claim(max: number): Promise<JobState[]> {
    const claimed: JobState[] = [];
    while (this.#queue.length && claimed.length < max) {
      const job = await this.store.load(this.#queue.shift()!);
      if (job && isWaiting(job)) claimed.push(job);
    }
    return claimed;
  }

  async started(jobId: string, info: StartInfo): Promise<{ cancelled: boolean }> {
    return await this.store.run(async (uow) => {
      await uow.execute(jobId, { type: "start", data: info });
      return { cancelled: (await uow.get(jobId))?.status === "cancelled" };
    });
  }

  async output(jobId: string, events: OutputEvent[]): Promise<void> {
    await this.store.run((uow) => uow.execute(jobId, { type: "output", events }));
  }

  async exited(jobId: string, report: ExitReport): Promise<void> {
    await this.store.run((uow) => uow.execute(jobId, { type: "exit", report }));
  }

  async fail(jobId: string, reason: FailureReason, error: string): Promise<void> {
    await this.store.run((uow) => uow.execute(jobId, { type: "fail", reason, error }));
  }

  watch(listener: { queued(): void; cancelled(jobId: string): void }): void {
    this.store.onCommit((events, states) => {
      let queued = false;
      for (const e of events) {
        const state = states.get(e.job_id);
        if (e.event.type === "submitted" && state && isWaiting(state)) {
          this.#queue.push(e.job_id);
          queued = true;
        }
        if (e.event.type === "cancelled") listener.cancelled(e.job_id);
      }
      if (queued) listener.queued();
    });
  }
}
