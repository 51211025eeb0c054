/**
 * Side by side with the seed's FastAPI design (issue 12): both services on loopback, every
 * job running `true`, `wrk -t2 -c32` against one service at a time. Accept, end to end (jobs
 * finished per second, first POST to last finished, MAX_CONCURRENT_JOBS=16), and the two
 * reads at 5,000 jobs. Targets are ratios against the peer, measured in this one run.
 */
import type { BenchContext } from "./lib/context.ts";
import { generateDatabase, jobId } from "./lib/gen_db.ts";
import { haveWrk, wrkGet, wrkGetThenStop, wrkLoad } from "./lib/load.ts";
import type { BenchResult, Check } from "./lib/machine.ts";
import { ensurePeerPackages, startPeer } from "./lib/peer.ts";
import { startServer, waitFor, writeRegistry } from "./lib/server.ts";

const CONNECTIONS = 32;
const ACCEPT_SECONDS = 3;
const E2E_SECONDS = 10;
/** A backlog still running after this long is reported as the rate so far, not waited for. */
const DRAIN_CAP_SECONDS = 40;
const READ_SECONDS = 4;
const READ_JOBS = 5_000;
const LIST_PATH = "/train/jobs?limit=5&status=completed";
const COMMAND = ["true"];

interface Service {
  url: string;
  stop(): Promise<unknown>;
}
type Side = "ours" | "peer";

export async function peer(ctx: BenchContext): Promise<BenchResult> {
  if (!await haveWrk()) throw new Error("the peer benchmark needs wrk: apt-get install wrk");
  await ensurePeerPackages(ctx.log);
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "peer-" });
  const registry = await writeRegistry(dir, {
    xgboost: { command: COMMAND },
    "neural-net": { command: COMMAND },
    "random-forest": { command: COMMAND },
  });
  let n = 0;
  const start = async (
    side: Side,
    dbPath?: string,
    env: Record<string, string> = {},
  ): Promise<Service> => {
    const d = await Deno.makeTempDir({ dir, prefix: `${side}-${++n}-` });
    if (side === "peer") return await startPeer(d, COMMAND);
    return await startServer({
      dir: d,
      dbPath,
      env: { MODEL_REGISTRY: registry, MAX_CONCURRENT_JOBS: "16", ...env },
    });
  };
  const sides: Side[] = ["ours", "peer"];
  const figures: Record<string, Record<Side, Record<string, unknown>>> = {
    accept: { ours: {}, peer: {} },
    end_to_end: { ours: {}, peer: {} },
    status: { ours: {}, peer: {} },
    list: { ours: {}, peer: {} },
  };
  const post = { path: "/train/xgboost", body: '{"retrain":true}', connections: CONNECTIONS, dir };

  for (const side of sides) {
    ctx.log(`${side}: accept, ${ACCEPT_SECONDS} s`);
    const s = await start(side);
    try {
      const r = await wrkLoad({ ...post, url: s.url, seconds: ACCEPT_SECONDS });
      figures.accept[side] = { rps: r.ok / r.seconds, ...r, ids: r.ids.length };
    } finally {
      await s.stop();
    }
  }

  for (const side of sides) {
    ctx.log(`${side}: end to end, ${E2E_SECONDS} s of submissions, then until all finished`);
    const s = await start(side);
    try {
      const t0 = performance.now();
      const r = await wrkLoad({ ...post, url: s.url, seconds: E2E_SECONDS });
      const cap = performance.now() + DRAIN_CAP_SECONDS * 1000;
      let unfinished = await activeJobs(s.url);
      while (unfinished > 0 && performance.now() < cap) {
        await new Promise((res) => setTimeout(res, 50));
        unfinished = await activeJobs(s.url);
      }
      const seconds = (performance.now() - t0) / 1000;
      const finished = r.ids.length - unfinished;
      figures.end_to_end[side] = {
        rps: finished / seconds,
        accepted: r.ids.length,
        finished,
        seconds,
        all_finished: unfinished === 0,
        non2xx: r.non2xx,
        socketErrors: r.socketErrors,
      };
    } finally {
      await s.stop();
    }
  }

  for (const side of sides) {
    let ids: string[];
    let s: Service;
    if (side === "ours") {
      ctx.log(`ours: generating ${READ_JOBS} finished jobs (20 events each)`);
      const dbPath = `${dir}/reads.db`;
      await generateDatabase(dbPath, { jobs: READ_JOBS });
      ids = Array.from({ length: READ_JOBS }, (_, i) => jobId(i));
      s = await start(side, dbPath);
    } else {
      s = await start(side);
      ctx.log(`peer: submitting ${READ_JOBS} jobs and waiting for them to finish`);
      ids = await submitMany(s.url, READ_JOBS);
      await waitFor(
        "the peer's jobs to finish",
        async () => {
          return await activeJobs(s.url) === 0 ? true : undefined;
        },
        120_000,
        100,
      );
    }
    try {
      ctx.log(`${side}: reads at ${READ_JOBS} jobs, ${READ_SECONDS} s each`);
      const read = { url: s.url, connections: CONNECTIONS, seconds: READ_SECONDS, dir };
      figures.status[side] = { ...await wrkGet({ ...read, paths: ids.map(statusPath) }) };
      figures.list[side] = { ...await wrkGet({ ...read, paths: [LIST_PATH] }) };
    } finally {
      await s.stop();
    }
  }
  // The status reads again with no answers kept in memory: what the database read costs.
  ctx.log(`ours: status at ${READ_JOBS} jobs with STATUS_CACHE_MB=0`);
  const statusUncached = await wrkGetThenStop(
    await start("ours", `${dir}/reads.db`, { STATUS_CACHE_MB: "0" }),
    {
      connections: CONNECTIONS,
      seconds: READ_SECONDS,
      dir,
      paths: Array.from({ length: READ_JOBS }, (_, i) => statusPath(jobId(i))),
    },
  );

  const ratio = (k: string) => Number(figures[k].ours.rps) / Number(figures[k].peer.rps);
  const check = (k: string, figure: string, target: number): Check => ({
    figure,
    value: Math.round(ratio(k) * 100) / 100,
    unit: "x peer",
    target: `>= ${target}`,
    pass: ratio(k) >= target && figures[k].ours.non2xx === 0,
  });
  return {
    name: "peer",
    checks: [
      check("accept", "accept POST /train/xgboost", 5),
      check("end_to_end", "end to end, jobs finished/s", 1.5),
      check("status", "GET /train/status/{id} @5k", 2),
      check("list", "GET /train/jobs?...completed @5k", 2),
    ],
    details: {
      tool: `wrk -t2 -c${CONNECTIONS}`,
      job_command: COMMAND,
      max_concurrent_jobs: 16,
      seconds: { accept: ACCEPT_SECONDS, end_to_end: E2E_SECONDS, reads: READ_SECONDS },
      drain_cap_seconds: DRAIN_CAP_SECONDS,
      read_jobs: READ_JOBS,
      reads_note: "ours reads a generated database of finished jobs with logs (20 events " +
        "each); the peer's 5,000 jobs were submitted and ran `true`",
      figures,
      status_uncached: {
        ours: statusUncached,
        ratio: statusUncached.rps / Number(figures.status.peer.rps),
      },
    },
  };
}

function statusPath(id: string): string {
  return `/train/status/${id}`;
}

/** Jobs not finished yet (waiting or running), as the service's own list reports them. */
async function activeJobs(url: string): Promise<number> {
  let n = 0;
  for (const status of ["started", "running"]) {
    const res = await fetch(`${url}/train/jobs?limit=1&status=${status}`);
    if (!res.ok) throw new Error(`GET /train/jobs answered ${res.status}`);
    n += (await res.json()).filtered_count;
  }
  return n;
}

/** Exactly `count` submissions, 16 at a time; returns their job ids. */
async function submitMany(url: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next++ < count) {
      const res = await fetch(`${url}/train/xgboost`, {
        method: "POST",
        body: '{"retrain":true}',
        headers: { "content-type": "application/json" },
      });
      const text = await res.text();
      const id = /"job_id":"([0-9a-f-]+)"/.exec(text)?.[1];
      if (!res.ok || !id) throw new Error(`submission answered ${res.status}: ${text}`);
      ids.push(id);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return ids;
}
