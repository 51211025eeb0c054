/**
 * What must hold on a database after a crash, checked from outside the server: accepted
 * jobs exist, events a client saw are unchanged, projections equal a replay, and no job
 * runs without a live process of the current server, nor any process without its job.
 */
import { inArray } from "drizzle-orm";
import { isDeepStrictEqual } from "node:util";
import { openDatabase } from "../../db/client.ts";
import { decodeLogLines } from "../../db/event_rows.ts";
import { logDirOf } from "../../db/log_files.ts";
import { replay } from "../../db/rebuild.ts";
import { rowToState } from "../../db/rows.ts";
import { events, jobs } from "../../db/schema.ts";
import { jobProcesses, procStat } from "../lib/procfs.ts";

/** Everything a client was told with a 2xx. */
export interface Witness {
  accepted: Set<string>;
  cancelled: Set<string>;
  /** Events read back through GET /train/job/{id}/events, by seq. */
  seen: Map<number, { job_id: string; version: number; type: string; data: unknown }>;
}

export function newWitness(): Witness {
  return { accepted: new Set(), cancelled: new Set(), seen: new Map() };
}

/** Checks the log and projection of a stopped server's database; returns the job ids. */
export async function checkStoppedDatabase(dbPath: string, w: Witness): Promise<Set<string>> {
  const database = await openDatabase(`file:${dbPath}`);
  try {
    const rows = await database.db.select().from(jobs);
    const projected = new Map(rows.map((r) => [r.job_id, rowToState(r)]));
    const replayed = await replay(database);
    const problems: string[] = [];
    for (const id of w.accepted) {
      if (!projected.has(id)) problems.push(`accepted job ${id} is missing`);
    }
    if (replayed.size !== projected.size) {
      problems.push(`projection has ${projected.size} jobs, replay ${replayed.size}`);
    }
    for (const [id, state] of replayed) {
      if (!isDeepStrictEqual(projected.get(id), state)) {
        problems.push(`job ${id}: projection differs from replay`);
      }
    }
    for (const id of w.cancelled) {
      if (!["cancelled"].includes(projected.get(id)?.status ?? "")) {
        problems.push(`job ${id} was cancelled with a 2xx but is ${projected.get(id)?.status}`);
      }
    }
    const stored = new Map<
      number,
      { job_id: string; version: number; type: string; data: unknown }
    >();
    const seqs = [...w.seen.keys()];
    for (let i = 0; i < seqs.length; i += 500) {
      const part = seqs.slice(i, i + 500);
      for (const e of await database.db.select().from(events).where(inArray(events.seq, part))) {
        // As clients see it: log lines as an array, however they are stored.
        const data = e.type === "log"
          ? decodeLogLines(e.data, e.log_text, logDirOf(database.client))
          : JSON.parse(e.data);
        stored.set(e.seq, { ...e, data });
      }
    }
    for (const [seq, e] of w.seen) {
      const s = stored.get(seq);
      if (
        !s || s.job_id !== e.job_id || s.version !== e.version || s.type !== e.type ||
        !isDeepStrictEqual(s.data, e.data)
      ) {
        problems.push(
          `event ${seq} (${e.type} of ${e.job_id}) seen by a client is gone or changed`,
        );
      }
    }
    if (problems.length) {
      throw new Error(`after the kill:\n  ${problems.slice(0, 20).join("\n  ")}`);
    }
    return new Set(projected.keys());
  } finally {
    database.close();
  }
}

interface LiveRow {
  job_id: string;
  status: string;
  process: {
    pid: number;
    pgid: number;
    start_ticks: number | null;
    alive: boolean;
    worker_id: string;
  } | null;
}

/**
 * With the restarted server `serverPid` running: every `running` job has a live process of
 * this server, and every process carrying one of `jobIds` belongs to a group this server
 * started. A suspect is confirmed only if it persists for `graceMs` (a job may be ending).
 */
export async function checkLiveServer(
  dbPath: string,
  serverPid: number,
  jobIds: Set<string>,
  graceMs = 4000,
): Promise<{ running: number; processes: number }> {
  const deadline = Date.now() + graceMs;
  const earlier = new Map<string, number>();
  for (;;) {
    const problems: string[] = [];
    const database = await openDatabase(`file:${dbPath}`);
    let running: LiveRow[];
    try {
      const rows = await database.db.select().from(jobs);
      // A parent ("all") has no process of its own; its status follows its children.
      running = rows.map(rowToState).filter((j) =>
        !j.children && (j.status === "running" || j.process?.alive)
      ) as LiveRow[];
      for (const r of rows) jobIds.add(r.job_id);
    } finally {
      database.close();
    }
    const worker = `local-${Deno.hostname()}-${serverPid}`;
    let runningCount = 0;
    for (const j of running) {
      if (j.status === "running") runningCount++;
      const p = j.process;
      if (!p) {
        if (j.status === "running") problems.push(`job ${j.job_id} is running without a process`);
        continue;
      }
      const st = procStat(p.pid);
      const live = st !== null && st.state !== "Z" &&
        (p.start_ticks === null || st.startTicks === p.start_ticks);
      if (!live) {
        const why = st === null
          ? "no such pid"
          : st.state === "Z"
          ? "a zombie, not reaped"
          : `pid reused (start ticks ${st.startTicks}, recorded ${p.start_ticks})`;
        problems.push(`job ${j.job_id} is ${j.status} but its process ${p.pid} is gone: ${why}`);
      } else if (p.worker_id !== worker) {
        problems.push(`job ${j.job_id} still belongs to the dead worker ${p.worker_id}`);
      }
    }
    const procs = jobProcesses(jobIds);
    for (const [pid, id] of procs) {
      const st = procStat(pid);
      if (!st) continue;
      const leader = procStat(st.pgid);
      if (!leader || leader.ppid !== serverPid) {
        problems.push(`orphan: pid ${pid} of job ${id} (group ${st.pgid}) is not this server's`);
      }
    }
    if (problems.length === 0) return { running: runningCount, processes: procs.size };
    for (const p of problems) earlier.set(p, (earlier.get(p) ?? 0) + 1);
    if (Date.now() > deadline) {
      // Each look may find another job between its exit and its end's commit: every problem
      // seen in the window is listed, with how many looks saw it.
      const all = [...earlier].map(([p, n]) => `${p} (seen ${n} times)`);
      throw new Error(
        `after the restart:\n  ${problems.join("\n  ")}\n  in all:\n  ${all.join("\n  ")}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Reads a database that servers may still be writing (WAL lets a reader in) and returns what
 * breaks the log's rules: duplicate seqs, seq or version gaps, projection unlike a replay.
 */
export async function logProblems(dbPath: string): Promise<string[]> {
  const database = await openDatabase(`file:${dbPath}`);
  try {
    const problems: string[] = [];
    const rs = await database.client.execute(
      "SELECT count(*) AS n, count(DISTINCT seq) AS seqs, min(seq) AS lo, max(seq) AS hi FROM events",
    );
    const { n, seqs, lo, hi } = rs.rows[0];
    if (Number(n) !== Number(seqs)) problems.push(`${n} events but ${seqs} distinct seqs`);
    if (Number(n) && Number(hi) - Number(lo) + 1 !== Number(n)) {
      problems.push(`seqs ${lo}..${hi} are not gapless for ${n} events`);
    }
    const gaps = await database.client.execute(
      "SELECT job_id FROM events GROUP BY job_id HAVING max(version) != count(*) LIMIT 5",
    );
    for (const r of gaps.rows) problems.push(`job ${r.job_id}: its versions have gaps`);
    const rows = await database.db.select().from(jobs);
    const replayed = await replay(database);
    if (replayed.size !== rows.length) {
      problems.push(`projection has ${rows.length} jobs, replay ${replayed.size}`);
    }
    for (const row of rows) {
      if (!isDeepStrictEqual(rowToState(row), replayed.get(row.job_id))) {
        problems.push(`job ${row.job_id}: projection differs from replay`);
      }
    }
    return problems;
  } finally {
    database.close();
  }
}
