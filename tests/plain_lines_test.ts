/** plainRuns: plain output as runs of whole lines, and what it leaves to the per-line path. */
import assert from "node:assert/strict";
import { plainRuns } from "../jobs/plain_lines.ts";

Deno.test("plain lines become runs that join back into the block, each with its count", () => {
  const lines = Array.from({ length: 1_000 }, (_, i) => `line ${i} ${"x".repeat(i % 50)}`);
  const block = lines.join("\n");
  const runs = plainRuns(block, 100, 4_096)!;
  assert.ok(runs.length > 1, "the block was cut into runs");
  assert.equal(runs.map(([text]) => text).join("\n"), block);
  for (const [text, n] of runs) {
    assert.ok(text.length <= 4_096 || n === 1, `a run of ${text.length} characters`);
    assert.equal(text.split("\n").length, n);
  }
  assert.equal(runs.reduce((sum, [, n]) => sum + n, 0), lines.length);
});

Deno.test("blank lines count, and one line is one run", () => {
  assert.deepEqual(plainRuns("", 10, 10), [["", 1]]);
  assert.deepEqual(plainRuns("\n\na", 10, 10), [["\n\na", 3]]);
  assert.deepEqual(plainRuns("0123456789", 10, 4), [["0123456789", 1]]);
});

Deno.test("lines that need a look of their own leave the block to the per-line path", () => {
  assert.equal(plainRuns("a\nb\r\nc", 10, 100), null);
  assert.equal(plainRuns('@@trainer {"event":"progress"}\nb', 100, 100), null);
  assert.equal(plainRuns('a\n@@trainer {"event":"progress"}', 100, 100), null);
  assert.equal(plainRuns("short\n" + "y".repeat(11), 10, 100), null);
  // The prefix inside a line is not a protocol line.
  assert.deepEqual(plainRuns("say @@trainer hi", 100, 100), [["say @@trainer hi", 1]]);
});
