/**
 * Log ingestion: a job printing 1,000,000 lines of 60 bytes as fast as it can. Every line
 * must be stored, in order; the job's wall time (started_at to completed_at, so storing
 * every line is included) is compared with the same program writing to a file.
 */
import type { BenchContext } from "./lib/context.ts";
import type { BenchResult } from "./lib/machine.ts";
import { compileC, haveCc, LINES_C } from "./lib/native.ts";
import { startServer, waitFor, writeRegistry } from "./lib/server.ts";

const LINES = 1_000_000;

export async function logs(ctx: BenchContext): Promise<BenchResult> {
  if (!await haveCc()) throw new Error("the log benchmark needs cc (apt-get install gcc)");
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "logs-" });
  const bin = await compileC(dir, "lines", LINES_C);
  const baseline = await toFile(bin, `${dir}/lines.out`);
  ctx.log(`logs: the program writing to a file takes ${baseline.toFixed(0)} ms (median of 3)`);
  const registry = await writeRegistry(dir, { lines: { command: [bin, String(LINES)] } });
  const server = await startServer({ dir, env: { MODEL_REGISTRY: registry } });
  let job, check, childMs, stallMs;
  try {
    const res = await fetch(`${server.url}/train/lines`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"retrain":true}',
    });
    const id = (await res.json()).data.job_id as string;
    job = await waitFor(
      "the job to finish",
      async () => {
        const s = (await (await fetch(`${server.url}/train/status/${id}`)).json()).data;
        return ["completed", "failed", "cancelled"].includes(s.status) ? s : undefined;
      },
      300_000,
      50,
    );
    ({ check, childMs, stallMs } = await checkLines(server.url, id));
  } finally {
    await server.stop();
  }
  const wall = Date.parse(job.completed_at) - Date.parse(job.started_at);
  const ratio = wall / baseline;
  return {
    name: "logs",
    checks: [
      {
        figure: "lines stored in order",
        value: check.inOrder,
        unit: `of ${LINES}`,
        target: `${LINES}`,
        pass: check.inOrder === LINES && check.stdout === LINES && job.status === "completed",
      },
      {
        figure: "job wall time / writing to a file",
        value: ratio,
        unit: "x",
        target: "<= 1.5",
        pass: ratio <= 1.5,
      },
    ],
    details: {
      lines: LINES,
      line_bytes: 60,
      job_status: job.status,
      job_wall_ms: wall,
      job_wall_definition: "started_at -> completed_at (child run + every line durable)",
      child_own_run_ms: childMs,
      child_own_run_ratio: childMs / baseline,
      child_longest_blocked_write_ms: stallMs,
      file_baseline_ms: baseline,
      baseline_definition: "spawn -> exit of the same binary with stdout redirected to a file",
      stdout_lines_stored: check.stdout,
      log_events: check.events,
      first_bad_line: check.firstBad,
    },
  };
}

/** Median wall time (spawn to exit) of the program with stdout redirected to a file. */
async function toFile(bin: string, out: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const r = await new Deno.Command("sh", {
      args: ["-c", 'exec "$0" "$1" > "$2"', bin, String(LINES), out],
      stderr: "null",
    }).output();
    if (!r.success) throw new Error("the baseline run failed");
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[1];
}

/** Pages through GET /train/logs/{id}; checks stdout is line 1..N in order. */
async function checkLines(url: string, id: string) {
  let after = 0;
  let expected = 1;
  let inOrder = 0;
  let stdout = 0;
  let events = 0;
  let firstBad: string | null = null;
  let childMs = NaN;
  let stallMs = NaN;
  for (;;) {
    const page = await (await fetch(`${url}/train/logs/${id}?after=${after}&limit=1000`)).json();
    for (const entry of page.entries as { stream: string; lines: string[] }[]) {
      events++;
      if (entry.stream === "stderr") {
        for (const l of entry.lines) {
          const m = /^took_ns (\d+) max_stall_ns (\d+)/.exec(l);
          if (m) [childMs, stallMs] = [Number(m[1]) / 1e6, Number(m[2]) / 1e6];
        }
        continue;
      }
      for (const line of entry.lines) {
        stdout++;
        const want = `line ${String(expected).padStart(9, "0")} ` +
          "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHI";
        if (line === want && firstBad === null) inOrder++;
        else firstBad ??= `#${expected}: ${line.slice(0, 80)}`;
        expected++;
      }
    }
    if (page.entries.length === 0) break;
    after = page.next_after;
  }
  return { check: { inOrder, stdout, events, firstBad }, childMs, stallMs };
}
