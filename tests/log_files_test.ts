/**
 * A job's stdout through its log file (LOG_FILES): the collector reads the file behind the
 * job and stores runs of plain lines as ranges of it. What readers get must be exactly what
 * the same bytes through a pipe would have given, every range must be on disk before it is
 * sent, and lines must come out while the job still writes.
 */
import assert from "node:assert/strict";
import { closeSync, openSync, writeSync } from "node:fs";
import type { OutputEvent } from "../jobs/decide.ts";
import { logLines } from "../jobs/events.ts";
import { LogCapture, LogFolder, type LogSource } from "../jobs/log_capture.ts";
import { signalGroup } from "../jobs/process.ts";
import { spawnLeader } from "../jobs/spawn.ts";
import { OutputCollector } from "../jobs/output.ts";
import { logFileName, readLogRange } from "../db/log_files.ts";
import { within } from "./helpers/server.ts";

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);
const join = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
};

/** Output with every case the collector treats apart, as the job's bytes. */
function hostileOutput(): Uint8Array {
  const parts: Uint8Array[] = [bytes("\ufeffstarts with a byte-order mark\n")];
  for (let i = 0; i < 20_000; i++) parts.push(bytes(`plain line ${i} é 😀\n`));
  parts.push(bytes('@@trainer {"event":"progress","step":1,"total":2}\n'));
  parts.push(bytes("windows line\r\n"), bytes("\n"), bytes("after an empty line\n"));
  parts.push(bytes("x".repeat(64 * 1024) + "\n")); // exactly the longest line kept whole
  parts.push(bytes("y".repeat(70_000) + "\n")); // cut into two pieces
  parts.push(bytes("z".repeat(600_000) + "\n")); // longer than one read of the file
  parts.push(new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe, 0x0a])); // invalid UTF-8
  parts.push(bytes("\ufeffa mark inside the log is a character\n"));
  parts.push(bytes('@@trainer {"event":"metrics","metrics":{"acc":0.5}}\n'));
  for (let i = 0; i < 5_000; i++) parts.push(bytes(`tail ${i}\n`));
  parts.push(bytes("last line without its newline 😀"));
  return join(parts);
}

function recordingSink() {
  const batches: OutputEvent[][] = [];
  return {
    batches,
    sink: (events: OutputEvent[]) => {
      batches.push(events);
      return Promise.resolve();
    },
  };
}

/** The events as readers show them: log ranges read back from the file as lines. */
function asRead(events: OutputEvent[], dir: string) {
  return events.map((e) => {
    if (e.type !== "log") return e;
    const lines = "file" in e.data
      ? readLogRange(dir, e.data.file, e.data.count).split("\n")
      : logLines(e.data);
    return { stream: e.data.stream, lines };
  });
}

/** Merges adjacent log events of one stream: how they are cut into events may differ. */
function merged(events: ReturnType<typeof asRead>) {
  const out: ReturnType<typeof asRead> = [];
  for (const e of events) {
    const last = out.at(-1);
    if (last && "lines" in e && last && "lines" in last && last.stream === e.stream) {
      last.lines.push(...e.lines);
    } else out.push("lines" in e ? { stream: e.stream, lines: [...e.lines] } : e);
  }
  return out;
}

/**
 * The same lines per stream, in order, and the same other events, in order (where a log
 * line falls between two progress events depends on when each was read, through a pipe
 * too). Reports only the first difference: a whole line can be 600 KB.
 */
function assertSame(got: ReturnType<typeof asRead>, want: ReturnType<typeof asRead>) {
  const views = (events: typeof got) => [
    events.flatMap((e) => "lines" in e && e.stream === "stdout" ? e.lines : []),
    events.flatMap((e) => "lines" in e && e.stream === "stderr" ? e.lines : []),
    events.flatMap((e) => "lines" in e ? [] : [JSON.stringify(e)]),
  ];
  const [a, b] = [views(got), views(want)];
  for (const [k, name] of ["stdout", "stderr", "other events"].entries()) {
    const i = a[k].findIndex((line, i) => line !== b[k][i]);
    const at = i < 0 && a[k].length !== b[k].length ? Math.min(a[k].length, b[k].length) : i;
    if (at < 0) continue;
    const show = (l?: string) => l === undefined ? "(none)" : `${l.slice(0, 80)}… (${l.length})`;
    assert.fail(
      `${name} ${at} of ${a[k].length}/${b[k].length}: ` +
        `got ${show(a[k][at])}, want ${show(b[k][at])}`,
    );
  }
}

/** The collector's events for `data` read through a pipe, in chunks of `chunk` bytes. */
async function throughPipe(data: Uint8Array, chunk: number): Promise<OutputEvent[]> {
  const { batches, sink } = recordingSink();
  const collector = new OutputCollector(sink, { modelsDir: "/nonexistent" });
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= data.length) return controller.close();
      controller.enqueue(data.slice(at, at += chunk));
    },
  });
  await collector.consume(stream, "stdout");
  await collector.close();
  return batches.flat();
}

/** Runs `body` with a fresh log folder. */
async function withFolder(body: (folder: LogFolder, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "trainer-logfiles-" });
  let folder: LogFolder | null = null;
  try {
    folder = new LogFolder(`${dir}/logs`, 2);
    await body(folder, `${dir}/logs`);
  } finally {
    // A spare still being made would land in the folder while it is removed.
    await folder?.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Reads `capture` with a collector; `stop()` ends the run and returns every event sent. */
function collect(capture: LogCapture, source: LogSource = capture) {
  const { batches, sink } = recordingSink();
  const collector = new OutputCollector(sink, { modelsDir: "/nonexistent", flushMs: 5 });
  const reading = collector.consumeFile(source, capture.ended);
  return {
    batches,
    reading,
    /** Ends the run; `reuse` closes the capture as a job that opened its spool itself. */
    async stop(reuse = false) {
      capture.end();
      await reading;
      await collector.close();
      capture.close(reuse);
      return batches.flat();
    },
  };
}

async function until(what: string, done: () => boolean): Promise<void> {
  await within(
    5000,
    (async () => {
      while (!done()) await new Promise((r) => setTimeout(r, 5));
    })(),
    what,
  );
}

/**
 * The same bytes written by the "job" in chunks while the collector reads behind them.
 * Every range sent must lie within what the log file held when it was last synced.
 */
async function throughFile(data: Uint8Array, chunk: number, folder: LogFolder, id: string) {
  const capture = folder.open(id);
  const path = `${folder.dir}/${logFileName(id)}`;
  let synced = 0;
  const problems: string[] = [];
  const source: LogSource = {
    read: (into, position) => capture.read(into, position),
    size: () => capture.size(),
    keep: (lines) => capture.keep(lines),
    sync: async () => {
      const size = Deno.statSync(path).size;
      await capture.sync();
      synced = size;
    },
  };
  const { batches } = recordingSink();
  const sink = (events: OutputEvent[]) => {
    for (const e of events) {
      if (e.type === "log" && "file" in e.data && e.data.file.offset + e.data.file.bytes > synced) {
        problems.push(`range ${JSON.stringify(e.data.file)} sent with ${synced} bytes synced`);
      }
    }
    batches.push(events);
    return Promise.resolve();
  };
  const collector = new OutputCollector(sink, { modelsDir: "/nonexistent", flushMs: 5 });
  const reading = collector.consumeFile(source, capture.ended);
  for (let at = 0; at < data.length; at += chunk) {
    writeSync(capture.fd, data.subarray(at, at + chunk));
    if ((at / chunk) % 8 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  capture.end();
  await reading;
  await collector.close();
  capture.close();
  return { events: batches.flat(), problems };
}

Deno.test("stdout through its file reads back exactly as through a pipe", async (t) => {
  await withFolder(async (folder, dir) => {
    const data = hostileOutput();
    const piped = merged(asRead(await throughPipe(data, 4093), dir));
    for (const chunk of [1, 4093, 100_000]) {
      await t.step(`written ${chunk} bytes at a time`, async () => {
        const id = `job-${chunk}`;
        const sent = data.subarray(0, chunk === 1 ? 20_000 : data.length);
        const want = chunk === 1 ? merged(asRead(await throughPipe(sent, 4093), dir)) : piped;
        const { events, problems } = await throughFile(sent, chunk, folder, id);
        assert.deepEqual(problems, []);
        assertSame(merged(asRead(events, dir)), want);
        const ranges = events.filter((e) => e.type === "log" && "file" in e.data);
        assert.ok(ranges.length > 0, "plain lines are stored as ranges of the log file");
        // The job's spool is gone; what is left are empty spares.
        for (const entry of Deno.readDirSync(dir)) {
          if (entry.name.startsWith(".spool-")) {
            assert.equal(Deno.statSync(`${dir}/${entry.name}`).size, 0);
          }
        }
      });
    }
  });
});

Deno.test("lines come out while the job still writes", async () => {
  await withFolder(async (folder, dir) => {
    const capture = folder.open("live");
    const run = collect(capture);
    // Dropped at the very start, as a pipe's decoder drops it.
    writeSync(capture.fd, bytes("\ufefffirst\n"));
    await until("the first line to be sent", () => run.batches.length > 0);
    assert.deepEqual(asRead(run.batches.flat(), dir), [{ stream: "stdout", lines: ["first"] }]);
    // Anywhere else, a byte-order mark is a character of its line.
    writeSync(capture.fd, bytes("\ufeffsecond\n"));
    assert.deepEqual(merged(asRead(await run.stop(), dir)), [{
      stream: "stdout",
      lines: ["first", "\ufeffsecond"],
    }]);
  });
});

Deno.test("what a job does to its stdout later cannot change a stored line", async (t) => {
  await t.step("a job that truncates its stdout (> /dev/stdout)", async () => {
    await withFolder(async (folder, dir) => {
      const capture = folder.open("truncates");
      const run = collect(capture);
      writeSync(capture.fd, bytes("first line\n"));
      await until("the first line to be sent", () => run.batches.length > 0);
      // What `echo second > /dev/stdout` does: the same file, opened again and truncated.
      const again = openSync(`/proc/${Deno.pid}/fd/${capture.fd}`, "w");
      writeSync(again, bytes("second\n"));
      closeSync(again);
      writeSync(capture.fd, bytes("third\n"));
      const events = asRead(await run.stop(), dir);
      assert.deepEqual(merged(events), [{
        stream: "stdout",
        lines: ["first line", "second", "third"],
      }]);
      assert.equal(
        await Deno.readTextFile(`${dir}/${logFileName("truncates")}`),
        "first line\nsecond\nthird\n",
      );
    });
  });

  await t.step("a process that outlives its run and rewrites it over and over", async () => {
    await withFolder(async (folder) => {
      const capture = folder.open("rewritten");
      const run = collect(capture);
      writeSync(capture.fd, bytes("first line\n"));
      await until("the first line to be sent", () => run.batches.length > 0);
      let n = 0;
      const stray = setInterval(() => {
        const again = openSync(`/proc/${Deno.pid}/fd/${capture.fd}`, "w");
        writeSync(again, bytes(`rewrite ${n++}\n`.repeat(200)));
        closeSync(again);
      }, 1);
      try {
        await new Promise((r) => setTimeout(r, 20));
        // The job's end does not wait for the stray: one more look, then done.
        await within(5000, run.stop(), "the run to end");
      } finally {
        clearInterval(stray);
      }
    });
  });

  await t.step("a process that outlives its run, and a retry", async () => {
    await withFolder(async (folder, dir) => {
      const first = folder.open("retried");
      const run1 = collect(first);
      writeSync(first.fd, bytes("attempt 1\n"));
      const stray = openSync(`/proc/${Deno.pid}/fd/${first.fd}`, "a");
      const events1 = await run1.stop();
      // Written after the run ended: not the job's, and nobody reads it.
      writeSync(stray, bytes("stray\n"));
      const second = folder.open("retried");
      const run2 = collect(second);
      writeSync(second.fd, bytes("attempt 2\n"));
      writeSync(stray, bytes("stray again\n"));
      const events2 = await run2.stop();
      closeSync(stray);
      assert.deepEqual(asRead(events1, dir), [{ stream: "stdout", lines: ["attempt 1"] }]);
      assert.deepEqual(asRead(events2, dir), [{ stream: "stdout", lines: ["attempt 2"] }]);
      // The retry's lines follow the first run's in the job's one log file.
      const ranges = [...events1, ...events2].map((e) =>
        e.type === "log" && "file" in e.data ? e.data.file.offset : -1
      );
      assert.deepEqual(ranges, [0, 10]);
      assert.equal(
        await Deno.readTextFile(`${dir}/${logFileName("retried")}`),
        "attempt 1\nattempt 2\n",
      );
      assert.throws(() => second.read(new Uint8Array(4), 0), /closed/);
    });
  });
});

Deno.test("a job that prints nothing leaves no log file", async () => {
  await withFolder(async (folder, dir) => {
    const capture = folder.open("silent");
    assert.deepEqual(await collect(capture).stop(), []);
    assert.throws(() => Deno.statSync(`${dir}/${logFileName("silent")}`), Deno.errors.NotFound);
  });
});

Deno.test("a job that never pauses leaves the thread to its timers", async () => {
  await withFolder(async (folder, dir) => {
    const capture = folder.open("flood");
    // 80 MB in one write, as fast as the job can: far more than the reader takes in 10 ms.
    const lines = 2_000_000;
    const script =
      `import sys; sys.stdout.write("a line that never ends, or nearly\\n" * ${lines})`;
    const { child } = await spawnLeader(["/usr/bin/python3", "-c", script], {
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin" },
      stdin: "null",
      stderr: "piped",
      stdoutFd: capture.fd,
    });
    const drained = (async () => {
      for await (const _ of child.stderr) { /* nothing expected */ }
    })();
    assert.equal((await child.status).code, 0);
    await drained;
    // The longest time this thread's timers waited while the reader worked.
    const started = performance.now();
    let last = started;
    let longest = 0;
    const timer = setInterval(() => {
      longest = Math.max(longest, performance.now() - last);
      last = performance.now();
    }, 5);
    const run = collect(capture);
    capture.end();
    await run.reading;
    const took = performance.now() - started;
    longest = Math.max(longest, performance.now() - last);
    clearInterval(timer);
    const events = await run.stop();
    assert.ok(took >= 100, `reading took ${took.toFixed(0)} ms: too little to tell`);
    assert.ok(
      longest < took / 3,
      `the timers waited ${longest.toFixed(0)} ms at once while reading took ${took.toFixed(0)} ms`,
    );
    const read = asRead(events, dir).flatMap((e) => "lines" in e ? e.lines : []);
    assert.equal(read.length, lines);
    assert.ok(read.every((l) => l === "a line that never ends, or nearly"));
  });
});

Deno.test("a spawn that fails later fails the spawn, not the thread", async () => {
  await withFolder(async (folder) => {
    const capture = folder.open("huge");
    const huge = Array(64).fill("x".repeat(128 * 1024));
    await assert.rejects(() =>
      spawnLeader(["/bin/true", ...huge], {
        clearEnv: true,
        env: {},
        stdin: "null",
        stderr: "piped",
        stdoutFd: capture.fd,
      })
    );
    // The runtime reports it once more, after the call returned: nothing may be left unheard.
    await new Promise((r) => setTimeout(r, 100));
    capture.close();
  });
});

Deno.test("a job far ahead of the reader is stopped until the reader catches up", async () => {
  await withFolder(async (_, dir) => {
    closeSync(openSync(`${dir}/.spool-test`, "w"));
    const capture = new LogCapture(dir, "ahead", ".spool-test", { max: 4 << 20, resume: 1 << 20 });
    // A real process group stands for the job: the pause is its SIGSTOP and SIGCONT.
    const { child, leading } = await spawnLeader(["sleep", "30"], {
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin" },
      stdin: "null",
      stderr: "piped",
    });
    await leading;
    const state = () => Deno.readTextFileSync(`/proc/${child.pid}/stat`).split(") ")[1][0];
    capture.pause = (stop) => signalGroup(child.pid, stop ? "SIGSTOP" : "SIGCONT");
    try {
      writeSync(capture.fd, new Uint8Array(10 << 20).fill(0x61));
      capture.behind(2 << 20); // 8 MiB behind
      await until("the job to be stopped", () => state() === "T");
      capture.behind(5 << 20); // 5 MiB: still stopped
      assert.equal(state(), "T");
      capture.behind(9.5 * (1 << 20)); // within 1 MiB: it goes on
      await until("the job to go on", () => state() !== "T");
      capture.behind(0); // behind again: stopped again
      await until("the job to be stopped again", () => state() === "T");
      // A job being stopped (cancel, timeout) or ended goes on, and is never paused again.
      capture.release();
      await until("the job to go on for good", () => state() !== "T");
      capture.behind(0);
      assert.notEqual(state(), "T");
    } finally {
      signalGroup(child.pid, "SIGKILL");
      await child.status;
      for await (const _ of child.stderr) { /* drained */ }
      capture.close();
    }
  });
});

Deno.test("lines that cannot be kept fail the job's output; they are not dropped quietly", async () => {
  await withFolder(async (folder) => {
    const capture = folder.open("full");
    let failed: string | null = null;
    const { batches, sink } = recordingSink();
    const collector = new OutputCollector(sink, {
      modelsDir: "/nonexistent",
      flushMs: 5,
      onFailed: (why) => failed = why,
    });
    const source: LogSource = {
      read: (into, position) => capture.read(into, position),
      size: () => capture.size(),
      keep: () => {
        throw new Error("No space left on device (os error 28)");
      },
      sync: () => capture.sync(),
    };
    const reading = collector.consumeFile(source, capture.ended);
    writeSync(capture.fd, bytes("one\ntwo\n"));
    capture.end();
    await reading;
    await collector.close();
    capture.close();
    assert.match(failed ?? "", /No space left on device/);
    assert.equal(collector.failure, failed);
    assert.deepEqual(batches.flat(), []);
  });
});

Deno.test("a log folder starts clean; a closed capture syncs nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "trainer-logfiles-" });
  let folder: LogFolder | null = null;
  try {
    await Deno.writeTextFile(`${dir}/.spool-old`, "a dead run's output\n");
    await Deno.writeTextFile(`${dir}/.spool-empty`, "");
    await Deno.writeTextFile(`${dir}/${logFileName("kept")}`, "stored\n");
    folder = new LogFolder(dir, 2);
    // An earlier run's spools are gone, spares too; job logs stay.
    for (const name of [".spool-old", ".spool-empty"]) {
      assert.throws(() => Deno.statSync(`${dir}/${name}`), Deno.errors.NotFound);
    }
    assert.equal(await Deno.readTextFile(`${dir}/${logFileName("kept")}`), "stored\n");
    await until(
      "spares to be made",
      () => [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith(".spool-")).length === 2,
    );
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.name.startsWith(".spool-")) {
        assert.equal(Deno.statSync(`${dir}/${entry.name}`).mode! & 0o777, 0o600);
      }
    }
    const capture = folder.open("closed");
    capture.keep(bytes("a line\n"));
    capture.close();
    await assert.rejects(capture.sync(), /closed/);
    // A closed folder makes no more spares: the one a job takes is not replaced.
    const spares = () => [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith(".spool-"));
    await folder.close();
    const before = spares().length;
    assert.ok(before >= 1, "a spare is left to take");
    folder.open("after close").close();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(spares().length, before - 1);
  } finally {
    await folder?.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a range whose file is gone reads as that many marker lines", () => {
  const text = readLogRange("/nonexistent", { name: "x.stdout", offset: 0, bytes: 9, chars: 9 }, 3);
  const lines = text.split("\n");
  assert.equal(lines.length, 3);
  for (const line of lines) assert.match(line, /^\[log unavailable: .*x\.stdout.*\]$/);
  assert.match(
    readLogRange(null, { name: "y", offset: 0, bytes: 1, chars: 1 }, 1),
    /no log folder/,
  );
});

/** The folder's spool files, by name. */
function spools(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(".spool-"))
    .sort();
}

Deno.test("a spool its job opened itself is emptied and reused once no process holds it", async (t) => {
  await withFolder(async (folder, dir) => {
    await t.step(
      "a job that wrote and ended: its spool is kept, empty, for the next job",
      async () => {
        const capture = folder.open("first");
        const { child } = await spawnLeader(["sh", "-c", "echo one; echo two"], {
          clearEnv: true,
          env: { PATH: "/usr/bin:/bin" },
          stdin: "null",
          stderr: "piped",
          stdoutPath: capture.spoolPath,
        });
        assert.equal((await child.status).code, 0);
        for await (const _ of child.stderr) { /* nothing expected */ }
        const name = capture.spoolName;
        const events = await collect(capture).stop(true);
        const lines = asRead(events, dir).flatMap((e) => "lines" in e ? e.lines : []);
        assert.deepEqual(lines, ["one", "two"]);
        assert.equal(Deno.statSync(`${dir}/${name}`).size, 0);
        assert.ok(spools(dir).includes(name));
        // The next job writes into the same file, and reads none of the first job's lines.
        const next = folder.open("second");
        assert.equal(next.spoolName, name);
        assert.equal(next.size(), 0);
        next.close();
        assert.ok(!spools(dir).includes(name));
      },
    );

    await t.step("a spool a leftover process still holds is removed, not reused", async () => {
      const capture = folder.open("held");
      const { child } = await spawnLeader(["sleep", "30"], {
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin" },
        stdin: "null",
        stderr: "piped",
        stdoutPath: capture.spoolPath,
      });
      const name = capture.spoolName;
      try {
        capture.close(true);
        assert.ok(!spools(dir).includes(name), "a spool still open elsewhere was kept");
        assert.notEqual(folder.open("after").spoolName, name);
      } finally {
        signalGroup(child.pid, "SIGKILL");
        await child.status;
        for await (const _ of child.stderr) { /* drained */ }
      }
    });

    await t.step("a spool the job got as a copy of the server's descriptor is never reused", () => {
      const capture = folder.open("copied");
      const name = capture.spoolName;
      capture.close(false);
      assert.ok(!spools(dir).includes(name));
    });
  });
});
