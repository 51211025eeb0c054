/**
 * The heartbeat loop: every heartbeat_seconds it extends the leases the worker holds and
 * hands back, per job, whether the API wants it cancelled or considers its lease lost.
 */
import { HeartbeatResponse } from "../contract/worker.ts";
import { type Outage, sleep } from "./backoff.ts";
import type { ApiClient } from "./client.ts";

export interface HeartbeatOptions {
  client: ApiClient;
  workerId: string;
  /** Read before each beat: the API may change it with its answer to register. */
  seconds(): number;
  leases(): { job_id: string; attempt: number; lease_token: string }[];
  /** One entry of each answer. */
  onJob(job: { job_id: string; cancel_requested: boolean; lost: boolean }): void;
  outage: Outage;
  /** Called after each failed beat once the API has been silent longer than the lease. */
  onSilence(silentMs: number): void;
  warn(message: string): void;
  /** Ends the loop, cutting a wait or a beat in flight short. */
  signal: AbortSignal;
}

/**
 * Beats until `signal` aborts. A beat that fails is not retried sooner: the lease is several
 * heartbeats long, and the next beat carries the same leases.
 */
export async function heartbeat(opts: HeartbeatOptions): Promise<void> {
  const { client, signal } = opts;
  for (;;) {
    await sleep(opts.seconds() * 1000, signal);
    if (signal.aborted) return;
    const answer = await client.post(
      "/worker/heartbeat",
      { worker_id: opts.workerId, leases: opts.leases() },
      HeartbeatResponse,
      { signal, timeoutMs: Math.max(5, opts.seconds()) * 1000 },
    );
    if (answer.kind === "aborted") return;
    if (answer.kind === "unreachable") {
      opts.outage.failed("heartbeat", answer.error, opts.seconds() * 1000);
      opts.onSilence(opts.outage.silentMs());
    } else if (answer.kind === "refused") {
      opts.warn(`the API refused the heartbeat (${answer.status}): ${answer.message}`);
    } else {
      opts.outage.over();
      for (const job of answer.value.jobs) opts.onJob(job);
    }
  }
}
