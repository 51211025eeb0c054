/**
 * E2E: a process that leaves its job's group with setsid (keeping the job's environment and
 * its stdout) dies with the job, whether it completes, fails or is cancelled, and at restart
 * after the server was SIGKILLed; the job's events record the kill.
 */
import assert from "node:assert/strict";
import { http, pollUntil, processesWithEnv, Server, waitJob, Workspace } from "./helpers/server.ts";

/** Starts a `setsid sleep 300` daemon, waits until it has its own session, then does "$1". */
const ESCAPER = `setsid sleep 300 &
daemon=$!
until [ "$(cut -d' ' -f6 /proc/$daemon/stat 2>/dev/null)" = "$daemon" ]; do sleep 0.01; done
echo "daemon $daemon"
case "$1" in
  complete) echo model > "$TRAIN_ARTIFACT_PATH" ;;
  fail) exit 3 ;;
  wait) sleep 300 ;;
esac
`;

Deno.test("e2e: processes that escape with setsid do not outlive their job", async (t) => {
  const ws = await Workspace.create();
  const servers: Server[] = [];
  try {
    const script = await ws.write("escaper.sh", ESCAPER);
    const env = ws.env({
      ...await ws.registry({
        complete: ["/bin/bash", script, "complete"],
        fail: ["/bin/bash", script, "fail"],
        wait: ["/bin/bash", script, "wait"],
      }),
      CANCEL_GRACE_SECONDS: "1",
    });
    const first = await Server.start(env);
    servers.push(first);
    const submit = async (server: Server, type: string) => {
      const r = await http(server.base, "POST", `/train/${type}`, { retrain: true });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.data.job_id as string;
    };
    /** The daemon's pid, once the script has printed it. */
    const daemonOf = async (server: Server, id: string) => {
      const job = await waitJob(server.base, id, (d) => DAEMON.test(d.logs ?? ""));
      return Number(DAEMON.exec(job.logs)![1]);
    };
    /** After the job's process ended: nothing with its id is alive, and the kill is recorded. */
    const ended = async (id: string, daemon: number) => {
      const job = await waitJob(first.base, id, (d) => d.process?.alive === false);
      assert.deepEqual(processesWithEnv("TRAIN_JOB_ID", id), []);
      const r = await http(first.base, "GET", `/train/job/${id}/events?type=process_exited`);
      const exited = r.body.events[0].data;
      assert.deepEqual(exited.strays_killed, [daemon]);
      assert.equal(exited.group_gone, true);
      return job;
    };

    await t.step("a job that completes", async () => {
      const id = await submit(first, "complete");
      const daemon = await daemonOf(first, id);
      assert.equal((await ended(id, daemon)).status, "completed");
    });

    await t.step("a job that fails", async () => {
      const id = await submit(first, "fail");
      const daemon = await daemonOf(first, id);
      const job = await ended(id, daemon);
      assert.equal(job.status, "failed");
      assert.equal(job.failure_reason, "exit_nonzero");
    });

    await t.step("a job that is cancelled", async () => {
      const id = await submit(first, "wait");
      const daemon = await daemonOf(first, id);
      const r = await http(first.base, "DELETE", `/train/job/${id}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal((await ended(id, daemon)).status, "cancelled");
    });

    await t.step("at restart after SIGKILL: running and already ended jobs", async () => {
      const running = await submit(first, "wait");
      const daemon = await daemonOf(first, running);
      const done = await submit(first, "complete");
      await daemonOf(first, done);
      await waitJob(first.base, done, (d) => d.process?.alive === false);
      // A process of an ended job that the server never saw: as if it died before killing it.
      const late = new Deno.Command("setsid", {
        args: ["sleep", "300"],
        env: { TRAIN_JOB_ID: done, TRAIN_OUTPUT_DIR: ws.modelsDir },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      await pollUntil("the late process", () => processesWithEnv("TRAIN_JOB_ID", done).length);
      await first.kill("SIGKILL");
      assert.deepEqual(processesWithEnv("TRAIN_JOB_ID", running).includes(daemon), true);

      const second = await Server.start(env);
      servers.push(second);
      assert.deepEqual(processesWithEnv("TRAIN_JOB_ID", running), []);
      assert.deepEqual(processesWithEnv("TRAIN_JOB_ID", done), []);
      await late.status;
      const failed = await http(second.base, "GET", `/train/job/${running}/events?type=failed`);
      assert.equal(failed.body.events[0].data.failure_reason, "interrupted");
      assert.ok(failed.body.events[0].data.evidence.stray_pids.includes(daemon));
      const warned = await http(second.base, "GET", `/train/status/${done}`);
      assert.equal(warned.body.data.status, "completed");
      assert.match(
        warned.body.data.warnings.at(-1),
        new RegExp(`killed 1 process\\(es\\) .*pids ${late.pid}\\)`),
      );
    });
  } finally {
    for (const server of servers) await server.kill();
    await ws.dispose();
  }
});

const DAEMON = /^daemon (\d+)$/m;
