/**
 * The OutputCollector against hostile output: floods are coalesced and bounded, a failing sink
 * is given up on, pathological JSON becomes a warning, and nothing stored is invalid text.
 * Streams are real ReadableStreams fed chunk by chunk; the sinks record what they get.
 */
import assert from "node:assert/strict";
import type { OutputEvent } from "../jobs/decide.ts";
import { logCount, logLines as linesOf } from "../jobs/events.ts";
import { OutputCollector } from "../jobs/output.ts";
import { MAX_JSON_DEPTH, nestedDeeperThan, parseProtocol } from "../jobs/protocol.ts";
import { within } from "./helpers/server.ts";

const encoder = new TextEncoder();

/** A pull stream of `text`'s lines in ~64 KB chunks; `pulled` counts the bytes handed out. */
function source(lines: Iterable<string>) {
  const it = lines[Symbol.iterator]();
  const counter = { pulled: 0, done: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      let chunk = "";
      for (let next = it.next(); !next.done; next = it.next()) {
        chunk += next.value + "\n";
        if (chunk.length >= 64 * 1024) break;
      }
      if (chunk === "") {
        counter.done = true;
        controller.close();
        return;
      }
      const bytes = encoder.encode(chunk);
      counter.pulled += bytes.length;
      controller.enqueue(bytes);
    },
  }, { highWaterMark: 0 });
  return { stream, counter };
}

function* range(n: number, line: (i: number) => string[]): Iterable<string> {
  for (let i = 1; i <= n; i++) yield* line(i);
}

/** Records every batch; `delayMs` makes the sink slower than the reader. */
function recordingSink(delayMs = 0) {
  const batches: OutputEvent[][] = [];
  const sink = async (events: OutputEvent[]) => {
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    batches.push(events);
  };
  const all = () => batches.flat();
  const logLines = (stream = "stdout") =>
    all().flatMap((e) => e.type === "log" && e.data.stream === stream ? linesOf(e.data) : []);
  return { sink, batches, all, logLines };
}

const progress = (i: number, total: number) =>
  `@@trainer {"event":"progress","step":${i},"total":${total}}`;

Deno.test("a flood of 300,000 progress lines is coalesced; every log line stays, in order", async () => {
  const N = 300_000;
  const rec = recordingSink(2);
  const collector = new OutputCollector(rec.sink, { modelsDir: "/nonexistent" });
  const { stream } = source(range(N, (i) =>
    i % 100 === 0 ? [progress(i, N), `log ${i}`] : [
      progress(i, N),
    ]));
  await within(30_000, collector.consume(stream, "stdout"), "reading");
  await within(30_000, collector.close(), "close()");

  const events = rec.all();
  const steps = events.flatMap((e) => e.type === "progress" ? [e.data.step] : []);
  assert.equal(steps.at(-1), N, "the last progress is kept");
  assert.ok(steps.length <= 21 * rec.batches.length, `${steps.length} progress events stored`);
  assert.ok(steps.length < N / 100, `${steps.length} progress events stored`);
  assert.deepEqual(steps, [...steps].sort((a, b) => a! - b!), "in order");
  assert.deepEqual(
    rec.logLines(),
    Array.from({ length: N / 100 }, (_, i) => `log ${i * 100 + 100}`),
  );
  for (const batch of rec.batches) assert.ok(batch.length <= 1001, `a batch of ${batch.length}`);
  assert.equal(events.filter((e) => e.type === "warning").length, 0);
});

Deno.test("a sink slower than the child stops the reading at the cap, then catches up", async () => {
  const cap = 1024 * 1024;
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const rec = recordingSink();
  const collector = new OutputCollector(async (events) => {
    await gate;
    await rec.sink(events);
  }, { modelsDir: "/nonexistent", maxPendingBytes: cap });
  const lines = 200_000; // ~12 MB, far over the cap
  const { stream, counter } = source(range(lines, (i) => [`line ${i} ${"x".repeat(50)}`]));
  const reading = collector.consume(stream, "stdout");
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(counter.done, false, "the reader stopped pulling");
  // Held: the batch in flight (taken at the first 256 KiB), the cap, and a chunk or two over.
  assert.ok(counter.pulled < cap + 512 * 1024, `pulled ${counter.pulled}`);
  assert.ok(collector.pendingBytes <= cap + 128 * 1024, `pending ${collector.pendingBytes}`);
  release();
  await within(30_000, reading, "reading");
  await within(30_000, collector.close(), "close()");
  const stored = rec.logLines();
  assert.equal(stored.length, lines);
  stored.forEach((l, i) => {
    if (l !== `line ${i + 1} ${"x".repeat(50)}`) assert.fail(`line ${i + 1} is ${l}`);
  });
});

Deno.test("a sink that always fails is tried a bounded number of times, then given up", async () => {
  let calls = 0;
  const failures: string[] = [];
  const collector = new OutputCollector(() => {
    calls++;
    return Promise.reject(new Error("disk I/O error"));
  }, { modelsDir: "/nonexistent", maxTries: 3, onFailed: (why) => failures.push(why) });
  const { stream } = source(range(50_000, (i) => [`line ${i}`]));
  await within(30_000, collector.consume(stream, "stdout"), "reading");
  await within(30_000, collector.close(), "close()");
  assert.equal(calls, 3);
  assert.equal(failures.length, 1, "reported once");
  assert.match(failures[0], /could not be stored after 3 tries.*disk I\/O error/);
  assert.equal(collector.failure, failures[0]);
  assert.equal(collector.pendingBytes, 0, "nothing is kept once given up");
});

Deno.test("pathological protocol lines become warnings; the lines stay in the log", async (t) => {
  const deep = (n: number) =>
    `@@trainer {"event":"metrics","metrics":{"m":${"[".repeat(n)}1${"]".repeat(n)}}}`;
  const rec = recordingSink();
  const collector = new OutputCollector(rec.sink, { modelsDir: "/nonexistent" });
  const { stream } = source([deep(6000), deep(MAX_JSON_DEPTH - 2), "after"]);
  await collector.consume(stream, "stdout");
  await within(30_000, collector.close(), "close()");
  const warnings = rec.all().flatMap((e) => e.type === "warning" ? [e.data.message] : []);

  await t.step("6,000 levels: a warning, nothing parsed", () => {
    assert.deepEqual(warnings, [
      `malformed protocol line: nested deeper than ${MAX_JSON_DEPTH} levels`,
    ]);
    assert.deepEqual(rec.logLines(), [deep(6000), "after"]);
  });
  await t.step("within the bound the metrics are taken", () => {
    const metrics = rec.all().find((e) => e.type === "metrics");
    assert.ok(metrics);
  });
  await t.step("brackets inside strings do not count", () => {
    assert.equal(nestedDeeperThan(`{"a":"${"[".repeat(100)}\\"{"}`, 2), false);
    assert.equal(nestedDeeperThan(`[[[1]]]`, 2), true);
    assert.equal(parseProtocol(`{"event":"metrics","metrics":{"k":"[[[["}}`).ok, true);
  });
});

Deno.test("after 50 warnings further ones are only counted", async () => {
  const rec = recordingSink();
  const collector = new OutputCollector(rec.sink, { modelsDir: "/nonexistent" });
  const { stream } = source(range(200, () => ["@@trainer {nope"]));
  await collector.consume(stream, "stdout");
  await collector.close();
  const warnings = rec.all().filter((e) => e.type === "warning");
  assert.equal(warnings.length, 51);
  assert.deepEqual(warnings.at(-1)?.data, { message: "150 more warnings were not recorded" });
  assert.equal(rec.logLines().length, 200, "every line is still in the log");
});

Deno.test("lone surrogates never reach the sink", async (t) => {
  const rec = recordingSink();
  const collector = new OutputCollector(rec.sink, { modelsDir: "/nonexistent" });
  // An escaped lone surrogate in JSON, and a line of emoji longer than the 64 KB split.
  const escaped = String
    .raw`@@trainer {"event":"progress","message":"a\ud800b","metrics":{"k\udc00":"\ud83d"}}`;
  const emoji = "x" + "\u{1F600}".repeat(40_000);
  const { stream } = source([escaped, emoji]);
  await collector.consume(stream, "stdout");
  await collector.close();

  await t.step("escapes in a protocol message become U+FFFD", () => {
    const p = rec.all().find((e) => e.type === "progress");
    assert.equal(p?.type, "progress");
    if (p?.type !== "progress") return;
    assert.equal(p.data.message, "a\uFFFDb");
    assert.deepEqual(p.data.metrics, { "k\uFFFD": "\uFFFD" });
  });
  await t.step("a long line is split between characters, not inside a pair", () => {
    const pieces = rec.logLines();
    assert.ok(pieces.length >= 2);
    for (const piece of pieces) assert.ok(piece.isWellFormed(), "piece is well-formed");
    assert.equal(pieces.join(""), emoji);
  });
});

Deno.test("close() returns while a process that outlived the job still writes", async () => {
  const rec = recordingSink();
  const collector = new OutputCollector(rec.sink, { modelsDir: "/nonexistent", flushMs: 1 });
  let written = 0;
  let stop = false;
  const endless = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (stop) return controller.close();
      await new Promise((r) => setTimeout(r, 1));
      controller.enqueue(encoder.encode(`late ${++written}\n`));
    },
  }, { highWaterMark: 0 });
  const reading = collector.consume(endless, "stdout");
  await new Promise((r) => setTimeout(r, 200));
  try {
    await within(10_000, collector.close(), "close()");
    const stored = rec.logLines().length;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(rec.logLines().length, stored, "nothing is stored after close()");
  } finally {
    stop = true;
    await reading;
  }
});

Deno.test("blank lines are log lines; a line of exactly two pieces is two", async () => {
  const rec = recordingSink();
  const collector = new OutputCollector(rec.sink, { modelsDir: "/nonexistent" });
  const { stream } = source(["a", "", "\r", "y".repeat(2 * 64 * 1024), "b"]);
  await collector.consume(stream, "stdout");
  await collector.close();
  const y = "y".repeat(64 * 1024);
  assert.deepEqual(rec.logLines(), ["a", "", "", y, y, "b"]);
});

Deno.test("a few progress and metrics messages are all kept, in order", async () => {
  const rec = recordingSink();
  const collector = new OutputCollector(rec.sink, { modelsDir: "/nonexistent" });
  const { stream } = source([
    ...range(5, (i) => [progress(i, 5)]),
    ...range(3, (i) => [`@@trainer {"event":"metrics","metrics":{"m${i}":${i}}}`]),
  ]);
  await collector.consume(stream, "stdout");
  await collector.close();
  assert.deepEqual(rec.all().map((e) => e.type === "progress" ? e.data.step : e.type), [
    1,
    2,
    3,
    4,
    5,
    "metrics",
    "metrics",
    "metrics",
  ]);
});

Deno.test("plain runs and lines that need a look of their own keep every line, in order", async () => {
  const rec = recordingSink();
  const collector = new OutputCollector(rec.sink, { modelsDir: "/nonexistent" });
  const long = "z".repeat(64 * 1024 + 10);
  const input: string[] = [];
  const want: string[] = [];
  for (let i = 0; i < 3_000; i++) {
    const kind = i % 300;
    // Mostly plain lines; now and then a "\r" ending, a line cut in two, a malformed
    // protocol line (kept, with a warning) and a progress line (not a log line).
    const line = kind === 7
      ? `cr ${i}\r`
      : kind === 11
      ? long
      : kind === 13
      ? "@@trainer {broken"
      : kind === 17
      ? progress(i, 3_000)
      : `plain ${i} ${"p".repeat(i % 80)}`;
    input.push(line);
    if (kind === 7) want.push(`cr ${i}`);
    else if (kind === 11) want.push(long.slice(0, 64 * 1024), long.slice(64 * 1024));
    else if (kind !== 17) want.push(line);
  }
  // Chunks that cut lines anywhere, as a pipe does.
  const bytes = encoder.encode(input.join("\n") + "\n");
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let at = 0; at < bytes.length; at += 1_000 + (at % 7_777)) {
        controller.enqueue(bytes.slice(at, at + 1_000 + (at % 7_777)));
      }
      controller.close();
    },
  });
  await collector.consume(stream, "stdout");
  await collector.close();
  assert.deepEqual(rec.logLines(), want);
  assert.equal(collector.lines, want.length);
  for (const e of rec.all()) {
    if (e.type === "log") assert.equal(logCount(e.data), linesOf(e.data).length);
  }
  const warnings = rec.all().filter((e) => e.type === "warning");
  assert.equal(warnings.length, 10);
});
