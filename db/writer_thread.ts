/**
 * Entry point of the writer thread (a Worker started by db/writer.ts). It holds the one
 * connection the event store commits on, and runs each batch it is sent as one transaction:
 * BEGIN IMMEDIATE, the statements in order, COMMIT (synced: `synchronous = FULL`). A batch
 * that fails is rolled back whole and its error sent back.
 */
/// <reference lib="deno.worker" />
import Sqlite from "libsql";
import type { WriterMessage, WriterReply } from "./writer.ts";

let connection: InstanceType<typeof Sqlite> | null = null;
/** The store's statements come from a few cached texts (db/job_sql.ts): each is prepared once. */
const prepared = new Map<string, ReturnType<InstanceType<typeof Sqlite>["prepare"]>>();
const MAX_PREPARED = 1000;

self.addEventListener("message", (event: MessageEvent<WriterMessage>) => {
  const m = event.data;
  if (m.type === "open") {
    try {
      // The same native library as the main thread's connections (see db/reader.ts): one
      // SQLite, one set of locks.
      connection = new Sqlite(m.path);
      // First: the main thread may be committing on its connection while this one opens.
      connection.exec(`PRAGMA busy_timeout = ${m.busyTimeoutMs}`);
      connection.exec("PRAGMA journal_mode = WAL");
      connection.exec("PRAGMA synchronous = FULL");
      connection.exec(`PRAGMA wal_autocheckpoint = ${m.autocheckpointPages}`);
      reply({ type: "opened" });
    } catch (e) {
      reply({ type: "failed", error: describe(e) });
    }
  } else if (m.type === "batch") {
    reply(runBatch(m.id, m.statements));
  } else if (m.type === "close") {
    connection?.close();
    connection = null;
    reply({ type: "closed" });
    self.close();
  }
});

function runBatch(id: number, statements: { sql: string; args: unknown[] }[]): WriterReply {
  const db = connection;
  if (!db) return { type: "done", id, error: "the writer's connection is not open" };
  try {
    db.exec("BEGIN IMMEDIATE");
    for (const { sql, args } of statements) statement(db, sql).run(args.map(bindable));
    db.exec("COMMIT");
    return { type: "done", id, error: null };
  } catch (e) {
    try {
      if (db.inTransaction) db.exec("ROLLBACK");
    } catch {
      // The transaction is gone either way; the batch's error is what the caller needs.
    }
    return { type: "done", id, error: describe(e) };
  }
}

function statement(db: InstanceType<typeof Sqlite>, sql: string) {
  let s = prepared.get(sql);
  if (!s) {
    if (prepared.size >= MAX_PREPARED) prepared.clear();
    prepared.set(sql, s = db.prepare(sql));
  }
  return s;
}

/**
 * A value the native binding takes. It aborts the process on a boolean (measured: "not yet
 * implemented: bool"), so booleans become 1 and 0 as the libSQL client sends them; a Date
 * becomes its milliseconds, as there.
 */
function bindable(v: unknown): unknown {
  if (typeof v === "boolean") return v ? 1 : 0;
  if (v instanceof Date) return v.valueOf();
  return v === undefined ? null : v;
}

/** "SQLITE_CONSTRAINT_UNIQUE: UNIQUE constraint failed: …", as the libSQL client words it. */
function describe(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  const message = e instanceof Error ? e.message : String(e);
  return typeof code === "string" ? `${code}: ${message}` : message;
}

function reply(message: WriterReply): void {
  self.postMessage(message);
}
