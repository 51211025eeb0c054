/**
 * Start-up recovery. A server that died (even by SIGKILL) leaves jobs marked running and
 * perhaps their processes alive, reparented to init. Before taking work, every such job is
 * resolved: its processes are found (recorded group, checked against the recorded start
 * time so a reused pid is never hit; plus any process whose environment names the job) and
 * killed, and the job is failed as `interrupted` with that evidence.
 */
import { dirname, resolve } from "node:path";
import type { EventStore } from "../db/event_store.ts";
import { removeArtifacts } from "../models/artifacts.ts";
import {
  findJobProcesses,
  groupAlive,
  isSameProcess,
  killJobProcesses,
  signalGroup,
  waitGroupGone,
} from "./process.ts";

export interface RecoveryResult {
  interrupted: string[];
  killed: number[];
}

/** The database's lock is held by another live process (a server, or a rebuild). */
export class DatabaseInUseError extends Error {
  constructor(readonly url: string, readonly holder: string) {
    super(
      `DATABASE_URL=${url} is in use by another server${holder ? ` (${holder})` : ""}; ` +
        `stop it first, or give this one its own database`,
    );
  }
}

/**
 * Takes the database's lock file (`<path>.lock`) for the life of the process, so that a
 * second server on the same local database refuses to start instead of "recovering" (killing)
 * the jobs of the live one. flock is released by the kernel when the process dies, even by
 * SIGKILL, and children do not inherit it (close-on-exec). Remote databases are not locked.
 * Resolves with the held file (keep it open), or rejects naming the holder.
 */
export async function lockDatabase(url: string, waitMs = 3000): Promise<Deno.FsFile | null> {
  if (!url.startsWith("file:")) return null;
  const path = url.slice("file:".length);
  if (!path || path === ":memory:") return null;
  await Deno.mkdir(dirname(resolve(path)), { recursive: true });
  const file = await Deno.open(`${path}.lock`, { read: true, write: true, create: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const locked = await Promise.race([
    file.lock(true).then(() => true),
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), waitMs)),
  ]);
  clearTimeout(timer);
  if (!locked) {
    const holder = (await Deno.readTextFile(`${path}.lock`).catch(() => "")).trim();
    throw new DatabaseInUseError(url, holder);
  }
  await file.truncate(0);
  await file.write(new TextEncoder().encode(`pid ${Deno.pid}\n`));
  return file;
}

export interface RecoveryOptions {
  modelsDir: string;
  log?: (message: string) => void;
}

/** Resolves what an earlier server left behind. Call before the supervisor starts. */
export async function recover(store: EventStore, opts: RecoveryOptions): Promise<RecoveryResult> {
  const active = store.activeJobs();
  // One scan for every job id: the active jobs' strays, and those of jobs that ended while
  // a process of theirs escaped (the server died before it could kill them, say).
  const strays = findJobProcesses(null);
  const result: RecoveryResult = { interrupted: [], killed: [] };
  await reapEnded(store, strays, new Set(active.map((j) => j.job_id)), result);
  for (const job of active) {
    const p = job.process;
    const mine = [...strays].filter(([, id]) => id === job.job_id).map(([pid]) => pid);
    if (!p?.alive && mine.length === 0) continue;
    const leaderAlive = p ? isSameProcess(p.pid, p.start_ticks) : false;
    // The recorded group is ours only while its leader is, or while members carry our job id.
    const groupOurs = p !== null && groupAlive(p.pgid) && (leaderAlive || mine.length > 0);
    if (groupOurs) signalGroup(p!.pgid, "SIGKILL");
    const killed = mine.length ? await killJobProcesses(job.job_id, 2000) : null;
    // Gone only when neither the group nor any process carrying the job's id is left.
    const groupGone = (p && groupOurs ? await waitGroupGone(p.pgid, 2000) : true) &&
      (killed?.gone ?? true);
    result.killed.push(...mine);
    const evidence = {
      previous_worker: p?.worker_id ?? null,
      pid: p?.pid ?? null,
      pgid: p?.pgid ?? null,
      leader_alive: leaderAlive,
      stray_pids: mine,
      signal: groupOurs || mine.length ? "SIGKILL" : null,
      group_gone: groupGone,
    };
    if (job.artifact_path) {
      await removeArtifacts(opts.modelsDir, job.artifact_path, {
        // Only files written since the job was submitted can be its own. Not since its start:
        // that is stamped after the spawn, and a quick script may write before it.
        writtenSince: Date.parse(job.created_at),
        log: (m) => opts.log?.(`job ${job.job_id}: ${m}`),
      });
    }
    await store.run(async (uow) => {
      if (job.status === "running" || (job.status === "started" && p)) {
        result.interrupted.push(job.job_id);
        await uow.execute(job.job_id, {
          type: "fail",
          reason: "interrupted",
          error: `the server stopped while the job was running (previous worker ${
            evidence.previous_worker ?? "unknown"
          }); ${
            leaderAlive ? "its process was still alive and was killed" : "its process was gone"
          }`,
          evidence,
        });
      }
      await uow.execute(job.job_id, {
        type: "exit",
        report: {
          exit_code: null,
          signal: evidence.signal,
          artifact: null,
          stderr_tail: "",
          script_failure: null,
          stopped_for: "shutdown",
          stopped_with: evidence.signal as "SIGKILL" | null,
          group_gone: groupGone,
        },
      });
    });
  }
  return result;
}

/**
 * Kills the processes of jobs that already ended but still carry their id, and records the
 * kill on each job as a warning. Ids this database does not know are left alone: they
 * belong to another server's jobs.
 */
async function reapEnded(
  store: EventStore,
  strays: ReadonlyMap<number, string>,
  active: ReadonlySet<string>,
  result: RecoveryResult,
): Promise<void> {
  const ended = new Set([...strays.values()].filter((id) => !active.has(id)));
  for (const id of ended) {
    const job = await store.load(id);
    if (!job) continue;
    const { killed } = await killJobProcesses(id, 2000);
    if (killed.length === 0) continue;
    result.killed.push(...killed);
    await store.run((uow) => uow.execute(id, { type: "strays_killed", pids: killed }));
  }
}
