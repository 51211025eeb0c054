/**
 * Prepared statements for the hot reads (status, list). The libSQL client prepares every
 * statement again and builds its row objects column by column: a primary-key read of a job
 * took 0.7 ms through it and 0.07 ms as a prepared statement of the `libsql` package.
 *
 * The reader is a second connection from the same native library the client uses, made
 * read-only with `query_only` (the package ignores its `readonly` option). It must be the same library: two copies of SQLite in one process do not share
 * their POSIX locks, and closing one copy's file releases the other's. WAL lets it read
 * while the writer commits, and it sees every committed (acknowledged) transaction.
 * Remote databases have no file; they keep using the client.
 */
import type { Client, InValue } from "@libsql/client";
import Sqlite from "libsql";

export type Row = Record<string, unknown>;

interface Reader {
  connection: InstanceType<typeof Sqlite>;
  statements: Map<string, { all(...args: InValue[]): unknown[] }>;
}

const readers = new WeakMap<Client, Reader>();

/** Opens the prepared-statement reader of a local database file, for `client`'s reads. */
export function attachReader(client: Client, path: string): () => void {
  const connection = new Sqlite(path);
  connection.exec("PRAGMA query_only = ON");
  readers.set(client, { connection, statements: new Map() });
  return () => {
    readers.delete(client);
    connection.close();
  };
}

/** The rows of `sql`, through a cached prepared statement when the database is a file. */
export async function readRows(client: Client, sql: string, args: InValue[]): Promise<Row[]> {
  const reader = readers.get(client);
  if (!reader) return (await client.execute({ sql, args })).rows as unknown as Row[];
  let statement = reader.statements.get(sql);
  if (!statement) reader.statements.set(sql, statement = reader.connection.prepare(sql));
  return statement.all(...args) as Row[];
}
