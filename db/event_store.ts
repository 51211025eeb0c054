/**
 * The event store: the single writer of the log and its projection.
 *
 * Every change runs as a unit of work on a serialized queue. Units waiting together are
 * committed in one transaction (group commit): their events are inserted and the `jobs`
 * rows they touch are upserted in the same batch, so the projection can never disagree with
 * the log. A unit's promise resolves only after its transaction is durable. If a batch
 * fails, its units are retried one by one so one bad unit cannot sink the others.
 *
 * A shared store (hosted mode: several API instances on one database) caches nothing and
 * takes its sequence numbers from the database: each batch starts after the log's current
 * end. Two instances that append at once collide on a seq or on a job's (job_id, version),
 * the unique keys that the triggers of migration 0002 guard; the loser runs its units again
 * on fresh state (optimistic concurrency), so no event is lost, duplicated or decided on a
 * stale state.
 */
import type { InStatement } from "@libsql/client";
import { eq, inArray, or, sql } from "drizzle-orm";
import { type Command, decide } from "../jobs/decide.ts";
import { ConflictError } from "../errors.ts";
import { JobEvent, type StoredEvent } from "../jobs/events.ts";
import { deriveParent, evolve, isTerminal, type JobState } from "../jobs/state.ts";
import type { Clock } from "./clock.ts";
import type { Database } from "./client.ts";
import { payloadBytes } from "./event_rows.ts";
import { decodeJob, insertEvents, LOAD_JOB_SQL, upsertJobs } from "./job_sql.ts";
import { rowToState } from "./rows.ts";
import { events, jobs } from "./schema.ts";
import { modelStatements } from "../projections/models.ts";

/** What a unit of work may do: read job states and decide commands against them. */
export interface UnitOfWork {
  get(jobId: string): Promise<JobState | undefined>;
  /** Decides `command` against the job's current state and stages the resulting events. */
  execute(jobId: string, command: Command): Promise<StoredEvent[]>;
  findByIdempotencyKey(key: string): Promise<JobState | undefined>;
  /** Adds a statement to the unit's transaction (a lease update that goes with its events). */
  also(statement: InStatement): void;
}

export type CommitListener = (events: StoredEvent[], states: ReadonlyMap<string, JobState>) => void;

interface Pending {
  fn: (uow: UnitOfWork) => Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

const MAX_UNITS_PER_BATCH = 512;
/** Tries of a shared store's batch that lost a race to another instance. */
const MAX_CONFLICT_TRIES = 20;

export interface StoreOptions {
  /** Other processes write to the same database (hosted mode). */
  shared?: boolean;
}

export class EventStore {
  #queue: Pending[] = [];
  #draining: Promise<void> | null = null;
  #nextSeq = 1;
  /** States of jobs that can still change (and of jobs whose process may be alive). */
  #active = new Map<string, JobState>();
  #listeners: CommitListener[] = [];

  private constructor(
    readonly database: Database,
    readonly clock: Clock,
    readonly shared: boolean,
  ) {}

  /** Opens the store: finds the log's end and loads every job that can still change. */
  static async open(
    database: Database,
    clock: Clock,
    options: StoreOptions = {},
  ): Promise<EventStore> {
    const store = new EventStore(database, clock, options.shared ?? false);
    store.#nextSeq = await store.#logEnd() + 1;
    if (store.shared) return store;
    const rows = await unfinishedJobs(database.db);
    for (const row of rows) store.#active.set(row.job_id, rowToState(row));
    return store;
  }

  /** Runs `fn` as one unit of work; resolves with its result once its events are durable. */
  run<T>(fn: (uow: UnitOfWork) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      // Draining on the next macrotask lets requests that arrive together share a commit.
      this.#draining ??= new Promise<void>((done) => setTimeout(done, 0)).then(() => this.#drain());
    });
  }

  /** Listens to every commit, after it is durable, in commit order. */
  onCommit(listener: CommitListener): void {
    this.#listeners.push(listener);
  }

  /** Jobs that can still change, from memory. */
  activeJobs(): JobState[] {
    return [...this.#active.values()];
  }

  /** The highest seq in the log (0 when empty). */
  async #logEnd(): Promise<number> {
    const [{ max }] = await this.database.db.select({
      max: sql<number | null>`max(${events.seq})`,
    }).from(events);
    return max ?? 0;
  }

  /** Reads one job's current state (committed). */
  async load(jobId: string): Promise<JobState | undefined> {
    const cached = this.#active.get(jobId);
    if (cached) return cached;
    const rs = await this.database.client.execute({ sql: LOAD_JOB_SQL, args: [jobId] });
    return rs.rows[0] ? decodeJob(rs.rows[0]) : undefined;
  }

  /** A job that can still change, from memory only. */
  cached(jobId: string): JobState | undefined {
    return this.#active.get(jobId);
  }

  /** Waits until every queued unit has been committed or rejected. */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length) {
        const batch = this.#queue.splice(0, MAX_UNITS_PER_BATCH);
        await this.#commit(batch, true);
      }
    } finally {
      this.#draining = null;
    }
  }

  async #commit(batch: Pending[], retryAlone: boolean, tries = 0): Promise<void> {
    if (this.shared) this.#nextSeq = await this.#logEnd() + 1;
    const firstSeq = this.#nextSeq;
    const staged = new Map<string, JobState>();
    const appended: StoredEvent[] = [];
    const extra: InStatement[] = [];
    const done: { p: Pending; value: unknown }[] = [];
    for (const p of batch) {
      const unit = new Unit(this, staged);
      const unitSeq = this.#nextSeq;
      try {
        const value = await p.fn(unit);
        for (const [id, s] of unit.states) staged.set(id, s);
        for (const e of unit.events) appended.push(e);
        extra.push(...unit.extra);
        done.push({ p, value });
      } catch (error) {
        this.#nextSeq = unitSeq;
        p.reject(error);
      }
    }
    if (appended.length === 0 && extra.length === 0) {
      for (const { p, value } of done) p.resolve(value);
      return;
    }
    try {
      // Inside the try: a failed read here must reject the batch's units, not escape the
      // drain loop as an unhandled rejection and leave them pending forever.
      await this.#deriveParents(staged);
      await this.#write(appended, staged, extra);
    } catch (error) {
      this.#nextSeq = firstSeq;
      if (this.shared && tries < MAX_CONFLICT_TRIES && LOST_RACE.test(String(error))) {
        // Another instance appended first: decide again on what it wrote.
        await new Promise((r) => setTimeout(r, Math.random() * 5 * (tries + 1)));
        return await this.#commit(done.map((d) => d.p), retryAlone, tries + 1);
      }
      if (retryAlone && done.length > 1) {
        for (const { p } of done) await this.#commit([p], false);
      } else {
        for (const { p } of done) p.reject(asConflict(error));
      }
      return;
    }
    for (const [id, s] of staged) {
      if (this.shared || (isTerminal(s.status) && !s.process?.alive)) this.#active.delete(id);
      else this.#active.set(id, s);
    }
    for (const { p, value } of done) p.resolve(value);
    for (const listener of this.#listeners) {
      // The commit is durable; a listener's failure is its own and must not stop the writer.
      try {
        listener(appended, staged);
      } catch (error) {
        console.error("[trainer] commit listener failed:", error);
      }
    }
  }

  /** Re-derives every parent whose own stream or whose children changed in this batch. */
  async #deriveParents(staged: Map<string, JobState>): Promise<void> {
    const parents = new Set<string>();
    for (const s of staged.values()) {
      if (s.parent_id) parents.add(s.parent_id);
      if (s.children) parents.add(s.job_id);
    }
    for (const id of parents) {
      const parent = staged.get(id) ?? await this.load(id);
      if (!parent?.children) continue;
      const children: JobState[] = [];
      for (const c of parent.children) {
        const child = staged.get(c) ?? await this.load(c);
        if (child) children.push(child);
      }
      staged.set(id, deriveParent(parent, children));
    }
  }

  async #write(
    appended: StoredEvent[],
    staged: Map<string, JobState>,
    extra: InStatement[],
  ): Promise<void> {
    // Inline projections run in the same batch: a failing one rolls the append back.
    const statements = [
      ...insertEvents(appended),
      ...upsertJobs([...staged.values()]),
      ...modelStatements(appended, (id) => staged.get(id)),
      ...extra,
    ];
    await this.database.write(statements);
    this.database.committed(payloadBytes(appended));
  }

  /** Allocates the next global sequence number (the writer is the only one). */
  nextSeq(): number {
    return this.#nextSeq++;
  }
}

/** A shared store's batch collided with another instance's append (see the header). */
const LOST_RACE = new RegExp(
  "event with this (seq|job_id and version) already exists|" +
    "UNIQUE constraint failed: (events\\.|jobs\\.idempotency_key)|" +
    // A worker's lease ended between the unit's read and its commit (migration 0005).
    "lease lost|" +
    // Another process held the write lock past the busy timeout (a server killed mid-commit
    // leaves its WAL to be recovered by the next opener).
    "SQLITE_BUSY",
);

/**
 * A second stream with the same id collides on (job_id, version): the job exists. The
 * append-only trigger (migration 0002) refuses it before the unique index would.
 */
function asConflict(error: unknown): unknown {
  return /this job_id and version already exists|UNIQUE constraint failed: events\.job_id, events\.version/
      .test(String(error))
    ? new ConflictError("a job with this id already exists")
    : error;
}

/** One unit's view: its own staged changes over the batch's, over the committed state. */
class Unit implements UnitOfWork {
  states = new Map<string, JobState>();
  events: StoredEvent[] = [];
  extra: InStatement[] = [];

  constructor(readonly store: EventStore, readonly batch: ReadonlyMap<string, JobState>) {}

  async get(jobId: string): Promise<JobState | undefined> {
    return this.states.get(jobId) ?? this.batch.get(jobId) ?? await this.store.load(jobId);
  }

  async execute(jobId: string, command: Command): Promise<StoredEvent[]> {
    // A submission's id is a fresh random UUID, so no read decides it: a job in memory is
    // still refused here, and the unique index on (job_id, version) refuses any other at
    // commit (reported as the same ConflictError).
    let state = command.type === "submit"
      ? this.states.get(jobId) ?? this.batch.get(jobId) ?? this.store.cached(jobId)
      : await this.get(jobId);
    // Parse every event before taking seqs, so a bad event leaves no gap in the log.
    const decided = decide(command, state, jobId).map((raw) => JobEvent.parse(raw));
    const at = this.store.clock.now().toISOString();
    const stored: StoredEvent[] = [];
    for (const event of decided) {
      const e: StoredEvent = {
        seq: this.store.nextSeq(),
        job_id: jobId,
        version: (state?.version ?? 0) + 1,
        at,
        event,
      };
      state = evolve(state, e);
      stored.push(e);
    }
    if (state) this.states.set(jobId, state);
    for (const e of stored) this.events.push(e);
    return stored;
  }

  also(statement: InStatement): void {
    this.extra.push(statement);
  }

  async findByIdempotencyKey(key: string): Promise<JobState | undefined> {
    for (const s of [...this.states.values(), ...this.batch.values()]) {
      if (s.idempotency_key === key) return s;
    }
    const [row] = await this.store.database.db.select().from(jobs)
      .where(eq(jobs.idempotency_key, key));
    return row ? rowToState(row) : undefined;
  }
}

/**
 * The jobs that can still change: not finished, or finished with their process alive. Both
 * terms are indexed (`jobs_status_seq`, and `jobs_alive` of migration 0008), so the store's
 * start reads only those rows, whatever the table's size.
 */
export function unfinishedJobs(db: Database["db"]) {
  return db.select().from(jobs).where(
    or(
      inArray(jobs.status, ["started", "running"]),
      sql`json_extract(${jobs.process}, '$.alive') = 1`,
    ),
  );
}
