/**
 * A job's unsent output, coalesced as it arrives. Log lines join the newest unsent log event
 * of their stream, so lines stay in order within their stream (the order between stdout and
 * stderr is not defined: they are read concurrently). A log event is built as a list of
 * pieces (single lines, or runs of lines already joined by "\n") and joined into one text
 * when it is full or taken: no per-line array crosses the thread or reaches the store.
 * Progress and metrics messages are queued in order as they come, up to MAX_STATE_EVENTS of
 * each between two writes; past that the newest unsent progress is replaced and unsent
 * metrics are merged, which changes nothing in the job's state: both only ever set its current
 * values. Batches are taken off the front, bounded in bytes and in events.
 */
import type { OutputEvent } from "./decide.ts";
import type { LogFileRange } from "./events.ts";

/** A log event takes lines until it holds this many bytes. */
const MAX_EVENT_BYTES = 256 * 1024;
/**
 * Progress (or metrics) events kept apart between two writes. Well above what a real script
 * prints in a flush interval (the built-ins print at most 20 a second), so their history
 * stays whole; a flood of 300,000 becomes a few per write.
 */
const MAX_STATE_EVENTS = 20;
/** What a queued event whose lines stay in the log file counts for. */
const EVENT_BYTES = 64;

type Stream = "stdout" | "stderr";
type StateKind = "progress" | "metrics";

interface Item {
  event: OutputEvent;
  bytes: number;
  /** An open log event's pieces, joined into its text when it is taken. */
  log?: { stream: Stream; pieces: string[]; count: number };
  /** An open log event's data (a range of the log file), which adjoining lines extend. */
  range?: { count: number; file: LogFileRange };
}

export class OutputQueue {
  #items: (Item | undefined)[] = [];
  #head = 0;
  #open: Record<Stream, Item | null> = { stdout: null, stderr: null };
  /** Per kind: how many were queued since the last take, and the newest still unsent. */
  #state: Record<StateKind, { count: number; last: Item | null }> = {
    progress: { count: 0, last: null },
    metrics: { count: 0, last: null },
  };
  #bytes = 0;

  /** Characters waiting, as counted when added (about their stored size). */
  get bytes(): number {
    return this.#bytes;
  }

  get empty(): boolean {
    return this.#head === this.#items.length;
  }

  /** Queues one line. */
  log(stream: Stream, line: string): void {
    this.lines(stream, line, 1);
  }

  /** Queues `count` lines joined by "\n" (no trailing one), in order after the queued ones. */
  lines(stream: Stream, text: string, count: number): void {
    const bytes = text.length + 1;
    const open = this.#open[stream];
    if (open?.log && open.bytes < MAX_EVENT_BYTES) {
      open.log.pieces.push(text);
      open.log.count += count;
      open.bytes += bytes;
      this.#bytes += bytes;
    } else {
      // A full event takes no more lines: its text is joined now, while the reader waits on
      // the pipe, rather than in take(), which runs while the store waits for the batch.
      if (open?.log) close(open);
      // The event is filled in when it is closed; until then only its pieces grow.
      const event: OutputEvent = { type: "log", data: { stream, text: "", count } };
      const item = this.push(event, bytes);
      item.log = { stream, pieces: [text], count };
      this.#open[stream] = item;
    }
  }

  /**
   * Queues `count` lines kept in the log file at `range`, in order after the queued ones. A
   * range that starts right after the open one's "\n" extends it (up to MAX_EVENT_BYTES).
   */
  inFile(stream: Stream, range: LogFileRange, count: number): void {
    const current = this.#open[stream];
    const last = current?.range;
    if (
      last && last.file.offset + last.file.bytes + 1 === range.offset &&
      last.file.bytes < MAX_EVENT_BYTES && last.file.name === range.name
    ) {
      last.file.bytes += range.bytes + 1;
      last.file.chars += range.chars + 1;
      last.count += count;
      return;
    }
    if (current?.log) close(current);
    const data = { stream, count, file: { ...range } };
    // Counted as a small event: the lines stay in the file, not in memory.
    const item = this.push({ type: "log", data }, EVENT_BYTES);
    item.range = data;
    this.#open[stream] = item;
  }

  /** Queues a progress; past the allowance it replaces the newest unsent one. */
  progress(event: OutputEvent & { type: "progress" }, bytes: number): void {
    const state = this.#state.progress;
    if (state.last && state.count >= MAX_STATE_EVENTS) {
      this.#bytes += bytes - state.last.bytes;
      state.last.event = event;
      state.last.bytes = bytes;
    } else this.#queueState("progress", event, bytes);
  }

  /** Queues metrics; past the allowance they merge into the newest unsent ones, key by key. */
  metrics(metrics: Record<string, unknown>, bytes: number): void {
    const state = this.#state.metrics;
    const last = state.last?.event;
    if (state.last && last?.type === "metrics" && state.count >= MAX_STATE_EVENTS) {
      last.data.metrics = { ...last.data.metrics, ...metrics };
      state.last.bytes += bytes;
      this.#bytes += bytes;
    } else this.#queueState("metrics", { type: "metrics", data: { metrics } }, bytes);
  }

  #queueState(kind: StateKind, event: OutputEvent, bytes: number): void {
    this.#state[kind].count++;
    this.#state[kind].last = this.push(event, bytes);
  }

  /** Queues an event that is kept as it is (warnings, artifacts, a new log event). */
  push(event: OutputEvent, bytes: number): Item {
    const item = { event, bytes };
    this.#items.push(item);
    this.#bytes += bytes;
    return item;
  }

  /** Takes the next batch: queued events, in order, up to the bounds. */
  take(maxBytes: number, maxEvents: number): OutputEvent[] {
    const batch: OutputEvent[] = [];
    let bytes = 0;
    while (this.#head < this.#items.length && bytes < maxBytes && batch.length < maxEvents) {
      const item = this.#items[this.#head]!;
      this.#items[this.#head++] = undefined;
      if (item.log) close(item);
      batch.push(item.event);
      bytes += item.bytes;
    }
    // Taken events must not change any more: they may be on their way to the sink.
    this.#forget();
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    this.#bytes -= bytes;
    return batch;
  }

  /** Drops everything. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.#forget();
    this.#bytes = 0;
  }

  #forget(): void {
    this.#open = { stdout: null, stderr: null };
    this.#state = { progress: { count: 0, last: null }, metrics: { count: 0, last: null } };
  }
}

/** Joins an open log event's pieces into its text; it takes no more lines. */
function close(item: Item): void {
  const { stream, pieces, count } = item.log!;
  item.event = { type: "log", data: { stream, text: pieces.join("\n"), count } };
  item.log = undefined;
}
