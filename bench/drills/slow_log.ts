/**
 * Slow disk and full log: a child printing as fast as it can while the database is slow.
 * `collectorDrill` runs jobs/output.ts's OutputCollector on a real child's pipes with an
 * injected sink: "stalled" holds every append until the child has exited (if reading ever
 * waited on the sink, the child would block on its full pipe and never exit), "flaky" is
 * slow and fails a quarter of its appends. Every line must arrive once, in order.
 * `serverDrill` does the same end to end: the real server, while another connection holds
 * the database's write lock most of the time.
 */
import { DatabaseSync } from "node:sqlite";
import type { OutputEvent } from "../../jobs/decide.ts";
import { logLines } from "../../jobs/events.ts";
import { OutputCollector } from "../../jobs/output.ts";
import { compileC, haveCc, LINES_C } from "../lib/native.ts";
import { startServer, waitFor, writeRegistry } from "../lib/server.ts";
import { DrillFailure } from "./failure.ts";
import { rng } from "./kill_loop.ts";

/** How long the end-to-end job may take; a healthy server needs a few seconds. */
const JOB_DEADLINE_MS = 120_000;

export const LINE_TAIL = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHI";
const expected = (i: number) => `line ${String(i).padStart(9, "0")} ${LINE_TAIL}`;

/** `seq` prints the same 60-byte lines as bench/lib/native.ts LINES_C, natively and fast. */
function seqCommand(lines: number): Deno.Command {
  return new Deno.Command("seq", {
    args: ["-f", `line %09.0f ${LINE_TAIL}`, "1", String(lines)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

export interface CollectorFigures {
  mode: "stalled" | "flaky";
  lines_checked: number;
  sink_calls: number;
  sink_failures: number;
  log_events: number;
  child_exited_while_sink_stalled: boolean;
  child_ms: number;
}

export async function collectorDrill(
  lines: number,
  mode: "stalled" | "flaky",
  seed = 1,
): Promise<CollectorFigures> {
  const random = rng(seed);
  const stored: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  let exited = false;
  let stalledExit = false;
  const figures = { calls: 0, failures: 0, events: 0 };
  const sink = async (events: OutputEvent[]) => {
    figures.calls++;
    if (mode === "stalled") await gate;
    else {
      await new Promise((r) => setTimeout(r, 5 + random() * 45));
      if (random() < 0.25) {
        figures.failures++;
        throw new Error("injected: database is busy");
      }
    }
    for (const e of events) {
      figures.events++;
      if (e.type === "log" && e.data.stream === "stdout") stored.push(...logLines(e.data));
    }
  };
  const collector = new OutputCollector(sink, { modelsDir: "/nonexistent" });
  const started = performance.now();
  const child = seqCommand(lines).spawn();
  const reading = Promise.all([
    collector.consume(child.stdout, "stdout"),
    collector.consume(child.stderr, "stderr"),
  ]);
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const status = await child.status;
  clearTimeout(timer);
  exited = status.success;
  const childMs = performance.now() - started;
  if (mode === "stalled") stalledExit = exited && figures.events === 0;
  release();
  await reading;
  await collector.close();
  if (!exited) throw new Error(`the child did not exit (blocked on its pipe?): ${status.signal}`);
  if (mode === "stalled" && !stalledExit) {
    throw new Error("the sink stored lines before the child exited; the stall was not in effect");
  }
  checkLines(stored, lines);
  return {
    mode,
    lines_checked: stored.length,
    sink_calls: figures.calls,
    sink_failures: figures.failures,
    log_events: figures.events,
    child_exited_while_sink_stalled: stalledExit,
    child_ms: Math.round(childMs),
  };
}

/** Throws naming the first missing, extra or out-of-order line. */
export function checkLines(stored: string[], lines: number): void {
  for (let i = 0; i < Math.max(stored.length, lines); i++) {
    if (stored[i] !== expected(i + 1)) {
      throw new Error(
        `line ${i + 1} of ${lines}: got ${JSON.stringify(stored[i])} (${stored.length} stored)`,
      );
    }
  }
}

export interface ServerDrillFigures {
  lines_checked: number;
  job_status: string;
  lock_held_ms: number;
  lock_windows: number;
  child_own_ms: number | null;
  /** The longest single write of the child (a blocked pipe shows as a long write). */
  child_longest_blocked_write_ms: number | null;
  /** Its longest write was shorter than half a lock window: reading never waited on the database. */
  child_never_blocked: boolean;
  child_to_file_ms: number;
  job_wall_ms: number;
}

/**
 * The real server runs a job printing `lines` lines while this process holds the
 * database's write lock for `holdMs` out of every `holdMs + gapMs`.
 */
export async function serverDrill(
  dir: string,
  lines: number,
  holdMs = 300,
  gapMs = 100,
): Promise<ServerDrillFigures> {
  if (!await haveCc()) throw new Error("the end-to-end slow-disk drill needs cc");
  const bin = await compileC(dir, "lines", LINES_C);
  const t0 = performance.now();
  await new Deno.Command("sh", { args: ["-c", `exec "${bin}" ${lines} > "${dir}/out.txt"`] })
    .output();
  const toFile = performance.now() - t0;
  const registry = await writeRegistry(dir, { lines: { command: [bin, String(lines)] } });
  const server = await startServer({ dir, env: { MODEL_REGISTRY: registry } });
  const locker = new DatabaseSync(server.dbPath);
  let holding = true;
  let held = 0;
  let windows = 0;
  const hold = (async () => {
    while (holding) {
      try {
        locker.exec("BEGIN IMMEDIATE");
      } catch {
        await new Promise((r) => setTimeout(r, 5)); // the server is writing: try again
        continue;
      }
      const t = performance.now();
      await new Promise((r) => setTimeout(r, holdMs));
      locker.exec("COMMIT");
      held += performance.now() - t;
      windows++;
      await new Promise((r) => setTimeout(r, gapMs));
    }
  })();
  try {
    const res = await fetch(`${server.url}/train/lines`, { method: "POST" });
    const id = (await res.json()).data.job_id as string;
    const status = async () =>
      (await (await fetch(`${server.url}/train/status/${id}`)).json()).data;
    const job = await waitFor(
      "the job to finish",
      async () => {
        const s = await status();
        return ["completed", "failed", "cancelled"].includes(s.status) ? s : undefined;
      },
      JOB_DEADLINE_MS,
      100,
    ).catch(async () => {
      const s = await status();
      throw new DrillFailure(
        `the job did not finish in ${JOB_DEADLINE_MS / 1000} s while the database was ` +
          `write-locked ${holdMs} ms of every ${holdMs + gapMs} ms: ${s.log_lines} of ${lines} ` +
          `lines stored so far`,
        { job_status: s.status, lines_stored: s.log_lines, lock_windows: windows },
      );
    });
    holding = false;
    await hold;
    const { stdout, childNs, stallNs } = await readLog(server.url, id);
    checkLines(stdout, lines);
    const stall = stallNs === null ? null : Math.round(stallNs / 1e6);
    return {
      lines_checked: stdout.length,
      job_status: job.status,
      lock_held_ms: Math.round(held),
      lock_windows: windows,
      child_own_ms: childNs === null ? null : Math.round(childNs / 1e6),
      child_longest_blocked_write_ms: stall,
      child_never_blocked: stall !== null && stall < holdMs / 2,
      child_to_file_ms: Math.round(toFile),
      job_wall_ms: Date.parse(job.completed_at) - Date.parse(job.started_at),
    };
  } finally {
    holding = false;
    await hold;
    locker.close();
    await server.stop();
  }
}

async function readLog(url: string, id: string) {
  const stdout: string[] = [];
  let childNs: number | null = null;
  let stallNs: number | null = null;
  for (let after = 0;;) {
    const page = await (await fetch(`${url}/train/logs/${id}?after=${after}&limit=1000`)).json();
    if (page.entries.length === 0) break;
    for (const e of page.entries as { stream: string; lines: string[] }[]) {
      if (e.stream === "stdout") stdout.push(...e.lines);
      else {
        for (const l of e.lines) {
          const m = /^took_ns (\d+) max_stall_ns (\d+)/.exec(l);
          if (m) [childNs, stallNs] = [Number(m[1]), Number(m[2])];
        }
      }
    }
    after = page.next_after;
  }
  return { stdout, childNs, stallNs };
}
