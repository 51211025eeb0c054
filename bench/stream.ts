/**
 * Stream latency: 100 SSE streams follow one job that reports progress every 50 ms; for
 * each progress event, the time from its commit to its arrival at each client. The commit
 * time is the event's `at`, stamped just before the write: so the figure also holds the
 * commit itself (an fsync), and errs on the slow side.
 */
import { readSse } from "../cli/sse.ts";
import type { BenchContext } from "./lib/context.ts";
import { type BenchResult, percentile } from "./lib/machine.ts";
import { sampleRss } from "./lib/procfs.ts";
import { startServer, waitFor, writeRegistry } from "./lib/server.ts";

const STREAMS = Number(Deno.env.get("BENCH_STREAMS") ?? 100);
const STEPS = 200;
const TARGET_P99_MS = 50;

/** Waits for argv[1] to exist, then reports STEPS progress events 50 ms apart. */
const TICKER = `import json, os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
for i in range(1, ${STEPS} + 1):
    print("@@trainer " + json.dumps({"event": "progress", "step": i, "total": ${STEPS}}), flush=True)
    time.sleep(0.05)
open(os.environ["TRAIN_ARTIFACT_PATH"], "w").write("model")
`;

export async function stream(ctx: BenchContext): Promise<BenchResult> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "stream-" });
  const release = `${dir}/go`;
  await Deno.writeTextFile(`${dir}/ticker.py`, TICKER);
  const registry = await writeRegistry(dir, {
    ticker: { command: ["/usr/bin/python3", `${dir}/ticker.py`, release] },
  });
  const server = await startServer({ dir, env: { MODEL_REGISTRY: registry } });
  const rss = sampleRss(server.pid);
  const latencies: number[] = [];
  const byStep: number[][] = [];
  let received = 0;
  let cpu = [0, 0];
  try {
    const res = await fetch(`${server.url}/train/ticker`, { method: "POST" });
    const id = (await res.json()).data.job_id;
    await waitFor("the ticker to run", async () => {
      const r = await (await fetch(`${server.url}/train/status/${id}`)).json();
      return r.data.status === "running" ? r : undefined;
    });
    let open = 0;
    const followers = Array.from({ length: STREAMS }, async () => {
      const r = await fetch(`${server.url}/train/job/${id}/stream?types=started,progress`);
      for await (const item of readSse(r.body!)) {
        if (item.kind !== "message") continue;
        if (item.message.event === "started") open++;
        if (item.message.event !== "progress") continue;
        const e = JSON.parse(item.message.data);
        const ms = Date.now() - Date.parse(e.at);
        latencies.push(ms);
        (byStep[e.data.step - 1] ??= []).push(ms);
        received++;
      }
    });
    await waitFor(`${STREAMS} streams`, () => open === STREAMS ? true : undefined);
    ctx.log(`stream: ${STREAMS} streams open; ${STEPS} progress events 50 ms apart`);
    const cpu0 = [cpuSeconds(server.pid), cpuSeconds(Deno.pid)];
    await Deno.writeTextFile(release, "");
    await Promise.all(followers);
    cpu = [cpuSeconds(server.pid) - cpu0[0], cpuSeconds(Deno.pid) - cpu0[1]];
  } finally {
    await server.stop();
  }
  const mem = rss.stop();
  const p50 = percentile(latencies, 50);
  const p99 = percentile(latencies, 99);
  return {
    name: "stream",
    checks: [
      {
        figure: `commit -> client p99, ${STREAMS} streams`,
        value: p99,
        unit: "ms",
        target: `<= ${TARGET_P99_MS}`,
        pass: p99 <= TARGET_P99_MS && received === STREAMS * STEPS,
      },
      {
        figure: `commit -> client p50, ${STREAMS} streams`,
        value: p50,
        unit: "ms",
        target: "(info)",
        pass: true,
      },
    ],
    details: {
      streams: STREAMS,
      events_per_stream: STEPS,
      received,
      expected: STREAMS * STEPS,
      p50_ms: p50,
      p90_ms: percentile(latencies, 90),
      p99_ms: p99,
      max_ms: Math.max(...latencies),
      // Per event, in commit order: does latency grow (a backlog) or stay flat?
      by_step_p50_ms: [0, 50, 100, 150, 199].map((i) => percentile(byStep[i] ?? [], 50)),
      server_rss_max_mb: Math.round(mem.maxRss),
      cpu_seconds: { server: cpu[0], clients: cpu[1] },
    },
  };
}

/** User + system CPU time of a process so far, seconds. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
