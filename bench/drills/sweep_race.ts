/**
 * `deno task drill sweep`: strays swept while they exec. Each round starts `setsid sleep 60`
 * carrying a fresh job id and sweeps that id at once, a little later each round (0 to 1.6 ms),
 * so that some passes read the process in the middle of its exec of `sleep`, when its
 * environment reads empty. Each sweep starts from the leader's start ticks, as a job's does. Every stray must be killed: one still alive after its sweep answered
 * is a miss (before stop 20: 9 in 3,000).
 */
import { findJobProcesses, killJobProcesses, readStartTicks } from "../../jobs/process.ts";
import { DrillFailure } from "./failure.ts";

export async function sweepRace(
  opts: { rounds: number; log: (m: string) => void },
): Promise<Record<string, unknown>> {
  let killed = 0;
  const missed: string[] = [];
  const started = performance.now();
  for (let i = 0; i < opts.rounds; i++) {
    const id = `drill-sweep-${i}-${crypto.randomUUID()}`;
    const child = new Deno.Command("setsid", {
      args: ["sleep", "60"],
      env: { TRAIN_JOB_ID: id },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const until = performance.now() + (i % 5) * 0.4;
    while (performance.now() < until) {
      // a busy wait: a timer's resolution is a millisecond
    }
    // From the leader's start, as the supervisor sweeps at a job's end.
    const result = await killJobProcesses(id, 1000, { since: readStartTicks(child.pid) });
    killed += result.killed.length;
    const left = findJobProcesses(new Set([id]));
    if (left.size) missed.push(id);
    for (const pid of left.keys()) Deno.kill(pid, "SIGKILL");
    try {
      child.kill("SIGKILL");
    } catch {
      // setsid exec'd sleep in place: killed by the sweep
    }
    await child.status;
    if ((i + 1) % 1000 === 0) opts.log(`${i + 1} rounds, ${missed.length} missed`);
  }
  const figures = {
    rounds: opts.rounds,
    killed,
    missed: missed.length,
    ms_per_round: Math.round((performance.now() - started) / opts.rounds * 100) / 100,
  };
  if (missed.length) {
    throw new DrillFailure(`${missed.length} strays outlived their sweep`, figures);
  }
  return figures;
}
