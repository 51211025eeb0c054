/**
 * Hosted mode as `deno task serve:hosted` runs it: a real server process with that task's
 * permissions (no --allow-run), which takes submissions, hands them to a worker over HTTP
 * and never spawns a process. It refuses to start without a WORKER_TOKEN of its own, and
 * two such servers share one database file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { http, liveProcesses, ROOT, runServerToExit, Server, Workspace } from "./helpers/server.ts";

const WORKER_TOKEN = "worker-token-0123456789";
const API_TOKEN = "api-token-0123456789abcdef";
const asWorker = { authorization: `Bearer ${WORKER_TOKEN}` };

/** The permission flags of `deno task serve:hosted`, read from deno.json. */
async function hostedPermissions(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const task: string = config.tasks["serve:hosted"];
  const flags = task.split(/\s+/).filter((w) => w.startsWith("--allow-"));
  assert.ok(flags.length > 0, `no permission flags in serve:hosted: ${task}`);
  assert.ok(!flags.includes("--allow-all") && !flags.includes("--allow-run"), task);
  return flags;
}

/** Live processes whose parent is `pid`. */
function children(pid: number): number[] {
  return [...liveProcesses()].filter(([, p]) => p.ppid === pid).map(([child]) => child);
}

Deno.test("serve:hosted permissions: jobs wait for workers, and no process is spawned", async (t) => {
  const ws = await Workspace.create();
  const server = await Server.start(
    ws.env({ WORKERS: "remote", WORKER_TOKEN, LEASE_SECONDS: "5" }),
    { permissions: await hostedPermissions() },
  );
  try {
    let jobId = "";
    await t.step("a submission is accepted and waits", async () => {
      const r = await http(server.base, "POST", "/train/xgboost", {});
      assert.ok(r.status === 200 || r.status === 202, JSON.stringify(r.body));
      jobId = r.body.job_id ?? r.body.data?.job_id;
      assert.ok(jobId, JSON.stringify(r.body));
      const s = await http(server.base, "GET", `/train/status/${jobId}`);
      assert.equal(s.status, 200);
      assert.equal(s.body.data.status, "started");
    });

    await t.step("a worker registers and claims it over HTTP", async () => {
      const reg = await http(server.base, "POST", "/worker/register", {
        name: "e2e",
        model_types: ["xgboost"],
        max_concurrent: 1,
      }, asWorker);
      assert.equal(reg.status, 200, JSON.stringify(reg.body));
      const claim = await http(server.base, "POST", "/worker/claim", {
        worker_id: reg.body.worker_id,
        claim_id: "c1",
        max: 1,
        wait_seconds: 0,
      }, asWorker);
      assert.equal(claim.status, 200, JSON.stringify(claim.body));
      assert.deepEqual(claim.body.jobs.map((j: { job: { job_id: string } }) => j.job.job_id), [
        jobId,
      ]);
    });

    await t.step("the server has no child process", () => {
      assert.deepEqual(children(server.pid), []);
    });

    await t.step("/health says workers_mode remote and lists the worker", async () => {
      const h = await http(server.base, "GET", "/health");
      assert.equal(h.status, 200);
      assert.equal(h.body.workers_mode, "remote");
      assert.deepEqual(h.body.workers.map((w: { name: string }) => w.name), ["e2e"]);
      assert.equal(h.body.model_types.xgboost.runnable, true);
    });

    await t.step("nothing asked for a permission the task does not grant", () => {
      assert.doesNotMatch(server.output, /NotCapable|PermissionDenied|Requires \w+ access/);
    });
    await t.step("SIGTERM stops it cleanly", async () => {
      const status = await server.kill("SIGTERM");
      assert.equal(status.code, 0, server.output);
    });
  } finally {
    await server.kill("SIGKILL");
    await ws.dispose();
  }
});

Deno.test("WORKERS=remote refuses to start without its own WORKER_TOKEN", async (t) => {
  const ws = await Workspace.create();
  const permissions = await hostedPermissions();
  try {
    await t.step("no WORKER_TOKEN", async () => {
      const r = await runServerToExit(ws.env({ WORKERS: "remote" }), { permissions });
      assert.equal(r.code, 2, r.output);
      assert.match(r.output, /WORKER_TOKEN/);
    });
    await t.step("WORKER_TOKEN equal to API_TOKEN", async () => {
      const r = await runServerToExit(
        ws.env({ WORKERS: "remote", WORKER_TOKEN: API_TOKEN, API_TOKEN }),
        { permissions },
      );
      assert.equal(r.code, 2, r.output);
      assert.match(r.output, /WORKER_TOKEN equals API_TOKEN/);
    });
  } finally {
    await ws.dispose();
  }
});

Deno.test("two remote-mode servers on one database file both start and share jobs", async () => {
  const ws = await Workspace.create();
  const env = ws.env({ WORKERS: "remote", WORKER_TOKEN });
  const permissions = await hostedPermissions();
  const servers: Server[] = [];
  try {
    servers.push(await Server.start(env, { permissions }));
    servers.push(await Server.start(env, { permissions }));
    const [a, b] = servers;
    assert.notEqual(a.base, b.base);
    const r = await http(a.base, "POST", "/train/xgboost", { retrain: true });
    assert.ok(r.status === 200 || r.status === 202, JSON.stringify(r.body));
    const id = r.body.job_id ?? r.body.data?.job_id;
    const s = await http(b.base, "GET", `/train/status/${id}`);
    assert.equal(s.status, 200, "the other server sees the job");
    assert.equal(s.body.data.status, "started");
  } finally {
    for (const s of servers) await s.kill("SIGTERM");
    await ws.dispose();
  }
});
