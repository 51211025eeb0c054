/** E2E: a job printing 100,000 lines keeps every line, in order, readable by paging. */
import assert from "node:assert/strict";
import { http, Server, waitTerminal, Workspace } from "./helpers/server.ts";

const LINES = 100_000;
const STDERR_EVERY = 1_000;

Deno.test("e2e: 100,000 log lines are all stored in order", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const env = ws.env({ ...await ws.registry({ fake: await ws.fakeTrainer() }) });
    server = await Server.start(env);
    const base = server.base;
    const submitted = await http(base, "POST", "/train/fake", {
      hyperparameters: { lines: LINES, stderr_every: STDERR_EVERY },
    });
    assert.equal(submitted.status, 200, JSON.stringify(submitted.body));
    const id = submitted.body.data.job_id;
    const job = await waitTerminal(base, id, 90_000);

    await t.step("the job completes and counts every line", () => {
      assert.equal(job.status, "completed", JSON.stringify(job).slice(0, 2000));
      // numbered stdout lines + stderr lines + "fake trainer starting"
      assert.equal(job.log_lines, LINES + LINES / STDERR_EVERY + 1);
    });

    await t.step("the status view shows the tail of the log", () => {
      const tail: string[] = job.logs.split("\n");
      assert.equal(tail.length, 200, "LOG_TAIL_LINES lines");
      // stdout and stderr are read concurrently: only each stream's own order is defined.
      const numbers = tail.filter((line) => /^\d+$/.test(line)).map(Number);
      assert.equal(numbers.at(-1), LINES);
      numbers.forEach((n, i) => assert.equal(n, LINES - numbers.length + 1 + i));
    });

    await t.step("paging GET /train/logs returns lines 1..100000 in order", async () => {
      const stdout: string[] = [];
      const stderr: string[] = [];
      let after = 0;
      let pages = 0;
      for (;;) {
        const page = await http(base, "GET", `/train/logs/${id}?after=${after}&limit=5`);
        assert.equal(page.status, 200, JSON.stringify(page.body));
        assert.equal(page.body.job_id, id);
        if (page.body.entries.length === 0) break;
        pages++;
        for (const e of page.body.entries) {
          assert.ok(e.seq > after, "entries come in sequence order");
          after = e.seq;
          (e.stream === "stdout" ? stdout : stderr).push(...e.lines);
        }
        assert.equal(page.body.next_after, after);
      }
      assert.ok(pages >= 2, "more than one page of entries");
      assert.equal(stdout[0], "fake trainer starting");
      const numbers = stdout.slice(1);
      assert.equal(numbers.length, LINES);
      const firstWrong = numbers.findIndex((line, i) => line !== String(i + 1));
      assert.equal(firstWrong, -1, `line ${firstWrong + 1} is ${numbers[firstWrong]}`);
      assert.equal(stderr.length, LINES / STDERR_EVERY);
      stderr.forEach((line, i) => assert.equal(line, `err ${(i + 1) * STDERR_EVERY}`));
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
