/**
 * Server-Sent Events over fetch, so requests can carry `Authorization` (EventSource cannot).
 * `follow` reconnects on its own with `Last-Event-ID`, so a dropped connection or a server
 * restart costs nothing: the server resumes after the last event received.
 */
import { createParser } from "eventsource-parser";

export interface SseMessage {
  /** The SSE id: the event's sequence number (absent on `end`). */
  id?: string;
  /** The SSE event name: the job event type, or `end`. */
  event: string;
  data: string;
}

/** What one SSE body holds: messages, and comments (the server's keep-alives). */
export type SseItem = { kind: "message"; message: SseMessage } | { kind: "comment"; text: string };

/** Reads an SSE response body until it ends. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseItem> {
  const items: SseItem[] = [];
  const parser = createParser({
    onEvent: (m) => items.push({ kind: "message", message: { ...m, event: m.event ?? "message" } }),
    onComment: (text) => items.push({ kind: "comment", text: text.trim() }),
  });
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      parser.feed(value);
      while (items.length) yield items.shift()!;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** A response the client cannot fix by retrying (bad id, bad token...). */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export interface FollowOptions {
  headers?: Record<string, string>;
  /** Resume after this sequence number. */
  after?: number;
  signal?: AbortSignal;
  /** Called with each failure before the next attempt (e.g. to say "reconnecting"). */
  onRetry?(error: unknown, attempt: number): void;
  /** Delay before reconnecting, ms (doubles up to 5 s). */
  retryMs?: number;
}

/**
 * Follows a stream until it sends `end`, reconnecting after the last id received. Yields
 * each message (the `end` last). Gives up only on a 4xx answer other than 408/429.
 */
export async function* follow(url: string, opts: FollowOptions = {}): AsyncGenerator<SseMessage> {
  let last = opts.after;
  let attempt = 0;
  for (;;) {
    try {
      const headers: Record<string, string> = { accept: "text/event-stream", ...opts.headers };
      if (last !== undefined) headers["last-event-id"] = String(last);
      const res = await fetch(url, { headers, signal: opts.signal });
      if (!res.ok || !res.body) {
        const text = await res.text().catch(() => "");
        const message = errorMessage(res.status, text);
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
          throw new HttpError(res.status, message);
        }
        throw new Error(message);
      }
      for await (const item of readSse(res.body)) {
        if (item.kind !== "message") continue;
        attempt = 0;
        if (item.message.id) last = Number(item.message.id);
        yield item.message;
        if (item.message.event === "end") return;
      }
      throw new Error("the server closed the stream");
    } catch (error) {
      if (error instanceof HttpError || opts.signal?.aborted) throw error;
      attempt++;
      opts.onRetry?.(error, attempt);
      const wait = Math.min(5000, (opts.retryMs ?? 250) * 2 ** Math.min(attempt - 1, 5));
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** The server's error envelope message, or the status line. */
export function errorMessage(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed.message === "string") return `${status}: ${parsed.message}`;
  } catch {
    // not JSON
  }
  return `${status}: ${body.slice(0, 200) || "no body"}`;
}
