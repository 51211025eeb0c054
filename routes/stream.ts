/**
 * Server-Sent Events: `GET /train/job/{job_id}/stream` and `GET /train/stream`.
 *
 * Every message's `id` is the event's global sequence number, so `Last-Event-ID` (or
 * `?after=`) resumes with nothing missed or repeated, across restarts too: the cursor is
 * the log's own order. Each connection reads the log in pages after its cursor and waits
 * for the socket to drain before the next write, so a client that stops reading holds a
 * cursor and a socket buffer, never a queue in memory.
 */
import { streamDocs } from "../contract/docs.ts";
import type { Context } from "hono";
import { Hono } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import type { Db } from "../db/client.ts";
import type { EventStore } from "../db/event_store.ts";
import { getJob, getJobs } from "../db/queries.ts";
import { logTail } from "../db/log_tail.ts";
import { eventsAfter, type StreamPage, type StreamRow } from "../db/stream_queries.ts";
import { BadRequestError, NotFoundError, UnavailableError } from "../errors.ts";
import type { StoredEvent } from "../jobs/events.ts";
import { isTerminal, type JobState } from "../jobs/state.ts";
import { check, eventTypes, jobIdParam } from "./input.ts";
import { AllStreamQuery, Cursor, JobStreamQuery } from "./schemas.ts";
import { StreamHub } from "./stream_hub.ts";
import { send } from "./stream_send.ts";
import { statusView } from "./views.ts";

export interface StreamDeps {
  db: Db;
  store: EventStore;
  logTailLines: number;
  logTailBytes: number;
  maxStreams: number;
  keepAliveMs: number;
  lifecycle: { shuttingDown: boolean };
  /** How often idle streams look for commits made by other processes, ms. */
  pollMs?: number;
}

const TERMINAL_TYPES = ["completed", "failed", "cancelled"];
/** The events that change what a job list shows: it was submitted, it started, it ended. */
export const LIFECYCLE_TYPES = ["submitted", "started", ...TERMINAL_TYPES];
const PAGE = 100;
/** What a stream whose client stopped reading holds: one page of data, about this much. */
const PAGE_CHARS = 32 * 1024;
const RETRY_AFTER_SECONDS = 5;
const END_CACHE = 64;

/** Builds the stream routes (mounted under `/train`). */
export function streamRoutes(deps: StreamDeps): Hono {
  const hub = new StreamHub(deps.db, deps.store, {
    maxStreams: deps.maxStreams,
    pollMs: deps.pollMs ?? 1000,
    lifecycle: deps.lifecycle,
  });
  const app = new Hono();

  app.get("/job/:job_id/stream", streamDocs.job, async (c) => {
    const id = jobIdParam(c);
    const q = check(JobStreamQuery, c.req.query(), "query");
    const types = eventTypes([q.types, q.type], { emptyIsAll: false });
    let cursor = resume(c, q.after);
    const job = await getJob(deps.db, id);
    if (!job) throw new NotFoundError(`no job with id ${id}`);
    // A parent (`all`) has no process of its own: its stream carries its children's events.
    const jobIds = [id, ...job.children ?? []];
    const mine = new Set(jobIds);
    // With a filter that hides some terminal event, the end can only be seen in the state.
    const seesEnd = !types || TERMINAL_TYPES.every((t) => types.includes(t));
    const wants = (events: StoredEvent[]) => events.some((e) => mine.has(e.job_id));
    return open(c, hub, deps.keepAliveMs, wants, async (stream, caughtUp) => {
      const read = () =>
        readPage({ after: cursor, limit: PAGE, maxChars: PAGE_CHARS, jobIds, types });
      let mayHaveEnded = true;
      for (;;) {
        const page = await read();
        cursor = await send(deps.db, stream, page, cursor);
        if (stream.aborted) return;
        if (page.some((e) => TERMINAL_TYPES.includes(e.type))) mayHaveEnded = true;
        if (full(page)) continue;
        if (mayHaveEnded || !seesEnd) {
          mayHaveEnded = false;
          // Read the state first, then the log: every event committed with (or before) the
          // terminal state is then in the pages read below, before `end`.
          const now = await readJob(id);
          if (now && isTerminal(now.status)) {
            for (let rest = await read(); rest.length; rest = await read()) {
              cursor = await send(deps.db, stream, rest, cursor);
              if (stream.aborted) return;
            }
            await stream.write(await endMessage(now));
            return;
          }
        }
        if (!await caughtUp()) return;
      }
    });
  });

  app.get("/stream", streamDocs.all, (c) => {
    const q = check(AllStreamQuery, c.req.query(), "query");
    let cursor = resume(c, q.after);
    const wanted = new Set(LIFECYCLE_TYPES);
    const wants = (events: StoredEvent[]) => events.some((e) => wanted.has(e.event.type));
    return open(c, hub, deps.keepAliveMs, wants, async (stream, caughtUp) => {
      for (;;) {
        const page = await readPage({
          after: cursor,
          limit: PAGE,
          maxChars: PAGE_CHARS,
          types: LIFECYCLE_TYPES,
        });
        cursor = await send(deps.db, stream, page, cursor);
        if (stream.aborted) return;
        if (full(page)) continue;
        if (!await caughtUp()) return;
      }
    });
  });

  // Streams woken by the same commit ask for the same page: one query answers them all.
  // The key holds the newest commit seen, so a read begun before a commit is never shared
  // with a stream woken by it.
  const reading = new Map<string, Promise<StreamRow[]>>();
  function readPage(page: StreamPage): Promise<StreamRow[]> {
    const key = `${hub.seen}:${JSON.stringify(page)}`;
    let rows = reading.get(key);
    if (!rows) {
      rows = eventsAfter(deps.db, page).finally(() => reading.delete(key));
      reading.set(key, rows);
    }
    return rows;
  }

  // A filter that hides the terminal events makes each wake-up read the job's state: the
  // streams woken together share that read too.
  const loading = new Map<string, Promise<JobState | undefined>>();
  function readJob(id: string): Promise<JobState | undefined> {
    const key = `${hub.seen}:${id}`;
    let job = loading.get(key);
    if (!job) {
      job = getJob(deps.db, id).finally(() => loading.delete(key));
      loading.set(key, job);
    }
    return job;
  }

  // When a job ends, every stream following it sends the same `end` at once: build the
  // message (its log tail means parsing log events) once per job version, and send the same
  // bytes on every stream rather than a copy each.
  const ends = new Map<string, Promise<Uint8Array>>();
  function endMessage(job: JobState): Promise<Uint8Array> {
    const key = `${job.job_id}:${job.version}`;
    let data = ends.get(key);
    if (!data) {
      data = Promise.all([
        logTail(deps.db, job.job_id, { lines: deps.logTailLines, bytes: deps.logTailBytes }),
        getJobs(deps.db, job.children ?? []),
      ]).then(([logs, children]) => {
        const data = JSON.stringify(statusView(job, logs, children));
        return new TextEncoder().encode(`event: end\ndata: ${data}\n\n`);
      });
      data.catch(() => ends.delete(key));
      ends.set(key, data);
      if (ends.size > END_CACHE) ends.delete(ends.keys().next().value!);
    }
    return data;
  }

  return app;
}

/** True when the page stopped at a limit: more may follow at once, without waiting. */
function full(page: StreamRow[]): boolean {
  const chars = page.reduce((n, e) => n + Math.min(e.size, PAGE_CHARS), 0);
  return page.length === PAGE || chars >= PAGE_CHARS;
}

/** Waits for more events; false once the stream should end (client gone, shutting down). */
type CaughtUp = () => Promise<boolean>;

/** Opens an SSE response under the cap, with keep-alives, and runs `body` until it returns. */
function open(
  c: Context,
  hub: StreamHub,
  keepAliveMs: number,
  /** Which commits may hold events for this stream (the others do not wake it). */
  wants: (events: StoredEvent[]) => boolean,
  body: (stream: SSEStreamingApi, caughtUp: CaughtUp) => Promise<void>,
): Response {
  const gone = new AbortController();
  const release = hub.tryOpen(() => gone.abort());
  if (!release) {
    c.header("Retry-After", String(RETRY_AFTER_SECONDS));
    throw new UnavailableError(
      `too many open event streams (MAX_STREAMS=${hub.opts.maxStreams}); ` +
        `retry in ${RETRY_AFTER_SECONDS} s`,
    );
  }
  c.req.raw.signal.addEventListener("abort", () => gone.abort(), { once: true });
  return streamSSE(c, async (stream) => {
    // First: a client that leaves while the first page is read must still release its slot.
    stream.onAbort(() => gone.abort());
    gone.signal.addEventListener("abort", () => stream.abort(), { once: true });
    // Every write (events, keep-alives, end) restarts the keep-alive clock.
    let lastWrite = Date.now();
    const write = stream.write.bind(stream);
    stream.write = (input) => {
      lastWrite = Date.now();
      return write(input);
    };
    const sub = hub.subscribe(wants);
    gone.signal.addEventListener("abort", () => sub.wake(), { once: true });
    const caughtUp = async () => {
      for (;;) {
        if (stream.aborted) return false;
        const idle = Date.now() - lastWrite;
        if (idle >= keepAliveMs) {
          await stream.write(": keep-alive\n\n");
          continue;
        }
        if (await sub.wait(keepAliveMs - idle)) return !stream.aborted;
      }
    };
    try {
      await body(stream, caughtUp);
    } finally {
      hub.unsubscribe(sub);
      release();
    }
  }, (error) => {
    console.error(`[trainer] ${c.req.path} stream failed:`, error);
    return Promise.resolve();
  });
}

/** The cursor: `Last-Event-ID` (sent by a reconnecting EventSource) wins over `?after=`. */
function resume(c: Context, after: number | undefined): number {
  const header = c.req.header("last-event-id");
  if (header === undefined || header.trim() === "") return after ?? 0;
  const parsed = Cursor.safeParse(header.trim());
  if (!/^\d+$/.test(header.trim()) || !parsed.success) {
    throw new BadRequestError(
      `Last-Event-ID must be the id (a sequence number) of the last event received, ` +
        `not "${header.slice(0, 50)}"`,
    );
  }
  return parsed.data;
}
