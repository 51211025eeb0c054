/**
 * The WorkerPort over HTTP (contract/worker.ts): the remote worker's Supervisor claims jobs
 * from the hosted API and reports on them with the lease each claim handed out.
 *
 * Invariants:
 * - A report never throws for want of the API: it is retried (backoff up to 30 s) until the
 *   API answers, because a running job must outlive an API restart without losing a line.
 *   The OutputCollector meanwhile stops reading the job's pipes once its backlog is full.
 * - Once a lease is known lost, the job's process is killed at once and nothing more is
 *   reported about it: another attempt may own the job now.
 * - Every claimed job ends in an `exit` or a `fail`, or, claimed and never started because the
 *   worker shut down (close()), is released to wait for the next claim; otherwise it would wait
 *   for its lease to expire.
 */
import { basename, join } from "node:path";
import { redactUrl } from "../config.ts";
import { z } from "zod";
import {
  ClaimResponse,
  Ok,
  OutputResponse,
  RegisterResponse,
  StartedResponse,
} from "../contract/worker.ts";
import type { ExitReport, OutputEvent } from "../jobs/decide.ts";
import { type FailureReason, publicLog } from "../jobs/events.ts";
import { isSameProcess, signalGroup } from "../jobs/process.ts";
import type { JobState } from "../jobs/state.ts";
import type { StartInfo, WorkerPort } from "../jobs/worker_port.ts";
import { Backoff, Outage, seconds, sleep } from "./backoff.ts";
import { heartbeat } from "./heartbeat.ts";
import type { Answer, ApiClient } from "./client.ts";

export interface HttpPortOptions {
  name: string;
  /** The worker's MODELS_DIR, absolute: artifact paths the API sends are on its machine. */
  modelsDir: string;
  log(message: string): void;
  /** Problems: the API unreachable, a lease lost, a report refused. */
  warn(message: string): void;
}

/** Thrown when the API refuses WORKER_TOKEN: no retry can help, the operator must fix it. */
export class TokenRefused extends Error {}

/** The lease of a held job and where its reports stand. */
interface Held {
  attempt: number;
  lease_token: string;
  /** Output events the API holds for this attempt (the next chunk's `offset`). */
  offset: number;
  /** The supervisor spawned it (`started` was called). */
  started: boolean;
  lost: boolean;
  process: { pid: number; start_ticks: number | null } | null;
  /** Settles once `started` has been answered: output waits for it (the API refuses it before). */
  ack: PromiseWithResolvers<void>;
}

type Listener = { queued(): void; cancelled(jobId: string): void };
type Refusal = Extract<Answer<unknown>, { kind: "refused" }>;

const CLAIM_WAIT_SECONDS = 20;
/** An empty claim answered sooner than this waits out the rest: never a busy loop. */
const MIN_CLAIM_MS = 1000;
/** Resends after `offset_gap` per chunk: more means the API and worker disagree for good. */
const MAX_RESYNCS = 3;
const CONTRACT_MAX_ERROR = 64 * 1024;

export class HttpPort implements WorkerPort {
  #jobs = new Map<string, Held>();
  #listener: Listener | null = null;
  #closing = new AbortController();
  /** Aborted first when stopping: no claim may take a job (even one this stop requeues). */
  #claimsOff = new AbortController();
  #claiming: Promise<unknown> | null = null;
  #heartbeat: Promise<void> | null = null;
  #workerId: string | null = null;
  #heartbeatSeconds = 10;
  #leaseSeconds = 30;
  #outage: Outage;

  constructor(readonly client: ApiClient, readonly opts: HttpPortOptions) {
    this.#outage = new Outage(client.baseUrl, opts.warn);
  }

  /** The id the API gave this worker; null before register(). */
  get workerId(): string | null {
    return this.#workerId;
  }

  /**
   * Registers with the API, retrying while it cannot be reached. Throws TokenRefused on 401,
   * and an Error when the API refuses otherwise or close() is called meanwhile.
   */
  async register(
    modelTypes: string[],
    maxConcurrent: number,
  ): Promise<z.infer<typeof RegisterResponse>> {
    const url = this.client.baseUrl;
    const backoff = new Backoff();
    const body = { name: this.opts.name, model_types: modelTypes, max_concurrent: maxConcurrent };
    for (;;) {
      const answer = await this.client.post("/worker/register", body, RegisterResponse, {
        signal: this.#closing.signal,
      });
      if (answer.kind === "ok") {
        this.#workerId = answer.value.worker_id;
        this.#heartbeatSeconds = answer.value.heartbeat_seconds;
        this.#leaseSeconds = answer.value.lease_seconds;
        return answer.value;
      }
      if (answer.kind === "aborted") throw new Error("closed while registering");
      if (answer.kind === "unreachable") {
        // Logged every time: the delays grow, and a worker that cannot start must say why.
        const delay = backoff.next();
        this.opts.warn(
          `cannot reach TRAINER_URL=${redactUrl(url)}: ${answer.error}; retrying in ${
            seconds(delay)
          }`,
        );
        await sleep(delay, this.#closing.signal);
        continue;
      }
      if (answer.status === 401) {
        throw new TokenRefused(
          `WORKER_TOKEN was refused by ${url}: it must equal the server's WORKER_TOKEN`,
        );
      }
      const hint = answer.status === 404 ? " (is the server running with WORKERS=remote?)" : "";
      throw new Error(
        `${redactUrl(url)} refused to register this worker: ${answer.message}${hint}`,
      );
    }
  }

  async claim(max: number): Promise<JobState[]> {
    if (this.#claimsOff.signal.aborted || !this.#workerId) return [];
    const claiming = this.#claim(max);
    this.#claiming = claiming;
    try {
      return await claiming;
    } finally {
      this.#claiming = null;
    }
  }

  /** One claim, retried with the same claim_id: a lost answer then returns the same leases. */
  async #claim(max: number): Promise<JobState[]> {
    const signal = this.#claimsOff.signal;
    const body = {
      worker_id: this.#workerId,
      claim_id: crypto.randomUUID(),
      max,
      wait_seconds: CLAIM_WAIT_SECONDS,
    };
    const backoff = new Backoff();
    const began = Date.now();
    for (;;) {
      const answer = await this.client.post("/worker/claim", body, ClaimResponse, {
        signal,
        timeoutMs: (CLAIM_WAIT_SECONDS + 15) * 1000,
      });
      if (answer.kind === "aborted") return [];
      if (answer.kind === "ok") {
        this.#outage.over();
        const jobs = answer.value.jobs.map((c) => this.#adopt(c));
        if (jobs.length === 0 && !signal.aborted) {
          await sleep(began + MIN_CLAIM_MS - Date.now(), signal);
          // The supervisor claims again, for the slots free by then.
          if (!signal.aborted) this.#listener?.queued();
        }
        return jobs;
      }
      const delay = backoff.next();
      if (answer.kind === "unreachable") this.#outage.failed("claim", answer.error, delay);
      else {this.opts.warn(
          `claim refused (${answer.status}): ${answer.message}; retrying in ${seconds(delay)}`,
        );}
      await sleep(delay, signal);
      if (signal.aborted) return [];
    }
  }

  /** Holds a claimed job's lease and gives the supervisor the job with a local artifact path. */
  #adopt(c: z.infer<typeof ClaimResponse>["jobs"][number]): JobState {
    this.#jobs.set(c.job.job_id, {
      attempt: c.attempt,
      lease_token: c.lease_token,
      offset: 0,
      started: false,
      lost: false,
      process: null,
      ack: Promise.withResolvers<void>(),
    });
    const path = c.job.artifact_path;
    // The API's path is on its machine; the model is written under this worker's MODELS_DIR.
    const artifact_path = path === null ? null : join(this.opts.modelsDir, basename(path));
    return { ...c.job, artifact_path } as unknown as JobState;
  }

  async started(jobId: string, info: StartInfo): Promise<{ cancelled: boolean }> {
    const held = this.#jobs.get(jobId);
    if (held) {
      held.started = true;
      held.process = { pid: info.pid, start_ticks: info.start_ticks };
      if (held.lost) this.#killLost(held);
    }
    const process = { ...info, worker_name: this.opts.name, attempt: held?.attempt };
    const answer = await this.#report(jobId, "started", { process }, StartedResponse)
      .finally(() => held?.ack.resolve());
    if (answer === null) return { cancelled: true };
    if (answer.kind === "refused") throw new Error(refusal("started", answer));
    return answer.value;
  }

  async output(jobId: string, chunks: OutputEvent[]): Promise<void> {
    await this.#jobs.get(jobId)?.ack.promise;
    // The contract carries log lines as arrays (contract/worker.ts), however they were read.
    const events = chunks.map((e) => e.type === "log" ? { ...e, data: publicLog(e.data) } : e);
    for (let resyncs = 0;; resyncs++) {
      const held = this.#jobs.get(jobId);
      const answer = await this.#report(
        jobId,
        "output",
        { offset: held?.offset, events },
        OutputResponse,
      );
      if (answer === null) return;
      if (answer.kind === "ok") {
        held!.offset = answer.value.next_offset;
        return;
      }
      if (answer.code !== "offset_gap" || answer.expected === null || resyncs >= MAX_RESYNCS) {
        throw new Error(refusal("output", answer));
      }
      this.opts.warn(
        `job ${jobId}: the API expects output offset ${answer.expected}, not ${
          held!.offset
        }; resending`,
      );
      held!.offset = answer.expected;
    }
  }

  async exited(jobId: string, report: ExitReport): Promise<void> {
    try {
      const answer = await this.#report(jobId, "exit", { report }, Ok);
      if (answer?.kind === "refused") throw new Error(refusal("exit", answer));
    } finally {
      this.#jobs.delete(jobId);
    }
  }

  async fail(jobId: string, reason: FailureReason, error: string): Promise<void> {
    try {
      const body = { reason, error: error.slice(0, CONTRACT_MAX_ERROR) };
      const answer = await this.#report(jobId, "fail", body, Ok);
      if (answer?.kind === "refused") throw new Error(refusal("fail", answer));
    } finally {
      this.#jobs.delete(jobId);
    }
  }

  /** Gives back a claim that never started: the job waits for the next claim, no attempt used. */
  async release(jobId: string): Promise<void> {
    try {
      const answer = await this.#report(jobId, "release", {}, Ok);
      if (answer?.kind === "refused") throw new Error(refusal("release", answer));
    } finally {
      this.#jobs.delete(jobId);
    }
  }

  /**
   * Sends one report about a held job, fenced by its lease, until the API answers. Null when
   * the job is not held or its lease is lost (then it is dropped and its process killed).
   */
  async #report<T>(
    jobId: string,
    route: "started" | "output" | "exit" | "fail" | "release",
    body: Record<string, unknown>,
    schema: z.ZodType<T>,
  ): Promise<{ kind: "ok"; value: T } | Refusal | null> {
    const path = `/worker/jobs/${encodeURIComponent(jobId)}/${route}`;
    const backoff = new Backoff();
    for (;;) {
      const held = this.#jobs.get(jobId);
      if (!held || held.lost) return null;
      if (this.#outage.silentMs() > this.#leaseMs()) {
        // The API has let the lease go by now: this report can never be accepted, and the
        // job may run elsewhere. Waiting on would also hang a shutdown.
        this.#lose(jobId, `no answer from the API for longer than the lease`);
        return null;
      }
      const lease = { attempt: held.attempt, lease_token: held.lease_token };
      // Not abortable: reports made while shutting down (interrupted jobs) must arrive.
      const answer = await this.client.post(path, { ...lease, ...body }, schema);
      if (answer.kind === "ok") {
        this.#outage.over();
        return answer;
      }
      if (answer.kind === "refused") {
        if (answer.status !== 409 || answer.code !== "lease_lost") return answer;
        // A release sent again after its answer was lost finds its lease gone: given back.
        if (route === "release") return null;
        this.#lose(jobId, `the API refused its ${route} report: ${answer.message}`);
        return null;
      }
      const delay = backoff.next();
      if (answer.kind === "unreachable") {
        this.#outage.failed(`${route} of job ${jobId}`, answer.error, delay);
      }
      await this.#outage.retryAfter(delay);
    }
  }

  watch(listener: Listener): void {
    this.#listener = listener;
    this.#heartbeat ??= heartbeat({
      client: this.client,
      workerId: this.#workerId ?? "",
      seconds: () => this.#heartbeatSeconds,
      leases: () =>
        [...this.#jobs].filter(([, h]) => !h.lost)
          .map(([job_id, h]) => ({ job_id, attempt: h.attempt, lease_token: h.lease_token })),
      onJob: (job) => {
        if (job.lost) this.#lose(job.job_id, "the heartbeat says its lease is lost");
        else if (job.cancel_requested) this.#listener?.cancelled(job.job_id);
      },
      outage: this.#outage,
      onSilence: (silentMs) => {
        if (silentMs <= this.#leaseMs()) return;
        for (const id of this.#jobs.keys()) {
          this.#lose(id, `no heartbeat got through for ${Math.round(silentMs / 1000)} s`);
        }
      },
      warn: this.opts.warn,
      signal: this.#closing.signal,
    });
  }

  /** True while this worker holds the job's lease, as far as it knows. */
  holds(jobId: string): boolean {
    const held = this.#jobs.get(jobId);
    return !!held && !held.lost;
  }

  /** The lease's length, plus a margin for the API's reaper and clock. */
  #leaseMs(): number {
    return (this.#leaseSeconds + 2) * 1000;
  }

  /** The lease is gone: another attempt may own the job. Stop the process now, report no more. */
  #lose(jobId: string, why: string): void {
    const held = this.#jobs.get(jobId);
    if (!held || held.lost) return;
    held.lost = true;
    this.opts.warn(`job ${jobId}: lease lost (${why}); killing its process and dropping the job`);
    // The supervisor records the stop (its report is dropped); SIGKILL at once skips the
    // grace a cancel would give, since the job's next attempt may already be running.
    this.#listener?.cancelled(jobId);
    this.#killLost(held);
  }

  #killLost(held: Held): void {
    const p = held.process;
    if (p && isSameProcess(p.pid, p.start_ticks)) signalGroup(p.pid, "SIGKILL");
  }

  /**
   * Ends the claim in flight and takes no more. Called before the supervisor stops its jobs:
   * a job requeued by this stop must go to another worker, not back to this one's open claim.
   */
  async stopClaiming(): Promise<void> {
    this.#claimsOff.abort();
    await this.#claiming?.catch(() => {});
  }

  /**
   * Stops claiming and heartbeats, then gives back the jobs claimed but never started. Call
   * after the supervisor's shutdown(), which ends the started ones.
   */
  async close(): Promise<void> {
    await this.stopClaiming();
    this.#closing.abort();
    await this.#heartbeat;
    const unstarted = [...this.#jobs].filter(([, h]) => !h.started && !h.lost).map(([id]) => id);
    await Promise.all(
      unstarted.map((id) =>
        this.release(id).catch((e) =>
          this.opts.warn(`job ${id}: could not give back its unstarted claim (${e})`)
        )
      ),
    );
    // Last: from now on the API counts this worker as gone, not live until its lease runs out.
    // Once only; if the API does not answer, the heartbeat's age tells the same a lease later.
    if (this.#workerId) {
      const answer = await this.client.post("/worker/leave", { worker_id: this.#workerId }, Ok, {
        timeoutMs: 5_000,
      });
      if (answer.kind !== "ok") this.opts.warn(`could not tell the API this worker stopped`);
    }
  }
}

function refusal(route: string, answer: Refusal): string {
  const code = answer.code ? ` ${answer.code}` : "";
  return `the API refused the ${route} report (${answer.status}${code}): ${answer.message}`;
}
