/**
 * Remote kill drill: hosted mode under SIGKILL. Two `WORKERS=remote` servers share one
 * database; two or three workers each talk to one of them. Under a workload of submissions,
 * cancels and reads through both servers, a random server or worker is SIGKILLed at a random
 * moment and started again after a short pause, on the same port or with the same
 * WORKER_NAME, `kills` times. Then the workload stops, the drill waits until nothing waits,
 * runs or is leased, restarts every worker once more, and checks the database and the
 * machine; it throws a DrillFailure naming the first broken invariant.
 */
import { openDatabase } from "../../db/client.ts";
import { jobProcesses } from "../lib/procfs.ts";
import { writeRegistry } from "../lib/server.ts";
import { DrillFailure } from "./failure.ts";
import { checkStoppedDatabase, logProblems, newWitness } from "./invariants.ts";
import { rng } from "./kill_loop.ts";
import { Cast } from "./remote_cast.ts";
import { checkRemoteLog, type LogFigures, quiesce, type WorkerKill } from "./remote_checks.ts";
import { startWorkload, type WorkloadStats } from "./remote_workload.ts";

export interface KillRemoteOptions {
  kills: number;
  dir: string;
  seed?: number;
  /** Workers, 2 or 3 (3 unless given). */
  workers?: number;
  /** The servers' LEASE_SECONDS (5 unless given). */
  leaseSeconds?: number;
  /** How long the long model type trains (12 s unless given). */
  longSeconds?: number;
  /** Waiting jobs above which the workload holds off submitting (20 unless given). */
  maxWaiting?: number;
  /** Deadline for the quiet at the end (180 s unless given). */
  quiesceMs?: number;
  log?: (message: string) => void;
}

export interface KillRemoteFigures extends Partial<LogFigures> {
  seed: number;
  kills: number;
  server_kills: number;
  worker_kills: number;
  servers: number;
  workers: number;
  lease_seconds: number;
  jobs_accepted: number;
  cancels_accepted: number;
  requests: number;
  requests_to_dead_servers: number;
  submissions_with_max_attempts: number;
  status_reads: number;
  quiesce_ms: number | null;
  /** Jobs seen with live processes in two process groups at the same moment. */
  jobs_seen_running_twice: number;
}

/** Fast shell scripts: a short job, a long one (killed mid-run), one that fails. */
function scripts(longSeconds: number): Record<string, string> {
  return {
    short:
      '#!/bin/sh\necho "short $TRAIN_JOB_ID"\nsleep 0.3\necho model > "$TRAIN_ARTIFACT_PATH"\n',
    long: `#!/bin/sh\necho "long $TRAIN_JOB_ID"\nsleep ${longSeconds}\n` +
      'echo model > "$TRAIN_ARTIFACT_PATH"\n',
    failing: '#!/bin/sh\necho "failing" >&2\nsleep 0.1\nexit 3\n',
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function killRemote(opts: KillRemoteOptions): Promise<KillRemoteFigures> {
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const chaos = rng(seed);
  const log = opts.log ?? (() => {});
  const leaseSeconds = opts.leaseSeconds ?? 5;
  const types: Record<string, { command: string[] }> = {};
  for (const [name, body] of Object.entries(scripts(opts.longSeconds ?? 12))) {
    const path = `${opts.dir}/${name}.sh`;
    await Deno.writeTextFile(path, body, { mode: 0o755 });
    types[name] = { command: [path] };
  }
  const dbPath = `${opts.dir}/trainer.db`;
  const cast = new Cast({
    dir: opts.dir,
    dbPath,
    registry: await writeRegistry(opts.dir, types),
    servers: 2,
    workers: opts.workers ?? 3,
    leaseSeconds,
    maxConcurrent: 4,
  });
  const w = newWitness();
  const kills: WorkerKill[] = [];
  let stats: WorkloadStats | null = null;
  let quiesceMs: number | null = null;
  let logFigures: Partial<LogFigures> = {};
  const figures = (): KillRemoteFigures => ({
    seed,
    kills: kills.length + serverKills,
    server_kills: serverKills,
    worker_kills: kills.length,
    servers: cast.servers.length,
    workers: cast.workers.length,
    lease_seconds: leaseSeconds,
    jobs_accepted: w.accepted.size,
    cancels_accepted: w.cancelled.size,
    requests: stats?.requests ?? 0,
    requests_to_dead_servers: stats?.unreachable ?? 0,
    submissions_with_max_attempts: stats?.with_max_attempts ?? 0,
    status_reads: stats?.status_reads ?? 0,
    quiesce_ms: quiesceMs,
    jobs_seen_running_twice: cast.overlaps.size,
    ...logFigures,
  });
  let serverKills = 0;
  let phase = "start";
  const check = (rule: string, problems: string[]) => {
    if (problems.length) throw new Error(`${rule}:\n  ${problems.slice(0, 10).join("\n  ")}`);
  };
  log(`remote kill drill: seed ${seed}, ${opts.kills} kills, lease ${leaseSeconds} s`);
  try {
    // One at a time: two servers migrating one new database at once is not what is drilled.
    for (const s of cast.servers) await cast.start(s);
    await Promise.all(cast.workers.map((m) => cast.start(m)));
    cast.startSampling(() => w.accepted);
    const workload = startWorkload({
      urls: cast.servers.map((s) => s.url),
      w,
      random: rng(seed + 1),
      types: [["short", 5], ["long", 2], ["failing", 2], ["all", 0.5]],
      maxWaiting: opts.maxWaiting ?? 20,
    });
    stats = workload.stats;
    for (let k = 1; k <= opts.kills; k++) {
      phase = `kill ${k}`;
      await sleep(500 + chaos() * 2500);
      const members = cast.members;
      const m = members[Math.floor(chaos() * members.length)];
      const leases = m.kind === "worker" ? await leasesOf(dbPath, m.workerId!) : [];
      await cast.kill(m);
      if (m.kind === "worker") kills.push({ worker: m.name, at: Date.now(), leases });
      else serverKills++;
      await sleep(200 + chaos() * 1300);
      await cast.start(m);
      log(
        `kill ${k}: ${m.name}` + (m.kind === "worker" ? ` holding ${leases.length} lease(s)` : "") +
          `; ${w.accepted.size} jobs accepted, ${w.cancelled.size} cancels`,
      );
    }
    phase = "quiesce";
    await workload.stop();
    check("the servers answer clients only what they may", stats.problems);
    quiesceMs = await quiesce(dbPath, opts.quiesceMs ?? 180_000);
    log(`quiet after ${quiesceMs} ms`);
    phase = "final worker restarts";
    for (const m of cast.workers) {
      await cast.kill(m);
      await cast.start(m);
    }
    const ids = await jobIds(dbPath);
    check("no training process of the drill is left", await processesLeft(ids, 5000));
    cast.stopSampling();
    await cast.stopAll();
    phase = "checks";
    check("the log is sound (seqs, versions, projection == replay)", await logProblems(dbPath));
    await checkStoppedDatabase(dbPath, w);
    logFigures = await checkRemoteLog(dbPath, kills);
    // The lease runs out at most LEASE_SECONDS after the last heartbeat, and the surviving
    // server reaps every second.
    const bound = (leaseSeconds + 2) * 1000;
    if (logFigures.longest_kill_to_lost_ms! > bound) {
      check(`a lost worker's job is requeued or failed within ${bound} ms of the kill`, [
        `${logFigures.longest_kill_to_lost_ms} ms`,
      ]);
    }
    check("no server ever had a child process", [...cast.serverChildren]);
    return figures();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const errors = cast.grep(/ failed: |error|panic|uncaught/i);
    throw new DrillFailure(
      `${phase}: ${message}` +
        (errors.length ? `\nserver and worker logs:\n  ${errors.join("\n  ")}` : ""),
      figures(),
    );
  } finally {
    cast.stopSampling();
    await Promise.all(cast.members.map((m) => cast.kill(m)));
    // Whatever a failed run left: the drill's jobs' processes.
    for (const pid of jobProcesses(await jobIds(dbPath).catch(() => w.accepted)).keys()) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
}

async function leasesOf(dbPath: string, workerId: string) {
  const database = await openDatabase(`file:${dbPath}`);
  try {
    const rs = await database.client.execute({
      sql: "SELECT job_id, attempt FROM leases WHERE active = 1 AND worker_id = ?",
      args: [workerId],
    });
    return rs.rows.map((r) => ({ job_id: String(r.job_id), attempt: Number(r.attempt) }));
  } finally {
    database.close();
  }
}

async function jobIds(dbPath: string): Promise<Set<string>> {
  const database = await openDatabase(`file:${dbPath}`);
  try {
    const rs = await database.client.execute("SELECT job_id FROM jobs");
    return new Set(rs.rows.map((r) => String(r.job_id)));
  } finally {
    database.close();
  }
}

/** Processes of `ids` still alive after `graceMs` (one may be exiting as we look). */
async function processesLeft(ids: Set<string>, graceMs: number): Promise<string[]> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    const left = jobProcesses(ids);
    if (left.size === 0 || Date.now() > deadline) {
      return [...left].map(([pid, id]) => `pid ${pid} of job ${id}`);
    }
    await sleep(200);
  }
}
