/**
 * `deno task drill [kill|kill-remote|input|slowlog|hostile|sweep]...`: the full fault drills of issues
 * 4 and 7 against real server processes (and, for kill-remote, remote workers). Prints every
 * figure and writes bench/results/drill-<name>.json.
 * The small versions run in CI as tests/drill_*_test.ts and tests/e2e_hostile_output_test.ts.
 */
import { badInput } from "./drills/bad_input.ts";
import { DrillFailure } from "./drills/failure.ts";
import { hostileDrill } from "./drills/hostile.ts";
import { killLoop } from "./drills/kill_loop.ts";
import { killRemote } from "./drills/kill_remote.ts";
import { collectorDrill, serverDrill } from "./drills/slow_log.ts";
import { sweepRace } from "./drills/sweep_race.ts";
import { machine } from "./lib/machine.ts";
import { REPO } from "./lib/server.ts";

type Drill = (dir: string, log: (m: string) => void) => Promise<Record<string, unknown>>;

const DRILLS: Record<string, Drill> = {
  kill: async (dir, log) => ({ ...await killLoop({ kills: 50, dir, log }) }),
  "kill-remote": async (dir, log) => ({ ...await killRemote({ kills: 30, dir, log }) }),
  input: async (dir, log) => ({ ...await badInput({ requests: 10_000, dir, log }) }),
  sweep: (_dir, log) => sweepRace({ rounds: 3000, log }),
  hostile: (dir, log) => hostileDrill({ dir, floodLines: 300_000, hugeBytes: 10_000_000, log }),
  slowlog: async (dir, log) => {
    const stalled = await collectorDrill(1_000_000, "stalled");
    log(`collector, sink stalled until the child exits: ${JSON.stringify(stalled)}`);
    const flaky = await collectorDrill(1_000_000, "flaky");
    log(`collector, slow sink failing 25% of appends: ${JSON.stringify(flaky)}`);
    const server = await serverDrill(dir, 1_000_000).catch((e) => {
      const figures = e instanceof DrillFailure ? e.figures : {};
      throw new DrillFailure(e.message, {
        collector_stalled: stalled,
        collector_flaky: flaky,
        server: figures,
      });
    });
    log(`server, database write-locked 300 ms of every 400 ms: ${JSON.stringify(server)}`);
    if (!server.child_never_blocked) {
      throw new DrillFailure(
        `the child was blocked ${server.child_longest_blocked_write_ms} ms on one write while ` +
          `the database was locked (${server.child_own_ms} ms in all vs ${server.child_to_file_ms} ms ` +
          `writing to a file); every line was stored, in order`,
        { collector_stalled: stalled, collector_flaky: flaky, server },
      );
    }
    return { collector_stalled: stalled, collector_flaky: flaky, server };
  },
};

const names = Deno.args.length ? Deno.args : Object.keys(DRILLS);
for (const n of names) {
  if (!DRILLS[n]) {
    console.error(`unknown drill ${n}; known: ${Object.keys(DRILLS).join(", ")}`);
    Deno.exit(2);
  }
}
const m = machine();
console.log(`machine: ${m.nproc} CPUs (${m.cpu_model}), ${m.memory_mb} MB, deno ${m.deno}`);
const summary: string[] = [];
for (const name of names) {
  console.log(`\n== drill ${name}`);
  const dir = await Deno.makeTempDir({ prefix: `trainer-drill-${name}-` });
  const started = performance.now();
  let result: Record<string, unknown>;
  try {
    const figures = await DRILLS[name](dir, (msg) => console.log(`  ${msg}`));
    result = { name, pass: true, figures };
  } catch (e) {
    result = { name, pass: false, error: e instanceof Error ? e.message : String(e) };
    if (e instanceof DrillFailure) result.figures = e.figures;
    console.error(`  FAILED: ${result.error}`);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  result.seconds = Math.round((performance.now() - started) / 100) / 10;
  result.machine = machine();
  result.command = `deno task drill ${name}`;
  await Deno.mkdir(`${REPO}bench/results`, { recursive: true });
  await Deno.writeTextFile(
    `${REPO}bench/results/drill-${name}.json`,
    JSON.stringify(result, null, 2) + "\n",
  );
  console.log(`  ${result.pass ? "pass" : "FAIL"} in ${result.seconds} s`);
  console.log(`  ${JSON.stringify(result.figures ?? {})}`);
  summary.push(`${name.padEnd(11)} | ${result.pass ? "pass" : "FAIL"}`);
}
console.log(`\n${summary.join("\n")}`);
if (summary.some((s) => s.endsWith("FAIL"))) Deno.exit(1);
