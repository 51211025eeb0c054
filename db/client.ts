/** Opens the libSQL database (embedded file or remote server) and applies migrations. */
import { type Client, createClient, type InStatement } from "@libsql/client";
import { createClient as createRemoteClient } from "@libsql/client/web";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { attachLogDir, logDirFor } from "./log_files.ts";
import { attachReader } from "./reader.ts";
import { type Checkpointer, checkpointer, WRITER_AUTOCHECKPOINT_PAGES } from "./checkpointer.ts";
import * as schema from "./schema.ts";
import { ThreadWriter } from "./writer.ts";

// `$client` lets the hot read paths run raw statements on the same connection.
export type Db = LibSQLDatabase<typeof schema> & { $client: Client };

export interface Database {
  client: Client;
  db: Db;
  /**
   * Runs `statements` as one write transaction; resolves once it is committed (durable).
   * The event store's commits go through here: on the writer thread when there is one.
   */
  write(statements: InStatement[]): Promise<void>;
  /** True while writes commit on the writer thread (it starts with the first write). */
  writerThreadReady(): boolean;
  /** Tells the database a write of about `bytes` of payload committed (see checkpointer.ts). */
  committed(bytes: number): void;
  /** Closes it; resolves once the writer and checkpoint threads, if any, have closed. */
  close(): Promise<void>;
}

export interface OpenOptions {
  /**
   * Checkpoints the WAL on a thread of its own (db/checkpointer.ts) instead of in the commit
   * that fills it. For the server's one long-lived database; tests and tools that open a file
   * briefly keep SQLite's default.
   */
  checkpointThread?: boolean;
  /**
   * Commits on a thread of its own (db/writer.ts), so that a commit's fsync does not hold the
   * main thread. For the server's database when it is the only writer (WORKERS=local); a
   * shared store's other writes (leases) stay on the main thread's connection.
   */
  writerThread?: boolean;
}

/** How long a write waits for another connection's (or process's) write lock. */
const BUSY_TIMEOUT_MS = 5000;
const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));

/** Opens `url`, creating a local file's folder, and brings the schema up to date. */
export async function openDatabase(
  url: string,
  authToken?: string,
  options: OpenOptions = {},
): Promise<Database> {
  if (url.startsWith("file:")) {
    const path = url.slice("file:".length);
    if (path && path !== ":memory:") await Deno.mkdir(dirname(path), { recursive: true });
  }
  // A server (sqld, Turso) is reached with the web client: HTTP batches, no native addon.
  // A local file's client pools connections: calls that overlap (a Promise.all of reads)
  // open more, and a PRAGMA reaches only the connection that ran it. Without `timeout` those
  // others fail with SQLITE_BUSY at once when another process holds the write lock.
  const client = url.startsWith("file:")
    ? createClient({ url, authToken, timeout: BUSY_TIMEOUT_MS })
    : createRemoteClient({ url, authToken });
  if (url.startsWith("file:")) {
    // WAL lets readers proceed during a commit; synchronous=FULL keeps every acknowledged
    // commit durable across power loss (a 2xx means the events are on disk).
    await client.execute("PRAGMA journal_mode = WAL");
    await client.execute("PRAGMA synchronous = FULL");
    await client.execute(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  }
  const db = drizzle(client, { schema });
  await migrate(db, { migrationsFolder: MIGRATIONS });
  const path = url.startsWith("file:") ? url.slice("file:".length) : "";
  const file = path !== "" && path !== ":memory:";
  const detach = file ? attachReader(client, path) : () => {};
  if (file) attachLogDir(client, logDirFor(path));
  let checkpoints: Checkpointer | null = null;
  let autocheckpointPages = 1000;
  const threadWrites = file && options.writerThread;
  if (file && options.checkpointThread) {
    // On the connection the store writes on: the writer thread's (below), or else the
    // client's, whose calls are synchronous, so its pool hands that one out again unless calls
    // overlap. A second connection keeps the default and checkpoints in its own commits,
    // which is only slower.
    autocheckpointPages = WRITER_AUTOCHECKPOINT_PAGES;
    if (!threadWrites) await client.execute(`PRAGMA wal_autocheckpoint = ${autocheckpointPages}`);
    checkpoints = checkpointer(path);
  }
  const writeHere = async (statements: InStatement[]) =>
    void await client.batch(statements, "write");
  const writer = threadWrites
    ? new ThreadWriter(path, {
      busyTimeoutMs: BUSY_TIMEOUT_MS,
      autocheckpointPages,
      fallback: writeHere,
      onError: (m) => console.error(`[trainer] ${m}`),
    })
    : null;
  return {
    client,
    db,
    write: writer ? (statements) => writer.write(statements) : writeHere,
    writerThreadReady: () => writer?.threadReady ?? false,
    committed: (bytes) => checkpoints?.committed(bytes),
    close: async () => {
      // After the batches already sent: the store flushes before it closes the database.
      await writer?.close();
      const stopped = checkpoints?.stop();
      detach();
      client.close();
      await stopped;
    },
  };
}
