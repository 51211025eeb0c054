/**
 * Kill loop: a workload of submissions, cancels and running jobs against the real server,
 * SIGKILL at a random moment, then check the database and restart on it. Repeats `kills`
 * times; throws on the first broken invariant, naming it.
 */
import { jobProcesses } from "../lib/procfs.ts";
import { startServer, writeRegistry } from "../lib/server.ts";
import { checkLiveServer, checkStoppedDatabase, newWitness, type Witness } from "./invariants.ts";

export interface KillLoopOptions {
  kills: number;
  dir: string;
  seed?: number;
  log?: (message: string) => void;
}

export interface KillLoopFigures {
  kills_survived: number;
  seed: number;
  jobs_accepted: number;
  cancels_accepted: number;
  events_seen_by_clients: number;
  requests: number;
  idempotent_replays_checked: number;
  max_running_after_restart: number;
  training_processes_alive_at_kills: number;
  jobs_in_database: number;
}

/** A small seeded generator, so a failing run can be repeated with its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SCRIPTS = {
  // Built-in names are overridden so that "all" runs these three.
  "neural-net":
    '#!/bin/sh\necho "short $TRAIN_JOB_ID"\nsleep 0.3\necho model > "$TRAIN_ARTIFACT_PATH"\n',
  "xgboost":
    '#!/bin/sh\necho "long $TRAIN_JOB_ID"\nsleep 30\necho model > "$TRAIN_ARTIFACT_PATH"\n',
  "random-forest": '#!/bin/sh\necho "failing" >&2\nsleep 0.1\nexit 3\n',
};

export async function killLoop(opts: KillLoopOptions): Promise<KillLoopFigures> {
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = rng(seed);
  const log = opts.log ?? (() => {});
  const types: Record<string, { command: string[] }> = {};
  for (const [name, body] of Object.entries(SCRIPTS)) {
    const path = `${opts.dir}/${name}.sh`;
    await Deno.writeTextFile(path, body);
    await Deno.chmod(path, 0o755);
    types[name] = { command: [path] };
  }
  const registry = await writeRegistry(opts.dir, types);
  const dbPath = `${opts.dir}/trainer.db`;
  const env = { MODEL_REGISTRY: registry, MAX_CONCURRENT_JOBS: "3", CANCEL_GRACE_SECONDS: "1" };
  const w = newWitness();
  const keys: Keys = new Map();
  const stats = { requests: 0, replays: 0, maxRunning: 0, atKill: 0 };
  let jobIds = new Set<string>();
  let server = await startServer({ dir: opts.dir, dbPath, env });
  log(`kill loop: seed ${seed}, ${opts.kills} kills`);
  for (let k = 1; k <= opts.kills; k++) {
    const workload = runWorkload(server.url, w, keys, random, stats);
    await new Promise((r) => setTimeout(r, 150 + random() * 1350));
    stats.atKill += jobProcesses(w.accepted).size;
    await server.kill();
    await workload.stop();
    jobIds = await checkStoppedDatabase(dbPath, w);
    server = await startServer({ dir: opts.dir, dbPath, env });
    await new Promise((r) => setTimeout(r, 300)); // let the supervisor start waiting jobs
    const live = await checkLiveServer(dbPath, server.pid, jobIds).catch(async (e) => {
      // What the server said is the first thing to read when a restart goes wrong.
      const file = `${opts.dir}/../kill-loop-server-${k}.log`;
      await Deno.writeTextFile(file, server.output.join(""));
      throw new Error(`${(e as Error).message}\n  the server's output: ${file}`);
    });
    stats.maxRunning = Math.max(stats.maxRunning, live.running);
    log(
      `kill ${k}: ${w.accepted.size} jobs accepted, ${w.seen.size} events seen, ` +
        `${live.running} running after restart`,
    );
  }
  // A graceful stop at the end: nothing may be left running, no process may remain.
  await server.stop();
  jobIds = await checkStoppedDatabase(dbPath, w);
  await checkNothingLeft(dbPath, jobIds);
  return {
    kills_survived: opts.kills,
    seed,
    jobs_accepted: w.accepted.size,
    cancels_accepted: w.cancelled.size,
    events_seen_by_clients: w.seen.size,
    requests: stats.requests,
    idempotent_replays_checked: stats.replays,
    max_running_after_restart: stats.maxRunning,
    training_processes_alive_at_kills: stats.atKill,
    jobs_in_database: jobIds.size,
  };
}

async function checkNothingLeft(dbPath: string, jobIds: Set<string>): Promise<void> {
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(dbPath, { readOnly: true });
  // Parents ("all") have no process; their status follows their children.
  const running = db.prepare(
    "SELECT count(*) AS n FROM jobs WHERE status = 'running' AND children IS NULL",
  ).get()!.n;
  db.close();
  if (Number(running) !== 0) {
    throw new Error(`${running} job(s) still running after a graceful stop`);
  }
  const left = jobProcesses(jobIds);
  if (left.size) throw new Error(`processes left after a graceful stop: ${[...left.keys()]}`);
}

/** Idempotency keys sent, with the job and model type of their first 2xx. */
type Keys = Map<string, { jobId: string; type: string }>;

interface Stats {
  atKill: number;
  requests: number;
  replays: number;
  maxRunning: number;
}

/** Client loops (submit, cancel, read events) until stopped (or the server dies under them). */
function runWorkload(
  url: string,
  w: Witness,
  keys: Keys,
  random: () => number,
  stats: Stats,
): { stop(): Promise<void> } {
  let running = true;
  const problems: string[] = [];
  const call = async (method: string, path: string, body?: unknown, headers = {}) => {
    stats.requests++;
    const res = await fetch(url + path, {
      method,
      headers: { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    return { status: res.status, headers: res.headers, json: await res.json() };
  };
  const pick = () => {
    const ids = [...w.accepted];
    return ids[Math.floor(ids.length * Math.sqrt(random()))];
  };
  const submitter = async () => {
    while (running) {
      const r = random();
      const type = r < 0.4
        ? "neural-net"
        : r < 0.6
        ? "xgboost"
        : r < 0.75
        ? "random-forest"
        : "all";
      const body = { model_type: type, retrain: true };
      const reuse = keys.size > 0 && random() < 0.1;
      const key = reuse
        ? [...keys.keys()][Math.floor(random() * keys.size)]
        : random() < 0.15
        ? crypto.randomUUID()
        : null;
      const keyType = key ? keys.get(key)?.type : undefined;
      const res = await call(
        "POST",
        "/train",
        keyType ? { ...body, model_type: keyType } : body,
        key ? { "idempotency-key": key } : {},
      );
      if (res.status !== 200) {
        problems.push(`POST /train answered ${res.status}: ${JSON.stringify(res.json)}`);
        continue;
      }
      w.accepted.add(res.json.job_id);
      for (const c of res.json.children ?? []) w.accepted.add(c.job_id);
      if (key && keys.has(key)) {
        stats.replays++;
        if (keys.get(key)!.jobId !== res.json.job_id) {
          problems.push(
            `Idempotency-Key ${key} returned ${res.json.job_id}, first ${keys.get(key)!.jobId}`,
          );
        }
      } else if (key) keys.set(key, { jobId: res.json.job_id, type });
      await new Promise((r) => setTimeout(r, random() * 40));
    }
  };
  const canceller = async () => {
    while (running) {
      const id = pick();
      if (!id) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const path = random() < 0.5 ? `/train/job/${id}` : `/train/job/cancel/${id}`;
      const res = await call("DELETE", path);
      if (res.status === 200) w.cancelled.add(id);
      else if (res.status !== 409) problems.push(`DELETE ${path} answered ${res.status}`);
      await new Promise((r) => setTimeout(r, random() * 60));
    }
  };
  const reader = async () => {
    while (running) {
      const id = pick();
      if (!id) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const res = await call("GET", `/train/job/${id}/events?limit=1000`);
      if (res.status !== 200) {
        problems.push(`GET events of accepted job ${id} answered ${res.status}`);
        continue;
      }
      for (const e of res.json.events) {
        w.seen.set(e.seq, { job_id: id, version: e.version, type: e.type, data: e.data });
      }
    }
  };
  // A loop ends when the server is killed under it (connection refused or reset).
  const loops = [submitter(), canceller(), reader()].map((p) => p.catch(() => {}));
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      if (problems.length) throw new Error(`workload:\n  ${problems.slice(0, 10).join("\n  ")}`);
    },
  };
}
