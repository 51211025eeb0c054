/**
 * Load generation: wrk when installed (apt-get install wrk), else a Deno loop of fetches.
 * Both report every 2xx job id so the caller can check each accepted job afterwards.
 */
import { percentile } from "./machine.ts";

export interface LoadResult {
  tool: "wrk" | "deno-fetch";
  seconds: number;
  requests: number;
  ok: number;
  non2xx: number;
  socketErrors: number;
  latencyMs: { p50: number; p99: number; max: number };
  ids: string[];
}

export interface LoadOptions {
  url: string;
  path: string;
  body: string;
  connections: number;
  seconds: number;
  /** Scratch folder for wrk's script and output. */
  dir: string;
  threads?: number;
}

/** True when wrk is installed (BENCH_NO_WRK=1 forces the Deno fallback). */
export async function haveWrk(): Promise<boolean> {
  if (Deno.env.get("BENCH_NO_WRK") === "1") return false;
  try {
    await new Deno.Command("wrk", { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

/** Lua shared by both wrk scripts: the run's summary as JSON, into BENCH_SUMMARY. */
const WRK_SUMMARY_LUA = `
function write_summary(summary, latency, bads)
  local e = summary.errors
  local s = io.open(os.getenv("BENCH_SUMMARY"), "w")
  s:write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}',
    summary.requests, summary.duration, bads, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
  s:close()
end
`;

const WRK_LUA = WRK_SUMMARY_LUA + `
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
ids = {}
n = 0
bad = 0
function response(status, headers, body)
  if status >= 200 and status < 300 then
    local id = body:match('"job_id":"([0-9a-f%-]+)"')
    if id then n = n + 1; ids[n] = id end
  else
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local f = io.open(os.getenv("BENCH_IDS"), "w")
  local bads = 0
  for _, t in ipairs(threads) do
    local tids = t:get("ids")
    for i = 1, t:get("n") do f:write(tids[i], "\\n") end
    bads = bads + t:get("bad")
  end
  f:close()
  write_summary(summary, latency, bads)
end
`;

/** Runs wrk against `url + path` and collects the job ids of every 2xx. */
export async function wrkLoad(o: LoadOptions): Promise<LoadResult> {
  const script = `${o.dir}/post.lua`;
  await Deno.writeTextFile(script, WRK_LUA);
  const idsFile = `${o.dir}/wrk-ids.txt`;
  const summaryFile = `${o.dir}/wrk-summary.json`;
  const out = await new Deno.Command("wrk", {
    args: [
      `-t${o.threads ?? 2}`,
      `-c${o.connections}`,
      `-d${o.seconds}s`,
      "--timeout",
      "10s",
      "-s",
      script,
      o.url + o.path,
    ],
    env: { BENCH_BODY: o.body, BENCH_IDS: idsFile, BENCH_SUMMARY: summaryFile },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`wrk failed: ${new TextDecoder().decode(out.stderr)}`);
  const s = JSON.parse(await Deno.readTextFile(summaryFile));
  const ids = (await Deno.readTextFile(idsFile)).split("\n").filter(Boolean);
  return {
    tool: "wrk",
    seconds: s.duration_us / 1e6,
    requests: s.requests,
    ok: ids.length,
    non2xx: s.non2xx,
    socketErrors: s.socket_errors,
    latencyMs: { p50: s.p50_us / 1000, p99: s.p99_us / 1000, max: s.max_us / 1000 },
    ids,
  };
}

/** The fallback: `connections` concurrent fetch loops for `seconds`. */
export async function fetchLoad(o: LoadOptions): Promise<LoadResult> {
  const ids: string[] = [];
  const latencies: number[] = [];
  let non2xx = 0;
  let socketErrors = 0;
  const start = performance.now();
  const end = start + o.seconds * 1000;
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: o.connections });
  const loop = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        const res = await fetch(o.url + o.path, {
          method: "POST",
          body: o.body,
          headers: { "content-type": "application/json" },
          client,
        });
        const text = await res.text();
        latencies.push(performance.now() - t0);
        const id = /"job_id":"([0-9a-f-]+)"/.exec(text)?.[1];
        if (res.ok && id) ids.push(id);
        else non2xx++;
      } catch {
        socketErrors++;
      }
    }
  };
  await Promise.all(Array.from({ length: o.connections }, loop));
  const seconds = (performance.now() - start) / 1000;
  client.close();
  return {
    tool: "deno-fetch",
    seconds,
    requests: latencies.length,
    ok: ids.length,
    non2xx,
    socketErrors,
    latencyMs: {
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: Math.max(...latencies),
    },
    ids,
  };
}

export interface ReadResult {
  requests: number;
  seconds: number;
  rps: number;
  non2xx: number;
  socketErrors: number;
  latencyMs: { p50: number; p99: number; max: number };
}

// Each wrk thread loads the paths once, then every request picks one at random; non-2xx
// answers are counted, so a fast 404 cannot pass for a fast read.
const WRK_GET_LUA = WRK_SUMMARY_LUA + `
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) math.randomseed(os.time() + #threads) end
bad = 0
function request() return wrk.format("GET", paths[math.random(#paths)]) end
function response(status, headers, body) if status < 200 or status >= 300 then bad = bad + 1 end end
function done(summary, latency, requests)
  local bads = 0
  for _, t in ipairs(threads) do bads = bads + t:get("bad") end
  write_summary(summary, latency, bads)
end
`;

/** `wrk -t<threads> -c<connections>` GETs of `paths` (each request picks one at random). */
export async function wrkGet(o: {
  url: string;
  paths: string[];
  connections: number;
  seconds: number;
  dir: string;
  threads?: number;
  /** Seconds of the same load first, not measured (JIT, caches, the page cache). */
  warmupSeconds?: number;
}): Promise<ReadResult> {
  if (o.warmupSeconds) await wrkGet({ ...o, seconds: o.warmupSeconds, warmupSeconds: 0 });
  const script = `${o.dir}/get.lua`;
  const pathsFile = `${o.dir}/get-paths.txt`;
  const summaryFile = `${o.dir}/get-summary.json`;
  await Deno.writeTextFile(script, WRK_GET_LUA);
  await Deno.writeTextFile(pathsFile, o.paths.join("\n") + "\n");
  const out = await new Deno.Command("wrk", {
    args: [
      `-t${o.threads ?? 2}`,
      `-c${o.connections}`,
      `-d${o.seconds}s`,
      "--timeout",
      "10s",
      "-s",
      script,
      o.url,
    ],
    env: { BENCH_PATHS: pathsFile, BENCH_SUMMARY: summaryFile },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`wrk failed: ${new TextDecoder().decode(out.stderr)}`);
  const s = JSON.parse(await Deno.readTextFile(summaryFile));
  const seconds = s.duration_us / 1e6;
  return {
    requests: s.requests,
    seconds,
    rps: (s.requests - s.non2xx) / seconds,
    non2xx: s.non2xx,
    socketErrors: s.socket_errors,
    latencyMs: { p50: s.p50_us / 1000, p99: s.p99_us / 1000, max: s.max_us / 1000 },
  };
}

/** `wrkGet` against `server`, which is stopped afterwards whatever happens. */
export async function wrkGetThenStop(
  server: { url: string; stop(): Promise<unknown> },
  o: Omit<Parameters<typeof wrkGet>[0], "url">,
): Promise<ReadResult> {
  try {
    return await wrkGet({ ...o, url: server.url });
  } finally {
    await server.stop();
  }
}
