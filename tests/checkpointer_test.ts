/**
 * The server's database checkpoints its WAL on a thread of its own: commits are durable as
 * before, the pages reach the database file without a checkpoint in the writer's commit, and
 * what was written reads back after a reopen.
 */
import assert from "node:assert/strict";
import { openDatabase } from "../db/client.ts";
import { checkpointer, WRITER_AUTOCHECKPOINT_PAGES } from "../db/checkpointer.ts";
import { pollUntil, tempDir } from "./helpers/app.ts";

const ROW = "x".repeat(256 * 1024);
const ROWS = 16;

Deno.test("the checkpoint thread copies committed pages into the database file", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/t.db`;
  const database = await openDatabase(`file:${path}`, undefined, { checkpointThread: true });
  try {
    const auto = await database.client.execute("PRAGMA wal_autocheckpoint");
    assert.equal(Number(Object.values(auto.rows[0])[0]), WRITER_AUTOCHECKPOINT_PAGES);
    await database.client.execute("CREATE TABLE big (n INTEGER PRIMARY KEY, text TEXT)");
    const before = (await Deno.stat(path)).size;
    // 4 MiB in all, SQLite's own cadence, far below the writer's raised bound: only the
    // thread can have copied them.
    for (let n = 1; n <= ROWS; n++) {
      await database.client.batch([{ sql: "INSERT INTO big VALUES (?, ?)", args: [n, ROW] }]);
      database.committed(ROW.length);
    }
    await pollUntil(
      async () => (await Deno.stat(path)).size >= before + (ROWS - 2) * ROW.length,
      "the rows to reach the database file",
    );
  } finally {
    await database.close();
  }
  const again = await openDatabase(`file:${path}`);
  try {
    const rs = await again.client.execute("SELECT count(*) AS n, sum(length(text)) AS b FROM big");
    assert.deepEqual([Number(rs.rows[0].n), Number(rs.rows[0].b)], [ROWS, ROWS * ROW.length]);
  } finally {
    await again.close();
  }
});

Deno.test("a database opened without the thread keeps SQLite's checkpoint", async () => {
  await using dir = await tempDir();
  const database = await openDatabase(`file:${dir.path}/t.db`);
  try {
    const auto = await database.client.execute("PRAGMA wal_autocheckpoint");
    assert.equal(Number(Object.values(auto.rows[0])[0]), 1000);
    database.committed(64 * 1024 * 1024);
  } finally {
    await database.close();
  }
});

Deno.test("a checkpoint thread that fails is reported, and the process goes on", async () => {
  await using dir = await tempDir();
  const errors: string[] = [];
  // A folder that does not exist: the thread cannot open the file.
  const checkpoints = checkpointer(`${dir.path}/missing/t.db`, (m) => errors.push(m));
  checkpoints.committed(64 * 1024 * 1024);
  await pollUntil(() => errors.length > 0, "the failure to be reported");
  assert.match(errors[0], /checkpoint thread failed/);
  // The next checkpoint starts a new thread, which fails the same way.
  checkpoints.committed(64 * 1024 * 1024);
  await pollUntil(() => errors.length > 1, "the second failure to be reported");
  await checkpoints.stop();
});
