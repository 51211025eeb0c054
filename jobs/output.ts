/**
 * Turns a child's stdout and stderr into job events. Lines are read as fast as the child
 * writes them into an OutputQueue, which coalesces them (every log line kept, in order; only
 * the newest progress); a background flusher appends them in bounded batches. Memory is
 * bounded: past MAX_PENDING_BYTES the reader stops reading the pipe until the sink catches up.
 * A sink that keeps failing is retried a bounded number of times, then the collector gives up
 * and reports it, so a job can never wedge on its own output.
 */
import { resolve } from "node:path";
import type { OutputEvent } from "./decide.ts";
import { type FailureReason, FailureReason as FailureReasonSchema } from "./events.ts";
import { isInside } from "../models/artifacts.ts";
import { OutputQueue } from "./output_queue.ts";
import { plainCount, plainRuns } from "./plain_lines.ts";
import { decodeRange } from "../db/log_files.ts";
import type { LogSource } from "./log_capture.ts";
import { readSpool } from "./spool_reader.ts";
import { parseProtocol, PROTOCOL_PREFIX, type ProtocolMessage } from "./protocol.ts";

export { PROTOCOL_PREFIX } from "./protocol.ts";

/** Longer lines are split; pieces never split a surrogate pair. */
const MAX_LINE = 64 * 1024;
/** A run of plain lines queued as one piece holds at most this many characters. */
const MAX_RUN = 64 * 1024;
const STDERR_TAIL = 20;
/**
 * One sink call carries at most this much: it is one structured clone across the thread and
 * one transaction, and neither may grow with what the child prints. Not much smaller either:
 * every call waits its turn for the database's write lock, and with the slow-disk drill's lock
 * (held 300 ms of every 400 ms) 4 MiB calls took twice as long as 16 MiB ones to store 60 MB.
 */
const MAX_CALL_BYTES = 16 * 1024 * 1024;
const MAX_CALL_EVENTS = 1000;
/**
 * Unsent output of one job above which its pipes are no longer read. The slow-disk drill
 * measures the bound: the reader takes about 135 MB/s from a fast child, so a database
 * write-locked for 300 ms meets ~40 MB of backlog, and a child that must never block while the
 * database is briefly locked needs that much room. 64 MiB keeps that margin (1,000,000 lines of
 * 60 bytes, the drill's whole log, fit) while a script printing forever costs at most this
 * much per running job instead of growing the server until it dies.
 */
export const MAX_PENDING_BYTES = 64 * 1024 * 1024;
/** Tries of one batch before the collector gives up: about 5 s of backoff in all. */
const MAX_TRIES = 8;
/** After this many warnings a job's further warnings are only counted. */
const MAX_WARNINGS = 50;
/** Bytes a small event (progress, warning, artifact) is counted as, at least. */
const EVENT_OVERHEAD = 64;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function inFile(event: OutputEvent): boolean {
  return event.type === "log" && "file" in event.data;
}

export type OutputSink = (events: OutputEvent[]) => Promise<void>;

export interface CollectorOptions {
  modelsDir: string;
  flushMs?: number;
  /** Pending bytes that start a flush at once rather than after `flushMs`. */
  maxBatchBytes?: number;
  maxPendingBytes?: number;
  maxTries?: number;
  /** Called once when the sink kept failing and the output is dropped from then on. */
  onFailed?: (message: string) => void;
}

export class OutputCollector {
  #queue = new OutputQueue();
  #retry: OutputEvent[] | null = null;
  /** The job's log file, when its stdout goes there: synced before a range of it is sent. */
  #logFile: LogSource | null = null;
  #tries = 0;
  #flushing: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #room: (() => void)[] = [];
  #warnings = 0;
  #suppressed = 0;
  #failure: string | null = null;
  #closed = false;
  readonly stderrTail: string[] = [];
  artifact: string | null = null;
  scriptFailure: { reason: FailureReason; message: string } | null = null;
  lines = 0;

  constructor(readonly sink: OutputSink, readonly opts: CollectorOptions) {}

  /** Why the output could not be stored, once the collector gave up; null until then. */
  get failure(): string | null {
    return this.#failure;
  }

  /** Output waiting to be sent, in bytes (a batch being sent is not counted). */
  get pendingBytes(): number {
    return this.#queue.bytes;
  }

  /** Reads one stream to its end. */
  async consume(stream: AsyncIterable<Uint8Array>, name: "stdout" | "stderr"): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      rest = this.#split(name, rest);
      // Backpressure: while the sink is far behind, leave the rest in the pipe.
      while (this.#queue.bytes > this.#cap && this.#failure === null) {
        await new Promise<void>((r) => this.#room.push(r));
      }
    }
    rest = this.#split(name, rest + decoder.decode());
    if (rest) this.#line(name, rest);
  }

  /**
   * Reads a job's stdout from the file it writes (LogSource) as it writes it, until `ended`
   * and the file's end then (jobs/spool_reader.ts). Runs of plain lines are kept in the job's
   * log file and queued as ranges of it, synced before they are sent; any other line is
   * handled as a pipe's.
   */
  async consumeFile(file: LogSource, ended: Promise<void>): Promise<void> {
    this.#logFile = file;
    await readSpool(file, ended, {
      lines: (bytes) => this.#fileLines(file, bytes),
      cut: (text) => this.#cut("stdout", text),
      line: (text) => this.#line("stdout", text),
      last: (text) => {
        const rest = this.#split("stdout", text);
        if (rest) this.#line("stdout", rest);
      },
      room: () =>
        this.#queue.bytes > this.#cap && this.#failure === null
          ? new Promise<void>((r) => this.#room.push(r))
          : null,
    });
  }

  /** Queues whole lines read from the job's stdout (`bytes` ends with a "\n"). */
  #fileLines(file: LogSource, bytes: Uint8Array): void {
    const text = decodeRange(bytes.subarray(0, bytes.length - 1));
    if (this.#failure !== null || this.#closed) return;
    const count = plainCount(text, MAX_LINE);
    if (count === null) {
      const rest = this.#split("stdout", text + "\n");
      if (rest) this.#line("stdout", rest);
      return;
    }
    let kept: { name: string; offset: number };
    try {
      kept = file.keep(bytes);
    } catch (e) {
      // The job's lines cannot be kept (a full disk): it fails, it does not run on unlogged.
      this.#fail(`the job's output could not be kept in its log file: ${message(e)}`);
      return;
    }
    const { name, offset } = kept;
    this.lines += count;
    const range = { name, offset, bytes: bytes.length - 1, chars: text.length };
    this.#queue.inFile("stdout", range, count);
    this.#schedule();
  }

  /**
   * Flushes everything still queued; resolves when it is durable or the collector gave up.
   * Output read after this is dropped: it comes from a process that outlived its job and
   * holds the pipe, and a close that waited for it could wait forever.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#suppressed > 0 && this.#failure === null) {
      this.#queue.push({
        type: "warning",
        data: { message: `${this.#suppressed} more warnings were not recorded` },
      }, EVENT_OVERHEAD);
      this.#suppressed = 0;
    }
    while (this.#failure === null && (this.#flushing || this.#hasPending())) {
      await (this.#flushing ?? this.#flush());
    }
  }

  /** Handles the complete lines of `text`; returns what is left of it. */
  #split(name: "stdout" | "stderr", text: string): string {
    const end = text.lastIndexOf("\n");
    if (end >= 0 && name === "stdout" && this.#plainLines(text.slice(0, end))) {
      return this.#cut(name, text.slice(end + 1));
    }
    let rest = text;
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      const whole = rest.slice(0, nl);
      const line = this.#cut(name, whole);
      // A blank line is kept; the empty end of a line cut into exact pieces is not a line.
      if (line !== "" || whole === "") this.#line(name, line);
      rest = rest.slice(nl + 1);
    }
    return this.#cut(name, rest);
  }

  /** Queues `block`, whole stdout lines, as runs of text; false when they need a look each. */
  #plainLines(block: string): boolean {
    if (this.#failure !== null || this.#closed) return true;
    const runs = plainRuns(block, MAX_LINE, MAX_RUN);
    if (runs === null) return false;
    for (const [text, n] of runs) {
      this.lines += n;
      this.#queue.lines("stdout", text, n);
    }
    this.#schedule();
    return true;
  }

  /** Handles MAX_LINE pieces off the front of an overlong `text`; returns the rest. */
  #cut(name: "stdout" | "stderr", text: string): string {
    let rest = text;
    while (rest.length > MAX_LINE) {
      // Cutting between the halves of a surrogate pair would store two invalid halves.
      const high = rest.charCodeAt(MAX_LINE - 1);
      const cut = high >= 0xd800 && high <= 0xdbff ? MAX_LINE - 1 : MAX_LINE;
      this.#line(name, rest.slice(0, cut));
      rest = rest.slice(cut);
    }
    return rest;
  }

  get #cap(): number {
    return this.opts.maxPendingBytes ?? MAX_PENDING_BYTES;
  }

  #line(stream: "stdout" | "stderr", raw: string): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (stream === "stderr") {
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
    }
    if (this.#failure !== null || this.#closed) return;
    if (stream === "stdout" && line.startsWith(PROTOCOL_PREFIX)) {
      const parsed = parseProtocol(line.slice(PROTOCOL_PREFIX.length));
      if (parsed.ok) {
        const problem = this.#message(parsed.message, line.length);
        if (problem === null) return;
        this.#warn(`malformed protocol line: ${problem}`);
      } else this.#warn(`malformed protocol line: ${parsed.problem}`);
    }
    this.lines++;
    this.#queue.log(stream, line);
    this.#schedule();
  }

  /** Handles a protocol message; returns why it cannot be used, or null. */
  #message(m: ProtocolMessage, size: number): string | null {
    const bytes = size + EVENT_OVERHEAD;
    switch (m.event) {
      case "progress": {
        const data = {
          step: m.step ?? null,
          total: m.total ?? null,
          message: m.message ?? null,
          metrics: m.metrics ?? null,
        };
        this.#queue.progress({ type: "progress", data }, bytes);
        this.#schedule();
        return null;
      }
      case "metrics":
        this.#queue.metrics(m.metrics, bytes);
        this.#schedule();
        return null;
      case "artifact": {
        const path = resolve(this.opts.modelsDir, m.path);
        if (!isInside(this.opts.modelsDir, path)) return `artifact ${m.path} is outside MODELS_DIR`;
        this.artifact = path;
        this.#enqueue({ type: "artifact", data: { path } }, bytes);
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

  #warn(message: string): void {
    if (this.#warnings >= MAX_WARNINGS) {
      this.#suppressed++;
      return;
    }
    this.#warnings++;
    this.#enqueue({ type: "warning", data: { message } }, message.length + EVENT_OVERHEAD);
  }

  #enqueue(event: OutputEvent, bytes: number): void {
    this.#queue.push(event, bytes);
    this.#schedule();
  }

  #hasPending(): boolean {
    return this.#retry !== null || !this.#queue.empty;
  }

  #schedule(): void {
    if (this.#flushing) return;
    if (this.#queue.bytes >= (this.opts.maxBatchBytes ?? 256 * 1024)) {
      void this.#flush();
      return;
    }
    this.#timer ??= setTimeout(() => {
      this.#timer = null;
      if (!this.#flushing) void this.#flush();
    }, this.opts.flushMs ?? 50);
  }

  /** Sends batches until nothing is pending; one flusher at a time. */
  #flush(): Promise<void> {
    this.#flushing ??= this.#drain().finally(() => {
      this.#flushing = null;
      // Lines that arrived after the last check saw a flush in flight and did not schedule.
      if (this.#failure === null && this.#hasPending()) this.#schedule();
    });
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    while (this.#failure === null && this.#hasPending()) {
      const batch = this.#retry ?? this.#queue.take(MAX_CALL_BYTES, MAX_CALL_EVENTS);
      try {
        // A range in the log is a promise that its lines are on disk. A failed sync is not
        // tried again: the next one may succeed with the failed pages lost (Linux).
        if (this.#logFile && batch.some(inFile)) {
          try {
            await this.#logFile.sync();
          } catch (e) {
            this.#fail(`the job's log file could not be synced: ${message(e)}`);
            return;
          }
        }
        await this.sink(batch);
        this.#retry = null;
        this.#tries = 0;
      } catch (e) {
        this.#retry = batch;
        if (++this.#tries >= (this.opts.maxTries ?? MAX_TRIES)) {
          this.#giveUp(batch.length, e);
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** (this.#tries - 1))));
      } finally {
        this.#wake();
      }
    }
  }

  #giveUp(events: number, error: unknown): void {
    this.#fail(
      `the job's output could not be stored after ${this.#tries} tries ` +
        `(${events} events in the failing batch): ${message(error)}`,
    );
  }

  /** Gives up on the job's output for `why`; what is queued is dropped. */
  #fail(why: string): void {
    this.#failure = why;
    // Nothing more is kept: the job is failed, and its readers only drain the pipes.
    this.#queue.clear();
    this.#retry = null;
    this.#wake();
    this.opts.onFailed?.(this.#failure);
  }

  #wake(): void {
    if (this.#queue.bytes > this.#cap && this.#failure === null) return;
    const waiting = this.#room;
    this.#room = [];
    for (const resume of waiting) resume();
  }
}
