/**
 * Responses stay bounded whatever a job printed: the status tail is capped in bytes
 * (LOG_TAIL_BYTES), and a logs or events page in bytes (LOG_PAGE_BYTES), with a way on.
 */
import assert from "node:assert/strict";
import { buildApp, type TestApp } from "./helpers/app.ts";
import { JOB, logLines, start, submit } from "./helpers/jobs.ts";

const TAIL_BYTES = 4096;
const PAGE_BYTES = 64 * 1024;

const bytes = (s: string) => new TextEncoder().encode(s).length;

async function appWithJob(): Promise<TestApp> {
  const app = await buildApp({ logTailBytes: TAIL_BYTES, logPageBytes: PAGE_BYTES });
  await app.store.run((uow) => uow.execute(JOB, submit()));
  await app.store.run((uow) => uow.execute(JOB, start()));
  return app;
}

async function print(app: TestApp, ...lines: string[]): Promise<void> {
  await app.store.run((uow) => uow.execute(JOB, logLines(...lines)));
}

/** GETs a page and returns its body with the size of its raw JSON. */
async function page(app: TestApp, path: string) {
  const res = await app.app.request(path);
  const text = await res.text();
  assert.equal(res.status, 200, text.slice(0, 500));
  return { size: bytes(text), body: JSON.parse(text) };
}

Deno.test("the status log tail is capped in bytes", async (t) => {
  await t.step("long lines: the newest that fit, and the response says so", async () => {
    await using app = await appWithJob();
    const line = (i: number) => `${i}`.padEnd(1000, "x");
    await print(app, ...Array.from({ length: 100 }, (_, i) => line(i + 1)));
    const data = (await app.request("GET", `/train/status/${JOB}`)).body.data;
    assert.ok(bytes(data.logs) <= TAIL_BYTES, `${bytes(data.logs)} bytes`);
    assert.deepEqual(data.logs.split("\n"), [97, 98, 99, 100].map(line));
    assert.equal(data.logs_truncated, true);
    assert.equal(data.log_lines, 100);
  });

  await t.step("short lines: LOG_TAIL_LINES still counts, nothing cut", async () => {
    await using app = await appWithJob();
    await print(app, ...Array.from({ length: 300 }, (_, i) => `${i + 1}`));
    const data = (await app.request("GET", `/train/status/${JOB}`)).body.data;
    const lines = data.logs.split("\n");
    assert.equal(lines.length, 200);
    assert.equal(lines.at(-1), "300");
    assert.equal(data.logs_truncated, false);
  });

  await t.step("a tail of more events than one read holds: every line, in order", async () => {
    await using app = await appWithJob();
    // One line per event: the tail is read in batches of 16 events, so this takes three.
    for (let i = 1; i <= 40; i++) await print(app, `line ${i}`);
    const data = (await app.request("GET", `/train/status/${JOB}`)).body.data;
    assert.deepEqual(data.logs.split("\n"), Array.from({ length: 40 }, (_, i) => `line ${i + 1}`));
    assert.equal(data.logs_truncated, false);
  });

  await t.step("a newest line longer than the cap is cut, with a marker", async () => {
    await using app = await appWithJob();
    await print(app, "older line", "é".repeat(10_000));
    const data = (await app.request("GET", `/train/status/${JOB}`)).body.data;
    assert.ok(bytes(data.logs) <= TAIL_BYTES, `${bytes(data.logs)} bytes`);
    assert.ok(bytes(data.logs) > TAIL_BYTES - 100, "the cap is used, not wasted");
    assert.match(data.logs, /^é+ … \[line cut: 20000 bytes\]$/);
    assert.equal(data.logs_truncated, true);
  });
});

Deno.test("a logs page is capped in bytes and says where to continue", async (t) => {
  await using app = await appWithJob();
  // 20 events of one 20,000-byte line each: three fit in a 64 KiB page.
  for (let i = 1; i <= 20; i++) await print(app, `${i} `.padEnd(20_000, "y"));
  // One event bigger than a whole page, then a small one after it.
  await print(app, ...Array.from({ length: 4 }, (_, i) => `big ${i} `.padEnd(50_000, "z")));
  await print(app, "the end");

  const seen: string[] = [];
  let after = 0;
  let pages = 0;
  let alone = 0;
  for (;;) {
    const { size, body } = await page(app, `/train/logs/${JOB}?after=${after}`);
    pages++;
    const entries = body.entries as { seq: number; lines: string[] }[];
    assert.ok(entries.length >= 1, "every page moves forward");
    if (entries.length === 1 && size > PAGE_BYTES) alone++;
    else assert.ok(size <= PAGE_BYTES, `page of ${entries.length} entries is ${size} bytes`);
    assert.equal(body.next_after, entries.at(-1)!.seq, "next_after is the last entry returned");
    for (const e of entries) seen.push(...e.lines.map((l) => l.split(" ")[0]));
    after = body.next_after;
    if (!body.more) {
      assert.equal(body.truncated, false);
      break;
    }
    assert.ok(pages < 50, "paging ends");
  }
  await t.step("every line comes back once, in order", () => {
    const expected = Array.from({ length: 20 }, (_, i) => `${i + 1}`);
    assert.deepEqual(seen, [...expected, "big", "big", "big", "big", "the"]);
  });
  await t.step("pages were cut by bytes, and the oversized event went alone", () => {
    assert.ok(pages >= 8, `${pages} pages`);
    assert.equal(alone, 1);
  });
  await t.step("a cut page says truncated and more", async () => {
    const { body } = await page(app, `/train/logs/${JOB}?after=0`);
    assert.equal(body.entries.length, 3);
    assert.equal(body.truncated, true);
    assert.equal(body.more, true);
  });
  await t.step("a page cut by limit says more, not truncated", async () => {
    const { body } = await page(app, `/train/logs/${JOB}?after=0&limit=2`);
    assert.equal(body.entries.length, 2);
    assert.equal(body.truncated, false);
    assert.equal(body.more, true);
  });
  await t.step("the events page is capped the same way", async () => {
    const { size, body } = await page(app, `/train/job/${JOB}/events?after=0&limit=1000`);
    assert.ok(size <= PAGE_BYTES, `${size} bytes`);
    assert.equal(body.truncated, true);
    assert.equal(body.more, true);
    assert.equal(body.next_after, body.events.at(-1).seq);
    assert.deepEqual(body.events.map((e: { type: string }) => e.type).slice(0, 2), [
      "submitted",
      "started",
    ]);
  });
});
