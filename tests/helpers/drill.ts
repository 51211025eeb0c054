/**
 * Shared by the small fault drills in tests/drill_*_test.ts. The drills themselves live in
 * bench/drills/ so that `deno task drill` runs the same code at full size.
 */
export { killLoop } from "../../bench/drills/kill_loop.ts";
export { killRemote } from "../../bench/drills/kill_remote.ts";
export { badInput } from "../../bench/drills/bad_input.ts";
export { collectorDrill } from "../../bench/drills/slow_log.ts";

/** Runs `fn` with a new temporary folder and removes it afterwards, whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Prints a drill's figures so the CI log shows them. */
export function report(name: string, figures: object): void {
  console.log(`[drill] ${name}: ${JSON.stringify(figures)}`);
}
