/**
 * OutputQueue: log lines coalesce into bounded events, which are closed (joined) as soon as
 * they are full, before any take; every line comes out once, in order, with its event's count.
 */
import assert from "node:assert/strict";
import type { OutputEvent } from "../jobs/decide.ts";
import { logCount, logLines } from "../jobs/events.ts";
import { OutputQueue } from "../jobs/output_queue.ts";

function linesOf(events: OutputEvent[], stream: "stdout" | "stderr"): string[] {
  return events.flatMap((e) =>
    e.type === "log" && e.data.stream === stream ? logLines(e.data) : []
  );
}

Deno.test("log events are bounded; takes between lines return every line once, in order", () => {
  const queue = new OutputQueue();
  const want: string[] = [];
  const taken: OutputEvent[] = [];
  let n = 0;
  // 2 MB of runs and single lines on stdout, a few stderr lines between them, and takes of
  // a few events at a time while lines keep coming.
  for (let round = 0; round < 40; round++) {
    const run: string[] = [];
    for (let i = 0; i < 500; i++) run.push(`run ${++n} ${"r".repeat(n % 90)}`);
    queue.lines("stdout", run.join("\n"), run.length);
    want.push(...run);
    const single = `single ${++n}`;
    queue.log("stdout", single);
    want.push(single);
    queue.log("stderr", `err ${round}`);
    if (round % 7 === 6) taken.push(...queue.take(512 * 1024, 1000));
  }
  taken.push(...queue.take(64 * 1024 * 1024, 1000));
  assert.ok(queue.empty);
  assert.equal(queue.bytes, 0);
  assert.deepEqual(linesOf(taken, "stdout"), want);
  assert.deepEqual(linesOf(taken, "stderr"), Array.from({ length: 40 }, (_, i) => `err ${i}`));
  const logs = taken.filter((e) => e.type === "log");
  assert.ok(logs.length > 8, `lines were cut into ${logs.length} events`);
  for (const e of logs) {
    assert.ok("text" in e.data);
    assert.equal(logCount(e.data), logLines(e.data).length);
    // Bounded: an event takes no more once it holds 256 KiB, so at most one run more.
    assert.ok(e.data.text.length < 256 * 1024 + 64 * 1024, `${e.data.text.length} characters`);
  }
});

Deno.test("an event taken while open is final: later lines start a new one", () => {
  const queue = new OutputQueue();
  queue.log("stdout", "a");
  const [first] = queue.take(1024, 10);
  queue.log("stdout", "b");
  const [second] = queue.take(1024, 10);
  assert.deepEqual([first, second].map((e) => e.type === "log" && logLines(e.data)), [["a"], [
    "b",
  ]]);
});
