/**
 * Log lines are stored as one text per log event since migration 0007. Every reader shows
 * them as `{stream, lines}` as before: events stored before the migration (lines in the
 * JSON data) and after it read back exactly as they were written, through the status tail,
 * the logs and events pages, the SSE stream and a replay.
 */
import assert from "node:assert/strict";
import { createClient } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import { join } from "node:path";
import { readSse, type SseMessage } from "../cli/sse.ts";
import { upsertJobs } from "../db/job_sql.ts";
import { replay } from "../db/rebuild.ts";
import { type Command, decide } from "../jobs/decide.ts";
import { evolve, type JobState } from "../jobs/state.ts";
import { buildApp, type TestApp } from "./helpers/app.ts";
import { exit, exitReport, JOB, logLines, start, submit } from "./helpers/jobs.ts";

const MIGRATIONS = new URL("../migrations/", import.meta.url);

/** What an old server wrote: lines as JSON, including what no collector makes today. */
const OLD_LOGS: { stream: "stdout" | "stderr"; lines: string[] }[] = [
  { stream: "stdout", lines: ["first", "", 'quote " backslash \\ tab \t', "emoji 😀 é"] },
  // A remote worker could send a line holding a newline, or an event with no line at all.
  { stream: "stdout", lines: ["one line\nwith a newline inside"] },
  { stream: "stdout", lines: [] },
  { stream: "stderr", lines: ["warning: old"] },
];

/**
 * Writes `path` as a server before migration 0007 left it: the schema of migrations
 * 0000-0006, and `commands` decided and stored the way its event store stored them.
 */
async function oldDatabase(path: string, commands: Command[]): Promise<void> {
  const folder = await Deno.makeTempDir({ prefix: "trainer-migrations-" });
  try {
    const journal = JSON.parse(await Deno.readTextFile(new URL("meta/_journal.json", MIGRATIONS)));
    const entries = journal.entries.filter((e: { idx: number }) => e.idx <= 6);
    await Deno.mkdir(join(folder, "meta"));
    for (const e of entries) {
      await Deno.copyFile(new URL(`${e.tag}.sql`, MIGRATIONS), join(folder, `${e.tag}.sql`));
    }
    await Deno.writeTextFile(
      join(folder, "meta", "_journal.json"),
      JSON.stringify({ ...journal, entries }),
    );
    const client = createClient({ url: `file:${path}` });
    await migrate(drizzle(client), { migrationsFolder: folder });
    let state: JobState | undefined;
    let seq = 0;
    for (const command of commands) {
      for (const event of decide(command, state, JOB)) {
        seq++;
        const e = { seq, job_id: JOB, version: seq, at: new Date(seq * 1000).toISOString(), event };
        state = evolve(state, e);
        await client.execute({
          sql:
            "INSERT INTO events (seq, job_id, version, type, data, at) VALUES (?, ?, ?, ?, ?, ?)",
          args: [e.seq, e.job_id, e.version, event.type, JSON.stringify(event.data), e.at],
        });
      }
    }
    await client.batch(upsertJobs([state!]), "write");
    client.close();
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
}

const output = (logs: typeof OLD_LOGS): Command => ({
  type: "output",
  events: logs.map((data) => ({ type: "log", data })),
});

/** Every log event of the job through GET /train/logs, as `{stream, lines}`. */
async function logsPages(app: TestApp, after = 0) {
  const entries: { stream: string; lines: string[] }[] = [];
  for (;;) {
    const body = (await app.request("GET", `/train/logs/${JOB}?after=${after}&limit=2`)).body;
    entries.push(...body.entries.map((e: { stream: string; lines: string[] }) => ({
      stream: e.stream,
      lines: e.lines,
    })));
    if (!body.more) return entries;
    after = body.next_after;
  }
}

/** The job's log events as its SSE stream replays them (the job has ended). */
async function streamed(app: TestApp): Promise<{ stream: string; lines: string[] }[]> {
  const res = await app.app.request(`/train/job/${JOB}/stream?types=log`);
  assert.equal(res.status, 200);
  const out: { stream: string; lines: string[] }[] = [];
  for await (const item of readSse(res.body!)) {
    if (item.kind !== "message") continue;
    const m: SseMessage = item.message;
    if (m.event === "end") break;
    out.push(JSON.parse(m.data).data);
  }
  return out;
}

Deno.test("log events stored before migration 0007 read back as they were written", async () => {
  await using app = await buildApp({
    seed: (path) => oldDatabase(path, [submit(), start(), output(OLD_LOGS), exit()]),
  });
  const status = (await app.request("GET", `/train/status/${JOB}`)).body.data;
  assert.equal(status.status, "completed");
  assert.equal(status.log_lines, 6);
  assert.equal(
    status.logs,
    [...OLD_LOGS[0].lines, ...OLD_LOGS[1].lines, ...OLD_LOGS[3].lines].join("\n"),
  );
  assert.deepEqual(await logsPages(app), OLD_LOGS);
  const events = (await app.request("GET", `/train/job/${JOB}/events?type=log`)).body.events;
  assert.deepEqual(events.map((e: { data: unknown }) => e.data), OLD_LOGS);
  assert.deepEqual(await streamed(app), OLD_LOGS);
  assert.deepEqual(await replay(app.database), new Map([[JOB, await app.store.load(JOB)]]));
});

Deno.test("old and new log events of one job read back in order", async () => {
  await using app = await buildApp({
    seed: (path) => oldDatabase(path, [submit(), start(), output(OLD_LOGS)]),
  });
  await app.store.run((uow) => uow.execute(JOB, logLines("new 1", "", "new 3")));
  await app.store.run((uow) => uow.execute(JOB, exit()));
  const raw = await app.database.client.execute(
    "SELECT data, log_text FROM events WHERE type = 'log' ORDER BY seq DESC LIMIT 1",
  );
  assert.deepEqual(raw.rows.map((r) => [r.data, r.log_text]), [
    ['{"stream":"stdout","count":3}', "new 1\n\nnew 3"],
  ]);
  const all = [...OLD_LOGS, { stream: "stdout" as const, lines: ["new 1", "", "new 3"] }];
  assert.deepEqual(await logsPages(app), all);
  assert.deepEqual(await streamed(app), all);
  const status = (await app.request("GET", `/train/status/${JOB}`)).body.data;
  assert.equal(status.log_lines, 9);
  assert.ok(status.logs.endsWith("warning: old\nnew 1\n\nnew 3"), status.logs);
  assert.deepEqual(await replay(app.database), new Map([[JOB, await app.store.load(JOB)]]));
});

Deno.test("a log text longer than a stream page goes out in slices, as the same lines", async () => {
  await using app = await buildApp();
  // Escapes, a "\n" that is two characters, and a pair cut by each 16 KiB slice boundary.
  const lines: string[] = [];
  for (let i = 0; lines.join("\n").length < 100_000; i++) {
    lines.push(`${i} "q" \\n \\ 😀 \u0001 é ${"x".repeat(i % 97)}`);
  }
  const text = lines.join("\n");
  const at = 16 * 1024 - 1;
  const paired = text.slice(0, at) + "😀" + text.slice(at + 2);
  const want = paired.split("\n");
  await app.store.run((uow) => uow.execute(JOB, submit()));
  await app.store.run((uow) => uow.execute(JOB, start()));
  await app.store.run((uow) =>
    uow.execute(JOB, {
      type: "output",
      events: [{ type: "log", data: { stream: "stderr", text: paired, count: want.length } }],
    })
  );
  await app.store.run((uow) => uow.execute(JOB, exit(exitReport({ artifact: null }))));
  assert.deepEqual(await streamed(app), [{ stream: "stderr", lines: want }]);
  assert.deepEqual(await logsPages(app), [{ stream: "stderr", lines: want }]);
  assert.equal((await app.store.load(JOB))?.log_lines, want.length);
});

Deno.test("lines that joining would change are stored as JSON, and read back the same", async () => {
  await using app = await buildApp();
  await app.store.run((uow) => uow.execute(JOB, submit()));
  await app.store.run((uow) => uow.execute(JOB, start()));
  // As a remote worker may send them: a line holding a newline, and an event with no line.
  const sent = [
    { stream: "stdout" as const, lines: ["a\nb", "c"] },
    { stream: "stdout" as const, lines: [] },
    { stream: "stdout" as const, lines: ["plain", ""] },
  ];
  await app.store.run((uow) => uow.execute(JOB, output(sent)));
  const raw = await app.database.client.execute(
    "SELECT log_text FROM events WHERE type = 'log' ORDER BY seq",
  );
  assert.deepEqual(raw.rows.map((r) => r.log_text), [null, null, "plain\n"]);
  assert.deepEqual(await logsPages(app), sent);
  assert.equal((await app.store.load(JOB))?.log_lines, 4);
});
