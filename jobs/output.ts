/**
 * Turns a child's stdout and stderr into job events. Lines are read as fast as the child
 * writes them and buffered in memory in arrival order; a background flusher appends them in
 * batches. The reader never waits on the database, so a slow disk cannot stall training,
 * and no line is dropped: a failed append is retried with the lines kept in order.
 */
import { z } from "zod";
import { resolve } from "node:path";
import type { OutputEvent } from "./decide.ts";
import { type FailureReason, FailureReason as FailureReasonSchema } from "./events.ts";
import { isInside } from "../models/artifacts.ts";

export const PROTOCOL_PREFIX = "@@trainer ";
const MAX_LINE = 64 * 1024;
const STDERR_TAIL = 20;
const MAX_EVENT_BYTES = 256 * 1024;

const Metrics = z.record(z.string(), z.unknown());
const ProtocolMessage = z.discriminatedUnion("event", [
  z.object({
    event: z.literal("progress"),
    step: z.number().nullish(),
    total: z.number().nullish(),
    message: z.string().nullish(),
    metrics: Metrics.nullish(),
  }),
  z.object({ event: z.literal("metrics"), metrics: Metrics }),
  z.object({ event: z.literal("artifact"), path: z.string().min(1) }),
  z.object({ event: z.literal("error"), reason: z.string().nullish(), message: z.string() }),
]);

export type OutputSink = (events: OutputEvent[]) => Promise<void>;

export interface CollectorOptions {
  modelsDir: string;
  flushMs?: number;
  maxBatchBytes?: number;
}

export class OutputCollector {
  #pending: OutputEvent[] = [];
  #pendingBytes = 0;
  #lastBytes = 0;
  #flushing: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #failures = 0;
  readonly stderrTail: string[] = [];
  artifact: string | null = null;
  scriptFailure: { reason: FailureReason; message: string } | null = null;
  lines = 0;

  constructor(readonly sink: OutputSink, readonly opts: CollectorOptions) {}

  /** Reads one stream to its end. */
  async consume(stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr"): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        this.#line(name, rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
      while (rest.length > MAX_LINE) {
        this.#line(name, rest.slice(0, MAX_LINE));
        rest = rest.slice(MAX_LINE);
      }
    }
    rest += decoder.decode();
    if (rest) this.#line(name, rest);
  }

  /** Flushes everything still buffered; resolves when it is durable. */
  async close(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    while (this.#flushing || this.#pending.length) {
      if (this.#flushing) await this.#flushing;
      else this.#flush();
    }
  }

  #line(stream: "stdout" | "stderr", raw: string): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (stream === "stderr") {
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
    }
    if (stream === "stdout" && line.startsWith(PROTOCOL_PREFIX)) {
      const problem = this.#protocol(line.slice(PROTOCOL_PREFIX.length));
      if (problem === null) return;
      this.#push({ type: "warning", data: { message: `malformed protocol line: ${problem}` } });
    }
    this.lines++;
    // Coalesce into the newest log event of this stream up to a per-event cap, even while a
    // flush is in flight: one event per line would make the next flush slower still.
    const last = this.#pending.at(-1);
    if (
      last?.type === "log" && last.data.stream === stream && this.#lastBytes < MAX_EVENT_BYTES
    ) {
      last.data.lines.push(line);
      this.#lastBytes += line.length + 3;
      this.#pendingBytes += line.length + 3;
      this.#schedule();
    } else {
      this.#lastBytes = line.length + 3;
      this.#push({ type: "log", data: { stream, lines: [line] } }, line.length + 3);
    }
  }

  /** Handles a protocol message; returns why it is malformed, or null. */
  #protocol(text: string): string | null {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return "not valid JSON";
    }
    const parsed = ProtocolMessage.safeParse(json);
    if (!parsed.success) {
      return parsed.error.issues.map((i) => `${i.path.join(".") || "message"}: ${i.message}`)
        .join("; ");
    }
    const m = parsed.data;
    switch (m.event) {
      case "progress":
        this.#push({
          type: "progress",
          data: {
            step: m.step ?? null,
            total: m.total ?? null,
            message: m.message ?? null,
            metrics: m.metrics ?? null,
          },
        });
        return null;
      case "metrics":
        this.#push({ type: "metrics", data: { metrics: m.metrics } });
        return null;
      case "artifact": {
        const path = resolve(this.opts.modelsDir, m.path);
        if (!isInside(this.opts.modelsDir, path)) return `artifact ${m.path} is outside MODELS_DIR`;
        this.artifact = path;
        this.#push({ type: "artifact", data: { path } });
        return null;
      }
      case "error": {
        const reason = FailureReasonSchema.safeParse(m.reason);
        this.scriptFailure = {
          reason: reason.success ? reason.data : "runtime_error",
          message: m.message,
        };
        return null;
      }
    }
  }

  get #max(): number {
    return this.opts.maxBatchBytes ?? 256 * 1024;
  }

  #push(event: OutputEvent, bytes = 256): void {
    this.#pending.push(event);
    this.#pendingBytes += bytes;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#pendingBytes >= this.#max && !this.#flushing) {
      this.#flush();
      return;
    }
    this.#timer ??= setTimeout(() => {
      this.#timer = null;
      if (!this.#flushing) this.#flush();
    }, this.opts.flushMs ?? 50);
  }

  #flush(): void {
    // A timer left from before close() may fire with nothing to send.
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#flushing = this.sink(batch).then(() => {
      this.#failures = 0;
    }, async () => {
      // Keep the lines, in order, ahead of anything that arrived since; retry with backoff.
      this.#pending = [...batch, ...this.#pending];
      this.#pendingBytes += batch.length * 256;
      await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** this.#failures++)));
    }).finally(() => {
      this.#flushing = null;
      if (this.#pending.length && this.#timer === null) this.#schedule();
    });
  }
}
