/**
 * Generates a large, valid database for the read and rebuild benchmarks. Jobs are terminal,
 * so a server opened on the database has nothing to recover.
 */
import { getTableColumns } from "drizzle-orm";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import type { Clock } from "../../db/clock.ts";
import { openDatabase } from "../../db/client.ts";
import { jobs } from "../../db/schema.ts";
import { type Command, decide, type OutputEvent } from "../../jobs/decide.ts";
import { JobEvent } from "../../jobs/events.ts";
import { evolve, type JobState } from "../../jobs/state.ts";

export const EVENTS_PER_JOB = 20;

export interface GenerateOptions {
  jobs: number;
  onProgress?: (jobsDone: number) => void;
}

/** A clock that advances one millisecond per reading from a fixed start. */
function steppingClock(start = Date.parse("2026-01-01T00:00:00Z")): Clock {
  let t = start;
  return { now: () => new Date(t++) };
}

/** The commands of one job: submit, start, 16 output events, then how it ended (20 events). */
export function jobCommands(i: number, modelsDir: string): Command[] {
  const id8 = String(i).padStart(8, "0");
  const type = ["xgboost", "random-forest", "neural-net"][i % 3];
  const artifact = `${modelsDir}/${type}_model_2026-01-01_000000_${id8}.joblib`;
  const outputs: OutputEvent[] = [];
  for (let k = 0; k < 16; k++) {
    if (k % 4 === 3) {
      outputs.push({
        type: "progress",
        data: { step: k, total: 16, message: `epoch ${k}`, metrics: { loss: 1 / (k + 1) } },
      });
    } else {
      const line = `job ${id8} step ${String(k).padStart(2, "0")} loss=${(1 / (k + 1)).toFixed(6)}`;
      outputs.push({ type: "log", data: { stream: k % 5 ? "stdout" : "stderr", lines: [line] } });
    }
  }
  outputs[15] = { type: "metrics", data: { metrics: { accuracy: 0.9 + (i % 10) / 100 } } };
  const ending = i % 10;
  const commands: Command[] = [
    {
      type: "submit",
      reuse: null,
      data: {
        model_type: type,
        parent_id: null,
        children: null,
        retrain: true,
        use_cv: i % 2 === 0,
        hyperparameters: { n_estimators: 10 + (i % 50) },
        timeout_seconds: 3600,
        artifact_path: artifact,
        idempotency_key: null,
        request_hash: null,
      },
    },
    {
      type: "start",
      data: {
        pid: 100000 + i,
        pgid: 100000 + i,
        start_ticks: 1000 + i,
        worker_id: "bench-generator",
        command: ["/usr/bin/python3", "train.py"],
      },
    },
    ...outputs.map((e): Command => ({ type: "output", events: [e] })),
  ];
  const report = {
    exit_code: ending === 9 ? 1 : 0,
    signal: null,
    artifact: ending < 8 ? artifact : null,
    stderr_tail: ending === 9 ? "Traceback: boom" : "",
    script_failure: null,
    stopped_for: null,
    stopped_with: null,
    group_gone: true,
  };
  if (ending === 8) {
    commands.push({ type: "cancel", reason: "cancelled by request" });
    commands.push({
      type: "exit",
      report: { ...report, exit_code: null, signal: "SIGTERM", stopped_for: "cancel" },
    });
  } else {
    commands.push({ type: "exit", report });
  }
  return commands;
}

/**
 * Writes `opts.jobs` jobs of 20 events each into a new database at `path`. The schema comes
 * from the real migrations (openDatabase); events are decided, parsed and evolved with the
 * real pure functions (jobs/decide.ts, jobs/events.ts, jobs/state.ts), then inserted with
 * node:sqlite prepared statements (the EventStore's per-commit query building would take
 * minutes for 2,000,000 events). Each job's final state is written as its `jobs` row the way
 * drizzle serializes it; the rebuild benchmark checks the rows equal a rebuild's.
 */
export async function generateDatabase(path: string, opts: GenerateOptions): Promise<number> {
  const database = await openDatabase(`file:${path}`);
  database.close();
  const sqlite = new DatabaseSync(path);
  sqlite.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF");
  const insertEvent = sqlite.prepare(
    "INSERT INTO events (seq, job_id, version, type, data, at) VALUES (?, ?, ?, ?, ?, ?)",
  );
  const insertJob = sqlite.prepare(
    `INSERT INTO jobs (${JOB_COLUMNS.join(", ")}) VALUES (${
      JOB_COLUMNS.map(() => "?").join(", ")
    })`,
  );
  const clock = steppingClock();
  let seq = 0;
  try {
    sqlite.exec("BEGIN");
    for (let i = 0; i < opts.jobs; i++) {
      const id = jobId(i);
      let state: JobState | undefined;
      for (const command of jobCommands(i, "/var/lib/trainer/models")) {
        const at = clock.now().toISOString();
        for (const raw of decide(command, state, id)) {
          const event = JobEvent.parse(raw);
          const stored = { seq: ++seq, job_id: id, version: (state?.version ?? 0) + 1, at, event };
          state = evolve(state, stored);
          insertEvent.run(seq, id, stored.version, event.type, JSON.stringify(event.data), at);
        }
      }
      insertJob.run(...jobRowValues(state!));
      if ((i + 1) % 5000 === 0) {
        sqlite.exec("COMMIT; BEGIN");
        opts.onProgress?.(i + 1);
      }
    }
    sqlite.exec("COMMIT");
    sqlite.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } finally {
    sqlite.close();
  }
  return seq;
}

const JSON_COLUMNS = new Set([
  "children",
  "hyperparameters",
  "progress",
  "metrics",
  "warnings",
  "process",
]);
const JOB_COLUMNS = Object.values(getTableColumns(jobs)).map((c) => c.name);

/** A state as drizzle stores it: JSON columns as text, booleans as 0/1. */
function jobRowValues(state: JobState): SQLInputValue[] {
  const row = state as unknown as Record<string, unknown>;
  return JOB_COLUMNS.map((name) => {
    const v = row[name];
    if (JSON_COLUMNS.has(name)) return v === null ? null : JSON.stringify(v);
    if (typeof v === "boolean") return v ? 1 : 0;
    return v as SQLInputValue;
  });
}

/** The deterministic id of generated job `i` (a valid UUID). */
export function jobId(i: number): string {
  const hex = i.toString(16).padStart(12, "0");
  return `00000000-0000-4000-8000-${hex}`;
}
