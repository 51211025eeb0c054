/**
 * Cold start: from spawning `deno run --allow-all --frozen main.ts` (dependencies cached)
 * to the first 200 from GET /health, on a new database each time.
 */
import type { BenchContext } from "./lib/context.ts";
import { type BenchResult, percentile } from "./lib/machine.ts";
import { SERVED_REPO } from "./lib/server.ts";

const RUNS = 10;

export async function coldstart(ctx: BenchContext): Promise<BenchResult> {
  const times: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "cold-" });
    const ms = await once(dir);
    if (i > 0) times.push(ms); // the first run warms the caches and is not counted
  }
  const p50 = percentile(times, 50);
  const max = Math.max(...times);
  ctx.log(`coldstart: ${times.map((t) => t.toFixed(0)).join(", ")} ms`);
  return {
    name: "coldstart",
    checks: [
      {
        figure: "start -> first /health 200, median",
        value: p50,
        unit: "ms",
        target: "<= 500",
        pass: p50 <= 500,
      },
      {
        figure: "start -> first /health 200, worst",
        value: max,
        unit: "ms",
        target: "<= 500",
        pass: max <= 500,
      },
    ],
    details: {
      runs: RUNS,
      warmup_runs_discarded: 1,
      times_ms: times,
      database: "new file each run (migrations applied at start)",
      poll_interval_ms: 2,
      between_runs: "each server is stopped only after its runtime probes finished",
    },
  };
}

async function once(dir: string): Promise<number> {
  const port = freePort();
  const started = performance.now();
  const child = new Deno.Command("deno", {
    args: ["run", "--allow-all", "--frozen", "main.ts"],
    cwd: SERVED_REPO,
    env: {
      PORT: String(port),
      HOST: "127.0.0.1",
      API_TOKEN: "",
      DATABASE_URL: `file:${dir}/trainer.db`,
      MODELS_DIR: `${dir}/models`,
    },
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const deadline = started + 30_000;
    while (performance.now() < deadline) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/health`);
        await res.body?.cancel();
        if (res.status === 200) {
          const ms = performance.now() - started;
          await settled(port);
          return ms;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new Error("the server did not answer /health with 200 within 30 s");
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}

/**
 * Waits until the server's runtime probes (a Python that imports the ML packages) are done,
 * so that they do not run on into the next measurement.
 */
async function settled(port: number): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (performance.now() < deadline) {
    const health = await (await fetch(`http://127.0.0.1:${port}/health`)).json();
    const types = Object.values(health.model_types ?? {}) as { runnable: boolean | null }[];
    if (types.every((t) => t.runnable !== null)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
