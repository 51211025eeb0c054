/**
 * E2E, hosted mode: losing a worker or the API mid-job. A worker killed with SIGKILL loses
 * its job to the lease (`worker_lost`, or another attempt elsewhere), and its restart kills
 * what its dead run left; an API killed with SIGKILL comes back to a job that kept running
 * on its worker and whose every log line arrives, in order.
 */
import assert from "node:assert/strict";
import { freePort, startHostedServer, WorkerProcess } from "./helpers/hosted.ts";
import {
  http,
  type Json,
  pollUntil,
  processesWithEnv,
  PYTHON,
  type Server,
  waitJob,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

const LEASE_SECONDS = 3;
const LINES = 20_000;
/** 20,000 numbered lines over about 5 s, then the model. */
const CHATTY = `import os, sys, time
for i in range(${LINES}):
    print(f"line {i}")
    if i % 400 == 399:
        sys.stdout.flush()
        time.sleep(0.1)
open(os.environ["TRAIN_ARTIFACT_PATH"], "w").write("model")
`;

function running(d: Json): boolean {
  return d.status === "running" && d.process?.alive === true && d.progress !== null;
}

async function submit(base: string, type: string, extra: Record<string, unknown> = {}) {
  const r = await http(base, "POST", `/train/${type}`, { retrain: true, ...extra });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data.job_id as string;
}

Deno.test("hosted: a worker killed mid-job, and its restart", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  const workers: WorkerProcess[] = [];
  try {
    const registry = await ws.registry({ fake: await ws.fakeTrainer() });
    server = await startHostedServer(ws, { ...registry, LEASE_SECONDS: String(LEASE_SECONDS) });
    const base = server.base;
    const start = async (name: string) => {
      const w = await WorkerProcess.start(ws, base, { ...registry, WORKER_NAME: name });
      workers.push(w);
      return w;
    };
    const box1 = await start("box-1");
    let lost = "";

    await t.step(`kill -9: the job fails with worker_lost within the lease + 2 s`, async () => {
      lost = await submit(base, "fake", { hyperparameters: { sleep: 60, progress: 1 } });
      await waitJob(base, lost, running);
      await box1.kill("SIGKILL");
      const killed = Date.now();
      const d = await waitJob(base, lost, (d) => d.status === "failed", 20_000);
      const took = Date.now() - killed;
      assert.equal(d.failure_reason, "worker_lost");
      assert.ok(took < (LEASE_SECONDS + 2) * 1000, `failed ${took} ms after the kill`);
      assert.match(d.error, /box-1/);
      // Its process was orphaned with the worker: it still runs.
      assert.ok(processesWithEnv("TRAIN_JOB_ID", lost).length > 0);
    });

    await t.step("the restarted worker kills what its dead run left", async () => {
      await start("box-1");
      assert.deepEqual(processesWithEnv("TRAIN_JOB_ID", lost), []);
    });

    await t.step("max_attempts 2: the job completes on another worker", async () => {
      // Both workers wait before the job exists, so nothing but the kill happens between
      // its start and its loss (a worker starting up takes seconds on a busy machine).
      const box2 = await start("box-2");
      const id = await submit(base, "fake", {
        hyperparameters: { sleep: 4, progress: 1 },
        max_attempts: 2,
      });
      const first = await waitJob(base, id, running);
      const holder = first.worker.name === "box-2" ? box2 : workers[1];
      const other = first.worker.name === "box-2" ? "box-1" : "box-2";
      await holder.kill("SIGKILL");
      const d = await waitTerminal(base, id, 60_000);
      assert.equal(d.status, "completed", d.error);
      assert.equal(d.attempt, 2);
      assert.equal(d.worker.name, other);
      const log = (await http(base, "GET", `/train/job/${id}/events`)).body.events as Json[];
      const types = log.map((e) => e.type);
      assert.equal(types.filter((t) => t === "started").length, 2, types.join(","));
      assert.equal(types.filter((t) => t === "requeued").length, 1, types.join(","));
      assert.ok(types.indexOf("requeued") < types.lastIndexOf("started"));
    });
  } finally {
    for (const w of workers) await w.kill("SIGKILL").catch(() => {});
    await server?.kill();
    await ws.dispose();
  }
});

Deno.test("hosted: the API killed mid-job; the job completes with all its lines", async () => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  let worker: WorkerProcess | null = null;
  try {
    const registry = await ws.registry({ chatty: [PYTHON, await ws.write("chatty.py", CHATTY)] });
    const env = { ...registry, LEASE_SECONDS: "20", PORT: String(freePort()) };
    server = await startHostedServer(ws, env);
    worker = await WorkerProcess.start(ws, server.base, { ...registry, WORKER_NAME: "steady" });
    const id = await submit(server.base, "chatty");
    await waitJob(server.base, id, (d) => d.status === "running" && d.log_lines > 0);
    await server.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 1500));
    server = await startHostedServer(ws, env);
    const d = await waitTerminal(server.base, id, 60_000);
    assert.equal(d.status, "completed", d.error);
    assert.equal(d.log_lines, LINES);
    const lines: string[] = [];
    let after = 0;
    for (;;) {
      const page = await http(server.base, "GET", `/train/logs/${id}?after=${after}`);
      assert.equal(page.status, 200);
      for (const e of page.body.entries) lines.push(...e.lines);
      after = page.body.next_after;
      if (!page.body.more) break;
    }
    const expected = Array.from({ length: LINES }, (_, i) => `line ${i}`);
    assert.equal(lines.length, LINES);
    assert.deepEqual(lines, expected);
    await pollUntil("the lease to end", async () => {
      const h = await http(server!.base, "GET", "/health");
      return h.body.workers?.[0]?.running === 0;
    });
  } finally {
    await worker?.kill("SIGKILL");
    await server?.kill();
    await ws.dispose();
  }
});
