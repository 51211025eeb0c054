/**
 * The writer thread (db/writer.ts): the event store's commits run on a thread of their own,
 * on a real libSQL file. Commits are visible to the main thread's reads as soon as a unit
 * resolves; a batch that fails is rolled back whole and its error reaches the store with its
 * words (a duplicate job is a ConflictError); values the native binding cannot take are
 * converted; closing ends the thread and later writes are refused. While the thread starts,
 * writes commit on the main thread's connection, in order, and the thread takes over.
 */
import assert from "node:assert/strict";
import { submitJob } from "../jobs/service.ts";
import { ConflictError } from "../errors.ts";
import { ThreadWriter } from "../db/writer.ts";
import { openTestStore, pollUntil, testJobDeps } from "./helpers/app.ts";
import { within } from "./helpers/server.ts";

const SUBMIT = { model_type: "quick", retrain: true, use_cv: false, hyperparameters: null };

Deno.test("the store commits on the writer thread", async (t) => {
  await using base = await openTestStore(undefined, { open: { writerThread: true } });
  const { dir, store, database } = base;
  const deps = await testJobDeps(store, dir, { quick: { command: ["true"] } });
  // The first write starts the thread; the steps below run on it.
  await database.write(["CREATE TABLE warm_up (a)"]);
  await pollUntil(() => database.writerThreadReady() || null, "the writer thread to open");

  await t.step("a submission is in the database once it resolves", async () => {
    const { job } = await submitJob(deps, SUBMIT, { typeStatus: 404 });
    const rs = await database.client.execute({
      sql: "SELECT status, (SELECT count(*) FROM events WHERE job_id = ?) AS n FROM jobs " +
        "WHERE job_id = ?",
      args: [job.job_id, job.job_id],
    });
    assert.equal(rs.rows[0]?.status, "started");
    assert.equal(rs.rows[0]?.n, 1);
  });

  await t.step("a failing unit is rolled back alone, with the database's words", async () => {
    const fixed = { ...deps, newId: () => "writer-thread-dup" };
    await submitJob(fixed, SUBMIT, { typeStatus: 404 });
    await assert.rejects(submitJob(fixed, SUBMIT, { typeStatus: 404 }), ConflictError);
    const rs = await database.client.execute({
      sql: "SELECT count(*) AS n FROM events WHERE job_id = ?",
      args: ["writer-thread-dup"],
    });
    assert.equal(rs.rows[0]?.n, 1, "the first submission's event alone");
    const after = await submitJob(deps, SUBMIT, { typeStatus: 404 });
    assert.equal((await store.load(after.job.job_id))?.status, "started", "the store goes on");
  });

  await t.step("booleans and dates are bound as the libSQL client binds them", async () => {
    await database.write(["CREATE TABLE writer_values (a, b)"]);
    await database.write([{
      sql: "INSERT INTO writer_values (a, b) VALUES (?, ?), (?, ?)",
      args: [true, new Date(5), false, null],
    }]);
    const rs = await database.client.execute("SELECT a, b FROM writer_values ORDER BY rowid");
    assert.deepEqual(rs.rows.map((r) => [r.a, r.b]), [[1, 5], [0, null]]);
  });

  await t.step("a statement that fails rolls back the statements before it", async () => {
    await assert.rejects(
      database.write([
        { sql: "INSERT INTO writer_values (a) VALUES (?)", args: [7] },
        "INSERT INTO no_such_table VALUES (1)",
      ]),
      /no such table: no_such_table/,
    );
    const rs = await database.client.execute("SELECT count(*) AS n FROM writer_values");
    assert.equal(rs.rows[0]?.n, 2);
  });
});

Deno.test("closing ends the writer thread; a later write is refused", async () => {
  await using base = await openTestStore(undefined, { open: { writerThread: true } });
  await base.database.write(["CREATE TABLE closing (a)"]);
  await pollUntil(() => base.database.writerThreadReady() || null, "the writer thread to open");
  await base.database.write(["INSERT INTO closing VALUES (0)"]);
  await base.database.close();
  await assert.rejects(base.database.write(["INSERT INTO closing VALUES (1)"]), /closed/);
});

Deno.test("an idle writer thread ends, and the next write starts another", async () => {
  await using base = await openTestStore();
  const path = `${base.dir}/trainer.db`;
  const writer = new ThreadWriter(path, {
    busyTimeoutMs: 5000,
    autocheckpointPages: 1000,
    idleMs: 50,
  });
  try {
    assert.equal(writer.running, false, "no thread before the first write");
    await writer.write(["CREATE TABLE idle_writes (a)"]);
    assert.equal(writer.running, true);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(writer.running, false, "ended after its idle time");
    await writer.write([{ sql: "INSERT INTO idle_writes VALUES (?)", args: [1] }]);
    assert.equal(writer.running, true);
    const rs = await base.database.client.execute("SELECT count(*) AS n FROM idle_writes");
    assert.equal(rs.rows[0]?.n, 1);
  } finally {
    await writer.close();
  }
});

Deno.test("while the thread starts, writes commit on the main thread's, in order", async () => {
  await using base = await openTestStore();
  const path = `${base.dir}/trainer.db`;
  const here: string[] = [];
  const writer = new ThreadWriter(path, {
    busyTimeoutMs: 5000,
    autocheckpointPages: 1000,
    fallback: async (statements) => {
      here.push(...statements.map((s) => typeof s === "string" ? s : s.sql));
      await base.database.client.batch(statements, "write");
    },
  });
  try {
    await writer.write(["CREATE TABLE starting (n)"]);
    await writer.write([{ sql: "INSERT INTO starting VALUES (?)", args: [1] }]);
    assert.equal(writer.threadReady, false, "a thread takes tens of milliseconds to open");
    assert.equal(here.length, 2, "both committed on the main thread's connection");
    await pollUntil(() => writer.threadReady || null, "the writer thread to open");
    await writer.write([{ sql: "INSERT INTO starting VALUES (?)", args: [2] }]);
    await assert.rejects(
      writer.write([
        { sql: "INSERT INTO starting VALUES (?)", args: [3] },
        "INSERT INTO nope VALUES (1)",
      ]),
      /no such table: nope/,
    );
    assert.equal(here.length, 2, "the thread took over once open");
    const rs = await base.database.client.execute("SELECT n FROM starting ORDER BY rowid");
    assert.deepEqual(rs.rows.map((r) => r.n), [1, 2]);
  } finally {
    await writer.close();
  }
  assert.equal(writer.running, false);
});

Deno.test("a failing batch on the main thread's connection rolls back whole too", async () => {
  await using base = await openTestStore(undefined, { open: { writerThread: true } });
  const { database } = base;
  assert.equal(database.writerThreadReady(), false);
  await database.write(["CREATE TABLE early (a)"]);
  await assert.rejects(
    database.write([
      { sql: "INSERT INTO early VALUES (?)", args: [true] },
      "INSERT INTO no_such_table VALUES (1)",
    ]),
    /no such table: no_such_table/,
  );
  assert.equal(database.writerThreadReady(), false, "both went to the main thread's connection");
  const rs = await database.client.execute("SELECT count(*) AS n FROM early");
  assert.equal(rs.rows[0]?.n, 0);
});

Deno.test("a thread started by writes on the main thread ends when idle too", async () => {
  await using base = await openTestStore();
  const writer = new ThreadWriter(`${base.dir}/trainer.db`, {
    busyTimeoutMs: 5000,
    autocheckpointPages: 1000,
    idleMs: 50,
    fallback: async (statements) => void await base.database.client.batch(statements, "write"),
  });
  try {
    await writer.write(["CREATE TABLE idle_after_start (a)"]);
    await pollUntil(() => writer.threadReady || null, "the writer thread to open");
    await pollUntil(() => !writer.running || null, "the idle thread to end");
  } finally {
    await writer.close();
  }
});

Deno.test("a thread that cannot open: writes stay on the main thread, said once", async () => {
  const here: unknown[] = [];
  const errors: string[] = [];
  const writer = new ThreadWriter("/nonexistent/trainer-writer-test/t.db", {
    busyTimeoutMs: 5000,
    autocheckpointPages: 1000,
    fallback: (statements) => Promise.resolve(void here.push(...statements)),
    onError: (m) => errors.push(m),
  });
  await writer.write(["SELECT 1"]);
  await pollUntil(() => errors.length > 0 || null, "the thread's failure to be reported");
  for (let i = 0; i < 5; i++) await writer.write(["SELECT 2"]);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(writer.running, false, "no thread started again");
  assert.equal(here.length, 6, "every write committed on the main thread's connection");
  assert.equal(errors.length, 1);
  assert.match(errors[0], /cannot open/);
  await writer.close();
});

Deno.test("closing while a thread is starting and fails to open does not hang", async () => {
  const writer = new ThreadWriter("/nonexistent/trainer-writer-test/t.db", {
    busyTimeoutMs: 5000,
    autocheckpointPages: 1000,
    fallback: async () => {},
    onError: () => {},
  });
  await writer.write(["SELECT 1"]);
  // The thread is created on the next macrotask; close once it exists, before it fails.
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(writer.running, true);
  await within(10_000, writer.close(), "close() to settle");
});
