/**
 * The event log is append-only in the database itself, whoever writes to it: checked with
 * the sqlite3 CLI, outside the app, since that is how the REPLACE bypass was found.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { drizzle } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import { createClient } from "@libsql/client";
import { openDatabase } from "../db/client.ts";
import { EventStore } from "../db/event_store.ts";
import { systemClock } from "../db/clock.ts";
import { ConflictError } from "../errors.ts";
import { cancel, submit } from "./helpers/jobs.ts";
import { tempDir } from "./helpers/app.ts";
import { ROOT } from "./helpers/server.ts";

const JOB_A = "00000000-0000-4000-8000-00000000000a";
const JOB_B = "00000000-0000-4000-8000-00000000000b";

/** Runs SQL through the sqlite3 CLI; resolves with its exit status and output. */
async function sqlite3(path: string, sql: string) {
  const out = await new Deno.Command("sqlite3", {
    // A busy timeout: a connection of the app that is still closing must not fail the run
    // with "database is locked" (it did, intermittently, on loaded machines).
    args: ["-bail", "-cmd", ".timeout 10000", path, sql],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

async function allEvents(path: string): Promise<string> {
  const res = await sqlite3(path, "SELECT seq, job_id, version, type, data, at FROM events");
  assert.equal(res.code, 0, res.stderr);
  return res.stdout;
}

/** A database holding two jobs (A submitted and cancelled, B submitted), closed again. */
async function seededDatabase(dir: string): Promise<string> {
  const path = join(dir, "trainer.db");
  const database = await openDatabase(`file:${path}`);
  const store = await EventStore.open(database, systemClock);
  await store.run((uow) => uow.execute(JOB_A, submit()));
  await store.run((uow) => uow.execute(JOB_A, cancel));
  await store.run((uow) => uow.execute(JOB_B, submit()));
  await store.flush();
  database.close();
  return path;
}

Deno.test("append-only holds against the sqlite3 CLI", async (t) => {
  await using dir = await tempDir();
  const path = await seededDatabase(dir.path);
  const before = await allEvents(path);
  assert.match(before, /submitted/);

  const attempts: [string, string][] = [
    [
      "REPLACE INTO on an existing seq",
      `REPLACE INTO events (seq, job_id, version, type, data, at)
         VALUES (1, '${JOB_A}', 1, 'completed', '{}', 'x')`,
    ],
    [
      "INSERT OR REPLACE on an existing (job_id, version)",
      `INSERT OR REPLACE INTO events (seq, job_id, version, type, data, at)
         VALUES (999, '${JOB_B}', 1, 'completed', '{}', 'x')`,
    ],
    [
      "INSERT OR IGNORE on an existing seq",
      `INSERT OR IGNORE INTO events (seq, job_id, version, type, data, at)
         VALUES (1, '${JOB_B}', 7, 'completed', '{}', 'x')`,
    ],
    [
      "an upsert on an existing seq",
      `INSERT INTO events (seq, job_id, version, type, data, at)
         VALUES (1, '${JOB_A}', 9, 'completed', '{}', 'x')
         ON CONFLICT (seq) DO UPDATE SET type = 'completed'`,
    ],
    ["UPDATE", "UPDATE events SET data = '{}' WHERE seq = 2"],
    ["UPDATE OR REPLACE", "UPDATE OR REPLACE events SET seq = 1 WHERE seq = 2"],
    ["DELETE", `DELETE FROM events WHERE job_id = '${JOB_A}'`],
  ];
  for (const [name, sql] of attempts) {
    await t.step(`${name} fails and changes nothing`, async () => {
      const res = await sqlite3(path, sql);
      assert.notEqual(res.code, 0, `sqlite3 accepted: ${sql}`);
      assert.match(res.stderr, /events are append-only/);
      assert.equal(await allEvents(path), before);
    });
  }

  await t.step("recursive_triggers on does not open a way round", async () => {
    const res = await sqlite3(
      path,
      `PRAGMA recursive_triggers = ON; REPLACE INTO events (seq, job_id, version, type, data, at)
         VALUES (2, '${JOB_A}', 2, 'submitted', '{}', 'x')`,
    );
    assert.notEqual(res.code, 0);
    assert.equal(await allEvents(path), before);
  });

  await t.step("a new event with a fresh seq and version is still appended", async () => {
    const res = await sqlite3(
      path,
      `INSERT INTO events (seq, job_id, version, type, data, at)
         VALUES (100, '${JOB_B}', 2, 'cancelled', '{"reason":"cli"}', 'x')`,
    );
    assert.equal(res.code, 0, res.stderr);
    assert.match(await allEvents(path), /cli/);
  });
});

Deno.test("a database made before the REPLACE guard gets it when it opens", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "old.db");
  // The migrations as they stood before 0002: only the UPDATE and DELETE triggers.
  const oldMigrations = join(dir.path, "migrations");
  await Deno.mkdir(join(oldMigrations, "meta"), { recursive: true });
  const journal = JSON.parse(await Deno.readTextFile(join(ROOT, "migrations/meta/_journal.json")));
  journal.entries = journal.entries.filter((e: { idx: number }) => e.idx < 2);
  await Deno.writeTextFile(join(oldMigrations, "meta/_journal.json"), JSON.stringify(journal));
  for (const e of journal.entries as { tag: string }[]) {
    await Deno.copyFile(
      join(ROOT, "migrations", `${e.tag}.sql`),
      join(oldMigrations, `${e.tag}.sql`),
    );
  }
  const client = createClient({ url: `file:${path}` });
  await migrate(drizzle(client), { migrationsFolder: oldMigrations });
  client.close();
  const triggers = async () =>
    (await sqlite3(
      path,
      "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events' ORDER BY name",
    ))
      .stdout.trim().split("\n");
  assert.deepEqual(await triggers(), ["events_no_delete", "events_no_update"]);

  (await openDatabase(`file:${path}`)).close();
  assert.deepEqual(await triggers(), [
    "events_no_delete",
    "events_no_replace_seq",
    "events_no_replace_version",
    "events_no_update",
  ]);
});

Deno.test("a second job with an existing id is still a conflict, not an internal error", async () => {
  await using dir = await tempDir();
  const path = await seededDatabase(dir.path);
  const database = await openDatabase(`file:${path}`);
  try {
    // Job A ended, so the store no longer holds it in memory: only the database can refuse.
    const store = await EventStore.open(database, systemClock);
    await assert.rejects(
      store.run((uow) => uow.execute(JOB_A, submit())),
      (e) => e instanceof ConflictError && /already exists/.test(e.message),
    );
  } finally {
    database.close();
  }
});
