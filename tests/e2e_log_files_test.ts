/**
 * E2E: with a local database (LOG_FILES, the default) a job's stdout goes to
 * `<database>-logs/<job id>.stdout`, and its log events hold ranges of that file. Every
 * reader shows the same lines as before; a job that prints nothing leaves no file; with
 * LOG_FILES=0 the lines are stored in the database as before.
 */
import assert from "node:assert/strict";
import { createClient } from "@libsql/client";
import { join } from "node:path";
import { openStream } from "./helpers/sse.ts";
import { http, Server, waitTerminal, Workspace } from "./helpers/server.ts";

const LINES = 3000;
/** Prints LINES numbered lines and a line to stderr, then writes its model. */
const SCRIPT = `i=1
while [ $i -le ${LINES} ]; do echo "line $i é"; i=$((i+1)); done
echo "to stderr" >&2
printf m > "$TRAIN_ARTIFACT_PATH"
`;
const want = Array.from({ length: LINES }, (_, i) => `line ${i + 1} é`);

async function run(base: string, type: string): Promise<string> {
  const r = await http(base, "POST", `/train/${type}`, { retrain: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const id = r.body.data.job_id;
  assert.equal((await waitTerminal(base, id, 60_000)).status, "completed");
  return id;
}

async function pagedLines(base: string, id: string, stream = "stdout"): Promise<string[]> {
  const lines: string[] = [];
  for (let after = 0;;) {
    const page = await http(base, "GET", `/train/logs/${id}?after=${after}&limit=3`);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    for (const e of page.body.entries) if (e.stream === stream) lines.push(...e.lines);
    if (!page.body.more) return lines;
    after = page.body.next_after;
  }
}

async function logRows(dbPath: string) {
  const client = createClient({ url: `file:${dbPath}` });
  try {
    const rs = await client.execute(
      "SELECT job_id, data, log_text FROM events WHERE type = 'log' ORDER BY seq",
    );
    return rs.rows.map((r) => ({
      job_id: String(r.job_id),
      data: JSON.parse(String(r.data)),
      text: r.log_text === null ? null : String(r.log_text),
    }));
  } finally {
    client.close();
  }
}

Deno.test("e2e: a local job's stdout is kept in its log file and read back", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const env = ws.env(
      await ws.registry({
        printer: ["/bin/sh", await ws.write("print.sh", SCRIPT)],
        silent: ["/bin/sh", "-c", 'printf m > "$TRAIN_ARTIFACT_PATH"'],
      }),
    );
    const dbPath = join(ws.dir, "t.db");
    const logDir = `${dbPath}-logs`;
    server = await Server.start(env);
    const base = server.base;
    const id = await run(base, "printer");

    await t.step("the file holds the job's stdout; the rows hold ranges of it", async () => {
      assert.equal(
        await Deno.readTextFile(join(logDir, `${id}.stdout`)),
        want.join("\n") + "\n",
      );
      const rows = (await logRows(dbPath)).filter((r) => r.job_id === id);
      const stdout = rows.filter((r) => r.data.stream === "stdout");
      assert.ok(stdout.length > 0);
      for (const r of stdout) {
        assert.equal(r.text, null);
        assert.equal(r.data.file.name, `${id}.stdout`);
      }
      assert.equal(stdout.reduce((n, r) => n + r.data.count, 0), LINES);
      // stderr is piped and stored as text, as before.
      assert.deepEqual(
        rows.filter((r) => r.data.stream === "stderr").map((r) => r.text),
        ["to stderr"],
      );
    });

    await t.step("logs pages, the status tail and the stream show the lines", async () => {
      assert.deepEqual(await pagedLines(base, id), want);
      assert.deepEqual(await pagedLines(base, id, "stderr"), ["to stderr"]);
      const status = (await http(base, "GET", `/train/status/${id}`)).body.data;
      assert.equal(status.log_lines, LINES + 1);
      const tail = status.logs.split("\n").filter((l: string) => l !== "to stderr");
      assert.deepEqual(tail, want.slice(-tail.length));
      const stream = await openStream(base, `/train/job/${id}/stream?types=log`);
      const messages = await stream.messages((m) => m.event === "end");
      await stream.close();
      const streamed = messages.filter((m) => m.event === "log").map((m) => JSON.parse(m.data))
        .filter((e) => e.data.stream === "stdout").flatMap((e) => e.data.lines);
      assert.deepEqual(streamed, want);
      const events = await http(base, "GET", `/train/job/${id}/events?type=log&limit=1000`);
      assert.deepEqual(
        events.body.events.filter((e: { data: { stream: string } }) => e.data.stream === "stdout")
          .flatMap((e: { data: { lines: string[] } }) => e.data.lines),
        want,
      );
    });

    await t.step("a job that prints nothing leaves no log file", async () => {
      const silent = await run(base, "silent");
      await assert.rejects(Deno.stat(join(logDir, `${silent}.stdout`)), Deno.errors.NotFound);
    });

    await t.step("a removed log file reads as marker lines, counted as before", async () => {
      await Deno.remove(join(logDir, `${id}.stdout`));
      // A new server: this one keeps the last ranges it read.
      await server!.kill();
      server = await Server.start(env);
      const lines = await pagedLines(server.base, id);
      assert.equal(lines.length, LINES);
      assert.match(lines[0], /^\[log unavailable: .*\.stdout/);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});

Deno.test("e2e: LOG_FILES=0 keeps a job's lines in the database", async () => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const env = ws.env({
      ...await ws.registry({ printer: ["/bin/sh", await ws.write("print.sh", SCRIPT)] }),
      LOG_FILES: "0",
    });
    const dbPath = join(ws.dir, "t.db");
    server = await Server.start(env);
    const id = await run(server.base, "printer");
    const rows = await logRows(dbPath);
    assert.ok(rows.length > 0);
    for (const r of rows) assert.equal(typeof r.text, "string");
    await assert.rejects(Deno.stat(join(`${dbPath}-logs`, `${id}.stdout`)), Deno.errors.NotFound);
    assert.deepEqual(await pagedLines(server.base, id), want);
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
