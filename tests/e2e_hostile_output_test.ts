/**
 * E2E: hostile script output against the real server and real children (issue 7, defect 1).
 * A flood of progress lines, a protocol line nested 6,000 levels deep and lone surrogates
 * must each end in a stored, valid job; an endless flood must still be cancellable and must
 * not hold up SIGTERM. One slot (MAX_CONCURRENT_JOBS=1), so a wedged job blocks the next.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { HOSTILE_PY } from "../bench/drills/hostile_script.ts";
import {
  groupAlive,
  http,
  type Json,
  PYTHON,
  Server,
  waitJob,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

const FLOOD = 100_000;
const LOG_EVERY = 100;

async function submit(base: string, type: string): Promise<string> {
  // retrain: an earlier model of the type must not stand in for running the script.
  const r = await http(base, "POST", `/train/${type}`, { retrain: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data.job_id;
}

/** Every entry of a job's log, paged to the end. */
async function allLogLines(base: string, id: string): Promise<string[]> {
  const lines: string[] = [];
  for (let after = 0;;) {
    const page = await http(base, "GET", `/train/logs/${id}?after=${after}&limit=1000`);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    if (page.body.entries.length === 0) return lines;
    for (const e of page.body.entries) lines.push(...e.lines);
    after = page.body.next_after;
  }
}

/** Every event of one type, paged to the end. */
async function eventsOf(base: string, id: string, type: string): Promise<Json[]> {
  const events: Json[] = [];
  for (let after = 0;;) {
    const path = `/train/job/${id}/events?type=${type}&after=${after}&limit=1000`;
    const page = await http(base, "GET", path);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    if (page.body.events.length === 0) return events;
    events.push(...page.body.events);
    after = page.body.next_after;
  }
}

Deno.test("e2e: hostile output never wedges a job", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const script = await ws.write("hostile.py", HOSTILE_PY);
    const run = (...args: string[]) => [PYTHON, script, ...args];
    const env = ws.env({
      MAX_CONCURRENT_JOBS: "1",
      CANCEL_GRACE_SECONDS: "2",
      // The server's priority for the jobs: coalescing bounds progress events per write, and a
      // flood at JOB_NICE on a CI machine busy with the other tests trickles in over more writes
      // (5,677 progress events once, against 880-1,052 alone), which says nothing of coalescing.
      JOB_NICE: "0",
      ...await ws.registry({
        flood: run("flood", String(FLOOD), String(LOG_EVERY)),
        endless: run("endless"),
        deep: run("deep", "6000"),
        surrogate: run("surrogate"),
        fine: run("ok"),
      }),
    });
    server = await Server.start(env);
    const base = server.base;

    await t.step(`${FLOOD.toLocaleString("en")} progress lines: completed, coalesced`, async () => {
      const id = await submit(base, "flood");
      const next = await submit(base, "fine");
      const job = await waitTerminal(base, id, 90_000);
      assert.equal(job.status, "completed", JSON.stringify(job).slice(0, 2000));
      assert.equal(job.progress.step, FLOOD, "the last progress is recorded");
      const expected = Array.from({ length: FLOOD / LOG_EVERY }, (_, i) => `log ${(i + 1) * 100}`);
      assert.deepEqual(await allLogLines(base, id), expected, "every log line, in order");
      const progress = await eventsOf(base, id, "progress");
      // Coalesced: a few per write (720 of 100,000 on a busy 2-core machine), in order.
      assert.ok(progress.length < FLOOD / 20, `${progress.length} progress events stored`);
      const steps = progress.map((e) => e.data.step);
      assert.deepEqual(steps, [...steps].sort((a, b) => a - b));
      const after = await waitTerminal(base, next);
      assert.equal(after.status, "completed", "the slot was freed");
      assert.ok(after.started_at, "the next job ran");
    });

    await t.step("a line nested 6,000 levels deep is a warning", async () => {
      const job = await waitTerminal(base, await submit(base, "deep"));
      assert.equal(job.status, "completed", JSON.stringify(job).slice(0, 2000));
      assert.deepEqual(job.warnings, ["malformed protocol line: nested deeper than 64 levels"]);
      assert.equal(job.log_lines, 1, "the line itself is kept in the log");
    });

    await t.step("lone surrogates are stored as valid text", async () => {
      const id = await submit(base, "surrogate");
      const job = await waitTerminal(base, id);
      assert.equal(job.status, "completed", JSON.stringify(job).slice(0, 2000));
      assert.equal(job.progress.message, "a\uFFFDb");
      const lines = await allLogLines(base, id);
      assert.ok(lines.length >= 2, "the long line was split");
      for (const line of lines) assert.ok(line.isWellFormed(), "a stored piece is well-formed");
      assert.equal(lines.join(""), "x" + "\u{1F600}".repeat(40_000));
      // JSON.stringify escapes only lone surrogates; none may be in the stored text.
      const db = new DatabaseSync(join(ws.dir, "t.db"), { readOnly: true });
      try {
        const rows = db.prepare("SELECT data, log_text FROM events WHERE job_id = ?").all(id);
        for (const row of rows) {
          assert.doesNotMatch(String(row.data), /\\u[dD][89a-fA-F]/);
          // Log text is stored as UTF-8, where a lone surrogate would have become U+FFFD.
          assert.ok(!String(row.log_text ?? "").includes("\uFFFD"), "no half of a pair stored");
        }
      } finally {
        db.close();
      }
    });

    await t.step("an endless flood is cancelled and frees the slot", async () => {
      const id = await submit(base, "endless");
      const running = await waitJob(base, id, (d) => d.progress?.step > 1000);
      const cancel = await http(base, "DELETE", `/train/job/${id}`);
      assert.equal(cancel.status, 200, JSON.stringify(cancel.body));
      const done = await waitJob(base, id, (d) => d.process && !d.process.alive, 30_000);
      assert.equal(done.status, "cancelled");
      assert.equal(groupAlive(running.process.pgid), false);
      assert.equal((await waitTerminal(base, await submit(base, "fine"))).status, "completed");
    });

    await t.step("SIGTERM during an endless flood stops the server", async () => {
      const id = await submit(base, "endless");
      const running = await waitJob(base, id, (d) => d.progress?.step > 1000);
      const status = await server!.kill("SIGTERM");
      assert.equal(status.success, true, server!.output.slice(-2000));
      assert.equal(groupAlive(running.process.pgid), false);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
