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
  const answers = batcher<Answer>((batch) => post(channel, batch, "answers", notSent));
  const serve = async (call: Partial<Call>) => {
    if (typeof call.id !== "number" || !call.method || !(call.method in handlers)) return;
    try {
      const value = await handlers[call.method](...(call.args ?? []) as never[]);
      answers({ id: call.id, ok: true, value });
    } catch (e) {
      answers({ id: call.id, ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  };
  channel.addEventListener("message", (event) => {
    const calls = (event.data as { calls?: unknown }).calls;
    // Served in order and without waiting in between: the store queues their units in call
    // order and commits those that arrive together in one transaction.
    if (Array.isArray(calls)) { for (const call of calls) void serve(call); }
  });
}

/**
 * An answer that cannot be cloned (a value nested too deep for the structured clone) must
 * still answer the call: a caller waiting forever wedges the supervisor.
 */
function notSent(answer: Answer, e: unknown): Answer {
  return { id: answer.id, ok: false, error: `answer not sent: ${e}` };
}

/**
 * Collects what is sent in one turn of the event loop (up to its microtask checkpoint) and
 * hands it over as one batch. Each message across the thread costs a structured clone, a
 * wake-up and an event dispatch on both sides; per job that was several messages (claim,
 * start, exit and their answers), a fifth of the main thread's JavaScript time in profiles.
 */
function batcher<T>(send: (batch: T[]) => void): (item: T) => void {
  let batch: T[] = [];
  return (item) => {
    batch.push(item);
    if (batch.length > 1) return;
    queueMicrotask(() => {
      const items = batch;
      batch = [];
      send(items);
    });
  };
}

/**
 * Posts `items` as one message; when the batch cannot be cloned, posts them one by one so that
 * only the item at fault fails: `failed` handles it, and what it returns is sent instead.
 */
function post<T>(
  channel: Channel,
  items: T[],
  key: "calls" | "answers",
  failed: (item: T, e: unknown) => T | null,
): void {
  try {
    channel.postMessage({ [key]: items });
    return;
  } catch {
    // One of them cannot be cloned: found below.
  }
  for (const item of items) {
    try {
      channel.postMessage({ [key]: [item] });
    } catch (e) {
      const instead = failed(item, e);
      if (instead !== null) channel.postMessage({ [key]: [instead] });
    }
  }
}

/** Supervisor thread: a WorkerPort whose calls are answered by the main thread. */
export class ThreadPort implements WorkerPort {
  #next = 1;
  #waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #listener: { queued(): void; cancelled(jobId: string): void } | null = null;
  #calls = batcher<Call>((calls) =>
    post(this.channel, calls, "calls", (call, e) => {
      // Not clonable: the call fails like any other, and its waiter must not stay behind.
      const waiter = this.#waiting.get(call.id);
      this.#waiting.delete(call.id);
      waiter?.reject(e instanceof Error ? e : new Error(String(e)));
      return null;
    })
  );

  constructor(readonly channel: Channel) {
    channel.addEventListener("message", (event) => {
      const data = event.data as { answers?: Answer[]; notice?: string; jobId?: string };
      if (data.notice === "queued") this.#listener?.queued();
      if (data.notice === "cancelled" && data.jobId) this.#listener?.cancelled(data.jobId);
      for (const answer of data.answers ?? []) {
        const waiter = this.#waiting.get(answer.id);
        this.#waiting.delete(answer.id);
        if (answer.ok) waiter?.resolve(answer.value);
        else waiter?.reject(new Error(answer.error));
      }
    });
  }

  #call<T>(method: Method, ...args: unknown[]): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#calls({ id, method, args });
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
