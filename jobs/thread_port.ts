/**
 * The WorkerPort across threads. The supervisor runs in a Worker so that reading the
 * children's pipes never waits on the main thread, whose embedded libSQL driver blocks
 * while it commits. Calls travel as messages; the main thread serves them from its
 * LocalPort. This is the same contract a remote worker implements over HTTP.
 */
import type { ExitReport, OutputEvent } from "./decide.ts";
import type { FailureReason } from "./events.ts";
import type { JobState } from "./state.ts";
import type { StartInfo, WorkerPort } from "./worker_port.ts";
import type { Runtime } from "../models/runtime.ts";

type Method = "claim" | "started" | "output" | "exited" | "fail" | "runtime";
interface Call {
  id: number;
  method: Method;
  args: unknown[];
}
type Answer = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };
type Notice = { notice: "queued" } | { notice: "cancelled"; jobId: string };

/** A thread's end of a message channel (a Worker, or `self` inside one). */
export interface Channel {
  postMessage(message: unknown): void;
  addEventListener(type: "message", listener: (event: MessageEvent) => void): void;
}

/** Main thread: answers the supervisor thread's calls from `port` and forwards notices. */
export function servePort(
  port: WorkerPort,
  runtime: (type: string) => Promise<Runtime>,
  channel: Channel,
): void {
  const handlers: Record<Method, (...args: never[]) => Promise<unknown>> = {
    claim: (max: number) => port.claim(max),
    started: (id: string, info: StartInfo) => port.started(id, info),
    output: (id: string, events: OutputEvent[]) => port.output(id, events),
    exited: (id: string, report: ExitReport) => port.exited(id, report),
    fail: (id: string, reason: FailureReason, error: string) => port.fail(id, reason, error),
    runtime: (type: string) => runtime(type),
  };
  port.watch({
    queued: () => channel.postMessage({ notice: "queued" } satisfies Notice),
    cancelled: (jobId) => channel.postMessage({ notice: "cancelled", jobId } satisfies Notice),
  });
  channel.addEventListener("message", async (event) => {
    const call = event.data as Partial<Call>;
    if (typeof call.id !== "number" || !call.method || !(call.method in handlers)) return;
    let answer: Answer;
    try {
      const value = await handlers[call.method](...(call.args ?? []) as never[]);
      answer = { id: call.id, ok: true, value };
    } catch (e) {
      answer = { id: call.id, ok: false, error: e instanceof Error ? e.message : String(e) };
    }
    try {
      channel.postMessage(answer);
    } catch (e) {
      // An answer that cannot be cloned (a value nested too deep for the structured clone)
      // must still answer the call: a caller waiting forever wedges the supervisor.
      channel.postMessage(
        { id: call.id, ok: false, error: `answer not sent: ${e}` } satisfies Answer,
      );
    }
  });
}

/** Supervisor thread: a WorkerPort whose calls are answered by the main thread. */
export class ThreadPort implements WorkerPort {
  #next = 1;
  #waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #listener: { queued(): void; cancelled(jobId: string): void } | null = null;

  constructor(readonly channel: Channel) {
    channel.addEventListener("message", (event) => {
      const data = event.data as {
        id?: number;
        ok?: boolean;
        value?: unknown;
        error?: string;
        notice?: string;
        jobId?: string;
      };
      if (data.notice === "queued") this.#listener?.queued();
      if (data.notice === "cancelled" && data.jobId) this.#listener?.cancelled(data.jobId);
      if (typeof data.id !== "number") return;
      const waiter = this.#waiting.get(data.id);
      this.#waiting.delete(data.id);
      if (data.ok) waiter?.resolve(data.value);
      else waiter?.reject(new Error(data.error));
    });
  }

  #call<T>(method: Method, ...args: unknown[]): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        this.channel.postMessage({ id, method, args } satisfies Call);
      } catch (e) {
        // Not clonable: the call fails like any other, and its waiter must not stay behind.
        this.#waiting.delete(id);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  claim(max: number): Promise<JobState[]> {
    return this.#call("claim", max);
  }
  started(jobId: string, info: StartInfo): Promise<{ cancelled: boolean }> {
    return this.#call("started", jobId, info);
  }
  output(jobId: string, events: OutputEvent[]): Promise<void> {
    return this.#call("output", jobId, events);
  }
  exited(jobId: string, report: ExitReport): Promise<void> {
    return this.#call("exited", jobId, report);
  }
  fail(jobId: string, reason: FailureReason, error: string): Promise<void> {
    return this.#call("fail", jobId, reason, error);
  }
  /** The main thread's runtime check of a model type (one Python probe per server). */
  runtime(type: string): Promise<Runtime> {
    return this.#call("runtime", type);
  }
  watch(listener: { queued(): void; cancelled(jobId: string): void }): void {
    this.#listener = listener;
  }
}
