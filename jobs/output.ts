/**
 * Turns a child's stdout and stderr into job events. Lines are read as fast as the child
 * writes them into an OutputQueue, which coalesces them (every log line kept, in order; only
 * the newest progress); an OutputFlusher (output_flusher.ts) appends them in bounded batches,
 * and past MAX_PENDING_BYTES the readers stop reading until the sink catches up.
 */
import { resolve } from "node:path";
import type { OutputEvent } from "./decide.ts";
import { type FailureReason, FailureReason as FailureReasonSchema } from "./events.ts";
import { isInside } from "../models/artifacts.ts";
import { type FlushOptions, message, OutputFlusher, type OutputSink } from "./output_flusher.ts";
import { plainCount, plainRuns } from "./plain_lines.ts";
import { decodeRange } from "../db/log_files.ts";
import type { LogSource } from "./log_capture.ts";
import { readSpool } from "./spool_reader.ts";
import { parseProtocol, PROTOCOL_PREFIX, type ProtocolMessage } from "./protocol.ts";

export { PROTOCOL_PREFIX } from "./protocol.ts";
export { MAX_PENDING_BYTES, type OutputSink } from "./output_flusher.ts";

/** Longer lines are split; pieces never split a surrogate pair. */
const MAX_LINE = 64 * 1024;
/** A run of plain lines queued as one piece holds at most this many characters. */
const MAX_RUN = 64 * 1024;
const STDERR_TAIL = 20;
/** After this many warnings a job's further warnings are only counted. */
const MAX_WARNINGS = 50;
/** Bytes a small event (progress, warning, artifact) is counted as, at least. */
const EVENT_OVERHEAD = 64;

export interface CollectorOptions extends FlushOptions {
  modelsDir: string;
}

export class OutputCollector {
  readonly #out: OutputFlusher;
  #warnings = 0;
  #suppressed = 0;
  #closed = false;
  readonly stderrTail: string[] = [];
  artifact: string | null = null;
  scriptFailure: { reason: FailureReason; message: string } | null = null;
  lines = 0;

  constructor(readonly sink: OutputSink, readonly opts: CollectorOptions) {
    this.#out = new OutputFlusher(sink, opts);
  }

  /** Why the output could not be stored, once the collector gave up; null until then. */
  get failure(): string | null {
    return this.#out.failure;
  }

  /** Output waiting to be sent, in bytes (a batch being sent is not counted). */
  get pendingBytes(): number {
    return this.#out.queue.bytes;
  }

  /** Reads one stream to its end. */
  async consume(stream: AsyncIterable<Uint8Array>, name: "stdout" | "stderr"): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      rest = this.#split(name, rest);
      // Backpressure: while the sink is far behind, leave the rest in the pipe.
      for (let room = this.#out.room(); room; room = this.#out.room()) await room;
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
    this.#out.logFile = file;
    await readSpool(file, ended, {
      lines: (bytes) => this.#fileLines(file, bytes),
      cut: (text) => this.#cut("stdout", text),
      line: (text) => this.#line("stdout", text),
      last: (text) => {
        const rest = this.#split("stdout", text);
        if (rest) this.#line("stdout", rest);
      },
      room: () => this.#out.room(),
    });
  }

  /** Queues whole lines read from the job's stdout (`bytes` ends with a "\n"). */
  #fileLines(file: LogSource, bytes: Uint8Array): void {
    const text = decodeRange(bytes.subarray(0, bytes.length - 1));
    if (this.#out.failure !== null || this.#closed) return;
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
      this.#out.fail(`the job's output could not be kept in its log file: ${message(e)}`);
      return;
    }
    const { name, offset } = kept;
    this.lines += count;
    const range = { name, offset, bytes: bytes.length - 1, chars: text.length };
    this.#out.queue.inFile("stdout", range, count);
    this.#out.schedule();
  }

  /**
   * Flushes everything still queued; resolves when it is durable or the collector gave up.
   * Output read after this is dropped: it comes from a process that outlived its job and
   * holds the pipe, and a close that waited for it could wait forever.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#suppressed > 0 && this.#out.failure === null) {
      this.#out.queue.push({
        type: "warning",
        data: { message: `${this.#suppressed} more warnings were not recorded` },
      }, EVENT_OVERHEAD);
      this.#suppressed = 0;
    }
    await this.#out.close();
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
    if (this.#out.failure !== null || this.#closed) return true;
    const runs = plainRuns(block, MAX_LINE, MAX_RUN);
    if (runs === null) return false;
    for (const [text, n] of runs) {
      this.lines += n;
      this.#out.queue.lines("stdout", text, n);
    }
    this.#out.schedule();
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

  #line(stream: "stdout" | "stderr", raw: string): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (stream === "stderr") {
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
    }
    if (this.#out.failure !== null || this.#closed) return;
    if (stream === "stdout" && line.startsWith(PROTOCOL_PREFIX)) {
      const parsed = parseProtocol(line.slice(PROTOCOL_PREFIX.length));
      if (parsed.ok) {
        const problem = this.#message(parsed.message, line.length);
        if (problem === null) return;
        this.#warn(`malformed protocol line: ${problem}`);
      } else this.#warn(`malformed protocol line: ${parsed.problem}`);
    }
    this.lines++;
    this.#out.queue.log(stream, line);
    this.#out.schedule();
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
        this.#out.queue.progress({ type: "progress", data }, bytes);
        this.#out.schedule();
        return null;
      }
      case "metrics":
        this.#out.queue.metrics(m.metrics, bytes);
        this.#out.schedule();
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
    this.#out.queue.push(event, bytes);
    this.#out.schedule();
  }
}
