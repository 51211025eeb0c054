/**
 * A job's unsent output, coalesced as it arrives. Log lines join the newest unsent log event
 * of their stream, so lines stay in order within their stream (the order between stdout and
 * stderr is not defined: they are read concurrently). Only the newest progress waits, and
 * unsent metrics are merged, because both only ever set the job's current state. Batches are
 * taken off the front, bounded in bytes and in events.
 */
import type { OutputEvent } from "./decide.ts";

/** A log event takes lines until it holds this many bytes. */
const MAX_EVENT_BYTES = 256 * 1024;

type Stream = "stdout" | "stderr";

interface Item {
  event: OutputEvent;
  bytes: number;
}

export class OutputQueue {
  #items: (Item | undefined)[] = [];
  #head = 0;
  #open: Record<Stream, Item | null> = { stdout: null, stderr: null };
  #progress: Item | null = null;
  #metrics: Item | null = null;
  #bytes = 0;

  /** Bytes waiting, as counted when added (about their JSON size). */
  get bytes(): number {
    return this.#bytes;
  }

  get empty(): boolean {
    return this.#head === this.#items.length && !this.#progress && !this.#metrics;
  }

  log(stream: Stream, line: string): void {
    const bytes = line.length + 3;
    const open = this.#open[stream];
    if (open && open.bytes < MAX_EVENT_BYTES && open.event.type === "log") {
      open.event.data.lines.push(line);
      open.bytes += bytes;
      this.#bytes += bytes;
    } else {
      this.#open[stream] = this.push({ type: "log", data: { stream, lines: [line] } }, bytes);
    }
  }

  /** Replaces any unsent progress: only the newest one matters. */
  progress(event: OutputEvent & { type: "progress" }, bytes: number): void {
    this.#bytes += bytes - (this.#progress?.bytes ?? 0);
    this.#progress = { event, bytes };
  }

  /** Merges into unsent metrics: the job's state merges them key by key all the same. */
  metrics(metrics: Record<string, unknown>, bytes: number): void {
    const unsent = this.#metrics?.event.type === "metrics" ? this.#metrics.event.data.metrics : {};
    this.#bytes += bytes;
    this.#metrics = {
      event: { type: "metrics", data: { metrics: { ...unsent, ...metrics } } },
      bytes: (this.#metrics?.bytes ?? 0) + bytes,
    };
  }

  /** Queues an event that is kept as it is (warnings, artifacts, a new log event). */
  push(event: OutputEvent, bytes: number): Item {
    const item = { event, bytes };
    this.#items.push(item);
    this.#bytes += bytes;
    return item;
  }

  /** Takes the next batch: queued events up to the bounds, then the progress and metrics. */
  take(maxBytes: number, maxEvents: number): OutputEvent[] {
    const batch: OutputEvent[] = [];
    let bytes = 0;
    while (this.#head < this.#items.length && bytes < maxBytes && batch.length < maxEvents) {
      const item = this.#items[this.#head]!;
      this.#items[this.#head++] = undefined;
      batch.push(item.event);
      bytes += item.bytes;
    }
    // Taken events must not grow any more: they may be on their way to the sink.
    this.#open = { stdout: null, stderr: null };
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    for (const slot of [this.#metrics, this.#progress]) {
      if (slot) {
        batch.push(slot.event);
        bytes += slot.bytes;
      }
    }
    this.#metrics = this.#progress = null;
    this.#bytes -= bytes;
    return batch;
  }

  /** Drops everything. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.#open = { stdout: null, stderr: null };
    this.#progress = this.#metrics = null;
    this.#bytes = 0;
  }
}
