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
import type { Client, InValue, ResultSet } from "@libsql/client";
import Sqlite from "libsql";

export type Row = Record<string, unknown>;

interface Statement {
  all(...args: InValue[]): unknown[];
  get(...args: InValue[]): unknown;
}

interface Reader {
  connection: InstanceType<typeof Sqlite>;
  /** Statements returning keyed rows. */
  statements: Map<string, Statement>;
  /** Statements returning each row as its values in column order (raw mode). */
  raw: Map<string, Statement>;
}

const readers = new WeakMap<Client, Reader>();

/** Opens the prepared-statement reader of a local database file, for `client`'s reads. */
export function attachReader(client: Client, path: string): () => void {
  const connection = new Sqlite(path);
  connection.exec("PRAGMA query_only = ON");
  readers.set(client, { connection, statements: new Map(), raw: new Map() });
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

/**
 * The rows of `sql`, each as its values in column order. The driver's keyed rows are built
 * column by column: for a job's 31 columns that cost about 20 us a row.
 */
export async function readValues(
  client: Client,
  sql: string,
  args: InValue[],
): Promise<unknown[][]> {
  const reader = readers.get(client);
  if (!reader) return valuesOf(await client.execute({ sql, args }));
  return rawStatement(reader, sql).all(...args) as unknown[][];
}

/**
 * The first row of `sql` as its values in column order, or undefined. For one row, `get` is
 * cheaper than `all`, which sets up an iterator (10 us more for `SELECT 1`).
 */
export async function readFirst(
  client: Client,
  sql: string,
  args: InValue[],
): Promise<unknown[] | undefined> {
  const reader = readers.get(client);
  if (!reader) return valuesOf(await client.execute({ sql, args }))[0];
  return (rawStatement(reader, sql).get(...args) ?? undefined) as unknown[] | undefined;
}

function rawStatement(reader: Reader, sql: string): Statement {
  let statement = reader.raw.get(sql);
  if (!statement) reader.raw.set(sql, statement = reader.connection.prepare(sql).raw(true));
  return statement;
}

function valuesOf(rs: ResultSet): unknown[][] {
  const width = rs.columns.length;
  return rs.rows.map((row) => Array.from({ length: width }, (_, i) => row[i]));
}
