/**
 * JOB_NICE: jobs run at the niceness given to the supervisor, and what they start inherits
 * it; 0 leaves them at the server's own. Real Supervisor, store, port and child processes.
 */
import assert from "node:assert/strict";
import { getPriority } from "node:os";
import { openTestStore, pollUntil, testJobDeps } from "./helpers/app.ts";
import { http, Server, waitTerminal, within, Workspace } from "./helpers/server.ts";
import { startSupervisor, submitJobs } from "./helpers/supervised.ts";
import { AUTOGROUPS, setNice } from "../jobs/process.ts";

/**
 * The job writes its own niceness and its child's (field 19 of /proc/<pid>/stat), after a
 * moment: the niceness is set just after the spawn, and a process the job starts before that
 * keeps the server's (a CI run under load saw "0 0" when the script read it at once). Then
 * its autogroup's niceness ("-" without autogroups).
 */
const SCRIPT = `sleep 0.5; ` +
  `own=$(cut -d' ' -f19 /proc/$$/stat); child=$(sh -c 'cut -d" " -f19 /proc/$$/stat'); ` +
  `group=$(sed 's/.* nice //' /proc/$$/autogroup 2>/dev/null || echo -); ` +
  `printf '%s %s %s' "$own" "$child" "$group" > "$TRAIN_ARTIFACT_PATH"`;

/**
 * With autogroups, a job's own session is weighed as a whole against the server's: its
 * autogroup gets JOB_NICE too. Checked as root only: the kernel rate-limits others' writes.
 */
const GROUP_NICE = AUTOGROUPS && Deno.uid() === 0;

async function niceness(nice: number | undefined): Promise<string> {
  await using base = await openTestStore();
  const deps = await testJobDeps(base.store, base.dir, {
    nice: { command: ["/bin/sh", "-c", SCRIPT] },
  });
  const [jobId] = await submitJobs(deps, "nice", 1);
  const supervisor = startSupervisor(deps, { maxConcurrent: 1, nice });
  try {
    const done = await pollUntil(async () => {
      const s = await base.store.load(jobId);
      return s && ["completed", "failed"].includes(s.status) ? s : null;
    }, "the job to finish");
    assert.equal(done.status, "completed", done.error ?? "");
    return await Deno.readTextFile(done.model_path!);
  } finally {
    await within(30_000, supervisor.shutdown(), "the supervisor to shut down");
  }
}

Deno.test("jobs run at the configured niceness, and so do their children", async () => {
  const [own, child, group] = (await niceness(7)).split(" ");
  assert.deepEqual([own, child], ["7", "7"]);
  if (GROUP_NICE) assert.equal(group, "7", "its autogroup's niceness");
});

Deno.test("niceness 0 leaves jobs at the server's own priority", async () => {
  const own = String(getPriority());
  const [job, child, group] = (await niceness(0)).split(" ");
  assert.deepEqual([job, child], [own, own]);
  if (GROUP_NICE) assert.equal(group, "0", "its autogroup's niceness is left alone");
});

/** Niceness (field 19 of stat) of each of the server's threads: tid -> nice. */
function threadNiceness(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/task`)) {
    const stat = Deno.readTextFileSync(`/proc/${pid}/task/${entry.name}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(Number(entry.name), Number(fields[16]));
  }
  return out;
}

Deno.test("the server: its supervisor thread runs half-way to JOB_NICE, the API at its own", async () => {
  const ws = await Workspace.create();
  let server: Server | undefined;
  try {
    // No wait: the job reads its niceness in its first moment, before it is lowered the rest
    // of the way.
    const reg = await ws.registry({
      first: ["/bin/sh", "-c", `cut -d' ' -f19 /proc/$$/stat > "$TRAIN_ARTIFACT_PATH"`],
    });
    server = await Server.start(ws.env({ ...reg, JOB_NICE: "10" }));
    const own = getPriority();
    // Raised to 5 unless the test itself runs niced past it (never lowered).
    const half = Math.max(own, 5);
    const { body } = await http(server.base, "POST", "/train/first", {});
    const done = await waitTerminal(server.base, body.data.job_id);
    assert.equal(done.status, "completed", done.error ?? "");
    // Its very first moment runs at the niceness of the runtime's pool thread that spawned it
    // (the server's own or the supervisor thread's: the pool is shared), until setNice right
    // after the spawn; only a niceness that is none of these would be wrong.
    const first = Number(await Deno.readTextFile(done.model_path));
    assert.ok([own, half, Math.max(own, 10)].includes(first), `the job started at ${first}`);
    const threads = threadNiceness(server.pid);
    if (AUTOGROUPS) {
      const group = (pid: number | string) => Deno.readTextFileSync(`/proc/${pid}/autogroup`);
      assert.equal(group(server.pid), group("self"), "the server's autogroup is left alone");
    }
    assert.equal(threads.get(server.pid), own, "the main thread keeps the server's niceness");
    const niced = [...threads.values()].filter((n) => n === half).length;
    assert.ok(niced >= 1, `no thread at niceness ${half}: ${JSON.stringify([...threads])}`);
    if (own < 5) {
      assert.ok(threads.get(server.pid)! < half, "the API's thread stays above the supervisor's");
      assert.ok(![...threads.values()].includes(10), "no thread of the server runs at JOB_NICE");
    }
  } finally {
    await server?.kill("SIGTERM");
    await ws.dispose();
  }
});

Deno.test("a job already gone when its niceness is set is not an error to log", async () => {
  // A job can end before setNice runs (posix_spawn returns once it has exec'd): ESRCH.
  const child = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
  await child.status;
  const logged: string[] = [];
  setNice(child.pid, 10, (m) => logged.push(m));
  assert.deepEqual(logged, []);
});
