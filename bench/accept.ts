/**
 * Accept rate: POST /train/{type} with 32 connections for 10 s. A 2xx means the job's
 * events are durable; afterwards every accepted job id must be in the database.
 */
import { DatabaseSync } from "node:sqlite";
import type { BenchContext } from "./lib/context.ts";
import { fetchLoad, haveWrk, type LoadOptions, wrkLoad } from "./lib/load.ts";
import type { BenchResult } from "./lib/machine.ts";
import { startServer, writeRegistry } from "./lib/server.ts";

const CONNECTIONS = 32;
const SECONDS = 10;
const MAX_CONCURRENT_JOBS = "1";

export async function accept(ctx: BenchContext): Promise<BenchResult> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "accept-" });
  const registry = await writeRegistry(dir, { noop: { command: ["/bin/true"] } });
  const server = await startServer({
    dir,
    env: { MODEL_REGISTRY: registry, MAX_CONCURRENT_JOBS },
  });
  const wrk = await haveWrk();
  const load = wrk ? wrkLoad : fetchLoad;
  const opts: LoadOptions = {
    url: server.url,
    path: "/train/noop",
    body: '{"retrain":true}',
    connections: CONNECTIONS,
    seconds: SECONDS,
    dir,
  };
  let result;
  let warmupIds: string[] = [];
  try {
    ctx.log(
      `accept: warm-up 2 s, then ${SECONDS} s with ${CONNECTIONS} connections (${
        wrk ? "wrk" : "Deno fetch; install wrk for a stronger load generator"
      })`,
    );
    warmupIds = (await load({ ...opts, seconds: 2 })).ids;
    result = await load(opts);
  } finally {
    await server.stop();
  }
  const sqlite = new DatabaseSync(server.dbPath, { readOnly: true });
  const stored = new Set(
    sqlite.prepare("SELECT job_id FROM jobs").all().map((r) => String(r.job_id)),
  );
  const submitted = Number(
    sqlite.prepare("SELECT count(*) AS n FROM events WHERE type = 'submitted'").get()!.n,
  );
  sqlite.close();
  const accepted = [...warmupIds, ...result.ids];
  const missing = accepted.filter((id) => !stored.has(id)).length;
  const rate = result.ok / result.seconds;
  return {
    name: "accept",
    checks: [
      {
        figure: "accepted POST /train/noop per s",
        value: Math.round(rate),
        unit: "req/s",
        target: ">= 3000",
        pass: rate >= 3000,
      },
      {
        figure: "error responses",
        value: result.non2xx + result.socketErrors,
        unit: "",
        target: "0",
        pass: result.non2xx + result.socketErrors === 0,
      },
      {
        figure: "accepted jobs missing afterwards",
        value: missing,
        unit: `of ${accepted.length}`,
        target: "0",
        pass: missing === 0 && accepted.length > 0,
      },
    ],
    details: {
      tool: result.tool,
      connections: CONNECTIONS,
      seconds: result.seconds,
      requests: result.requests,
      ok: result.ok,
      non2xx: result.non2xx,
      socket_errors: result.socketErrors,
      latency_ms: result.latencyMs,
      accepted_checked: accepted.length,
      jobs_in_database: stored.size,
      submitted_events: submitted,
      job_command: "/bin/true (custom registry type; exits at once, writes no artifact)",
      MAX_CONCURRENT_JOBS,
    },
  };
}
