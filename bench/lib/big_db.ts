/** The shared 100,000-job database of the reads and rebuild benchmarks, made once per run. */
import type { BenchContext } from "./context.ts";
import { generateDatabase } from "./gen_db.ts";

export const BIG_JOBS = 100_000;

/** Generates the database in the run's scratch folder; returns its path. */
export async function bigDatabase(ctx: BenchContext): Promise<string> {
  const path = `${ctx.tmp}/big.db`;
  const started = performance.now();
  ctx.log(`generating ${BIG_JOBS} jobs / ${BIG_JOBS * 20} events (real decide/evolve/zod)...`);
  const events = await generateDatabase(path, { jobs: BIG_JOBS });
  ctx.log(`generated ${events} events in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return path;
}

/** Copies the big database so a benchmark can change its copy. */
export async function copyOfBigDatabase(ctx: BenchContext, name: string): Promise<string> {
  const path = `${ctx.tmp}/${name}.db`;
  await Deno.copyFile(await ctx.bigDatabase(), path);
  return path;
}
