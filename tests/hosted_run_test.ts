/**
 * E2E, hosted mode: a `WORKERS=remote` server that never spawns, and a real worker process
 * that trains every built-in model type and `all`, reporting over HTTP.
 */
import assert from "node:assert/strict";
import { basename } from "node:path";
import { childrenOf, startHostedServer, WORKER_TOKEN, WorkerProcess } from "./helpers/hosted.ts";
import {
  http,
  requireTrainingPython,
  type Server,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

Deno.test("hosted: a remote-mode server and a worker train every built-in type and all", async (t) => {
  await requireTrainingPython();
  const ws = await Workspace.create();
  let server: Server | null = null;
  let worker: WorkerProcess | null = null;
  const spawned = new Set<number>();
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    server = await startHostedServer(ws, { LEASE_SECONDS: "10" });
    const base = server.base;
    const pid = server.pid;
    sampler = setInterval(() => childrenOf(pid).forEach((c) => spawned.add(c)), 25);
    worker = await WorkerProcess.start(ws, base, {
      WORKER_NAME: "gpu-1",
      MAX_CONCURRENT_JOBS: "3",
    });
    const types = ["xgboost", "random-forest", "neural-net"];

    await t.step("each built-in type completes on the worker, as it would locally", async () => {
      const ids = new Map<string, string>();
      for (const type of types) {
        const r = await http(base, "POST", `/train/${type}`, { retrain: true });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        ids.set(type, r.body.data.job_id);
      }
      for (const [type, id] of ids) {
        const d = await waitTerminal(base, id, 180_000);
        assert.equal(d.status, "completed", `${type}: ${d.error}`);
        assert.equal(d.worker.name, "gpu-1");
        assert.match(d.worker.id, /^gpu-1-/);
        assert.equal(d.attempt, 1);
        assert.equal(d.process.alive, false);
        assert.equal(d.process.worker_name, "gpu-1");
        assert.ok(d.progress && d.progress.step === d.progress.total, JSON.stringify(d.progress));
        assert.ok(Object.keys(d.metrics).length > 0, `${type}: no metrics`);
        assert.ok(d.log_lines > 0);
        const logs = await http(base, "GET", `/train/logs/${id}`);
        assert.equal(logs.status, 200);
        assert.ok(logs.body.entries.length > 0);
        await Deno.stat(d.model_path);
        const models = await http(base, "GET", "/train/models/available");
        assert.ok(basename(d.model_path) in models.body.available_models, type);
      }
    });

    await t.step("all: one child per type, each trained by the worker", async () => {
      const r = await http(base, "POST", "/train/all", { retrain: true });
      assert.equal(r.status, 200);
      const d = await waitTerminal(base, r.body.data.job_id, 240_000);
      assert.equal(d.status, "completed", d.error);
      assert.equal(d.children.length, types.length);
      for (const c of d.children) assert.equal(c.status, "completed", c.error);
    });

    await t.step("/health lists the worker with its heartbeat; tokens stay apart", async () => {
      const h = await http(base, "GET", "/health");
      assert.equal(h.body.workers_mode, "remote");
      const w = h.body.workers.find((w: { name: string }) => w.name === "gpu-1");
      assert.ok(w, JSON.stringify(h.body.workers));
      assert.equal(w.alive, true);
      assert.ok(Date.now() - Date.parse(w.last_heartbeat) < 10_000);
      const noToken = await http(base, "POST", "/worker/heartbeat", { worker_id: "x", leases: [] });
      assert.equal(noToken.status, 401);
      const asUser = await http(base, "POST", "/worker/heartbeat", {
        worker_id: "x",
        leases: [],
      }, { authorization: "Bearer not-the-worker-token" });
      assert.equal(asUser.status, 401);
      const ok = await http(base, "POST", "/worker/heartbeat", { worker_id: "x", leases: [] }, {
        authorization: `Bearer ${WORKER_TOKEN}`,
      });
      assert.equal(ok.status, 200);
    });

    await t.step("the server never had a child process", () => {
      assert.deepEqual([...spawned], []);
    });
  } finally {
    clearInterval(sampler);
    await worker?.kill("SIGKILL");
    await server?.kill();
    await ws.dispose();
  }
});
