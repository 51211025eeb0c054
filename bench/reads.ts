/**
 * Reads at scale: a server on 100,000 jobs / 2,000,000 events (two jobs running), then
 * GET /train/status/{id} for random jobs and GET /train/jobs?status=running&limit=5, one
 * request at a time; latency percentiles and the server's RSS. Then GET /metrics, whose
 * per-status gauges read the jobs table at every scrape.
 */
import { copyOfBigDatabase } from "./lib/big_db.ts";
import type { BenchContext } from "./lib/context.ts";
import { jobId } from "./lib/gen_db.ts";
import { haveWrk } from "./lib/load.ts";
import { type BenchResult, percentile } from "./lib/machine.ts";
import { sampleRss } from "./lib/procfs.ts";
import { startServer, waitFor, writeRegistry } from "./lib/server.ts";

const SECONDS = 5;

export async function reads(ctx: BenchContext): Promise<BenchResult> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "reads-" });
  const dbPath = await copyOfBigDatabase(ctx, "reads");
  const registry = await writeRegistry(dir, { sleeper: { command: ["/bin/sleep", "600"] } });
  const server = await startServer({ dir, dbPath, env: { MODEL_REGISTRY: registry } });
  const rss = sampleRss(server.pid);
  const wrk = await haveWrk();
  let status, list, scrape;
  try {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${server.url}/train/sleeper`, { method: "POST" });
      if (!res.ok) throw new Error(`submit answered ${res.status}`);
      await res.body?.cancel();
    }
    await waitFor("two running jobs", async () => {
      const r = await (await fetch(`${server.url}/train/jobs?status=running&limit=5`)).json();
      return r.jobs.length === 2 ? r : undefined;
    });
    const measure = wrk ? wrkLatency : fetchLatency;
    ctx.log(`reads: ${SECONDS} s per endpoint, one connection (${wrk ? "wrk" : "Deno fetch"})`);
    status = await measure(dir, server.url, "status", SECONDS);
    list = await measure(dir, server.url, "list", SECONDS);
    scrape = await scrapeLatency(server.url, 50);
  } finally {
    await server.stop();
  }
  const mem = rss.stop();
  return {
    name: "reads",
    checks: [
      {
        figure: "GET /train/status/{id} p99",
        value: status.p99,
        unit: "ms",
        target: "<= 5",
        pass: status.p99 <= 5,
      },
      {
        figure: "GET /train/jobs?status=running p99",
        value: list.p99,
        unit: "ms",
        target: "<= 10",
        pass: list.p99 <= 10,
      },
      {
        figure: "GET /metrics p99",
        value: scrape.p99,
        unit: "ms",
        target: "<= 100",
        pass: scrape.p99 <= 100,
      },
      {
        figure: "server RSS (max sampled)",
        value: Math.round(mem.maxRss),
        unit: "MB",
        target: "<= 150",
        pass: mem.maxRss <= 150,
      },
    ],
    details: {
      tool: wrk ? "wrk -t1 -c1" : "Deno fetch, sequential",
      jobs: 100_000,
      events: 2_000_000,
      running_jobs: 2,
      status: status,
      list: list,
      metrics_scrape: scrape,
      rss_max_sampled_mb: mem.maxRss,
      vm_hwm_mb: mem.peak,
    },
  };
}

interface Latency {
  requests: number;
  p50: number;
  p99: number;
  max: number;
  non2xx: number;
}

const pathOf = (kind: "status" | "list") =>
  kind === "status"
    ? `/train/status/${jobId(Math.floor(Math.random() * 100_000))}`
    : "/train/jobs?status=running&limit=5";

const WRK_LUA = (kind: string) => `
math.randomseed(42)
bad = 0
function request()
  ${
  kind === "status"
    ? `return wrk.format("GET", string.format("/train/status/00000000-0000-4000-8000-%012x",
    math.random(0, 99999)))`
    : 'return wrk.format("GET", "/train/jobs?status=running&limit=5")'
}
end
function response(status) if status ~= 200 then bad = bad + 1 end end
local threads = {}
function setup(t) table.insert(threads, t) end
function done(summary, latency)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local f = io.open(os.getenv("BENCH_OUT"), "w")
  f:write(string.format('{"requests":%d,"p50":%f,"p99":%f,"max":%f,"non2xx":%d}',
    summary.requests, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, b))
  f:close()
end
`;

async function wrkLatency(
  dir: string,
  url: string,
  kind: "status" | "list",
  seconds: number,
): Promise<Latency> {
  const script = `${dir}/${kind}.lua`;
  const out = `${dir}/${kind}.json`;
  await Deno.writeTextFile(script, WRK_LUA(kind));
  const run = async (s: number) => {
    const r = await new Deno.Command("wrk", {
      args: ["-t1", "-c1", `-d${s}s`, "-s", script, url],
      env: { BENCH_OUT: out },
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(`wrk: ${new TextDecoder().decode(r.stderr)}`);
    return JSON.parse(await Deno.readTextFile(out)) as Latency;
  };
  await run(1);
  return await run(seconds);
}

async function fetchLatency(
  _dir: string,
  url: string,
  kind: "status" | "list",
  seconds: number,
): Promise<Latency> {
  const times: number[] = [];
  let non2xx = 0;
  const end = performance.now() + (seconds + 1) * 1000;
  let i = 0;
  while (performance.now() < end) {
    const t0 = performance.now();
    const res = await fetch(url + pathOf(kind));
    await res.arrayBuffer();
    if (res.status !== 200) non2xx++;
    if (i++ > 200) times.push(performance.now() - t0);
  }
  return {
    requests: times.length,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    max: Math.max(...times),
    non2xx,
  };
}

/** `n` scrapes of /metrics one after another (after 5 to warm up). */
async function scrapeLatency(url: string, n: number): Promise<Latency> {
  const times: number[] = [];
  let non2xx = 0;
  for (let i = 0; i < n + 5; i++) {
    const t0 = performance.now();
    const res = await fetch(`${url}/metrics`);
    await res.arrayBuffer();
    if (res.status !== 200) non2xx++;
    if (i >= 5) times.push(performance.now() - t0);
  }
  return {
    requests: times.length,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    max: Math.max(...times),
    non2xx,
  };
}
