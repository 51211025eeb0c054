/** E2E: jobs that complete, fail and time out, through the real server and real children. */
import assert from "node:assert/strict";
import { basename } from "node:path";
import { groupAlive, http, Server, waitTerminal, Workspace } from "./helpers/server.ts";

Deno.test("e2e: jobs complete, fail and time out with real child processes", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const fake = await ws.fakeTrainer();
    const env = ws.env({ ...await ws.registry({ fake }), CANCEL_GRACE_SECONDS: "1" });
    server = await Server.start(env);
    const base = server.base;
    const submit = async (hyperparameters: Record<string, unknown>, extra = {}) => {
      const r = await http(base, "POST", "/train/fake", {
        retrain: true,
        hyperparameters,
        ...extra,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.status, "success");
      assert.equal(r.body.data.model_type, "fake");
      return r.body.data.job_id as string;
    };

    await t.step("a job that writes its artifact completes with progress and metrics", async () => {
      const id = await submit({ progress: 4, metrics: { accuracy: 0.93, loss: 0.2 } });
      const job = await waitTerminal(base, id);
      assert.equal(job.status, "completed", JSON.stringify(job));
      assert.equal(job.exit_code, 0);
      assert.equal(job.error, null);
      assert.equal(job.failure_reason, null);
      assert.match(basename(job.model_path), /^fake_model_\d{4}-\d{2}-\d{2}_/);
      assert.equal(await Deno.readTextFile(job.model_path), "model");
      assert.equal(job.progress.step, 4);
      assert.equal(job.progress.total, 4);
      assert.deepEqual(job.metrics, { accuracy: 0.93, loss: 0.2 });
      assert.match(job.logs, /fake trainer starting/);
      assert.doesNotMatch(job.logs, /@@trainer/);
      assert.equal(job.process.alive, false);
      assert.ok(job.started_at && job.completed_at);

      const events = await http(base, "GET", `/train/job/${id}/events?type=progress`);
      assert.equal(events.status, 200);
      assert.deepEqual(events.body.events.map((e: { data: { step: number } }) => e.data.step), [
        1,
        2,
        3,
        4,
      ]);

      const models = await http(base, "GET", "/train/models/available");
      assert.equal(models.status, 200);
      const entry = models.body.available_models[basename(job.model_path)];
      assert.ok(entry, JSON.stringify(models.body));
      assert.equal(entry.type, "fake");
      assert.equal(entry.size, 5);
      assert.match(entry.modified, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
      assert.equal(models.body.models_directory, ws.modelsDir);
    });

    await t.step("exit 3 fails with the exit code and the last stderr lines", async () => {
      const stderr = ["first problem", "second problem", "last problem"];
      const id = await submit({ exit: 3, stderr });
      const job = await waitTerminal(base, id);
      assert.equal(job.status, "failed");
      assert.equal(job.failure_reason, "exit_nonzero");
      assert.equal(job.exit_code, 3);
      for (const line of stderr) assert.ok(job.error.includes(line), job.error);
      assert.ok(job.error.indexOf("second problem") < job.error.indexOf("last problem"));
      assert.equal(job.model_path, null);
      assert.match(job.message, /failed/);
      // The file it wrote before failing is removed: a failed job leaves no model.
      const names = [...Deno.readDirSync(ws.modelsDir)].map((e) => e.name);
      assert.ok(!names.some((n) => n.includes(id.slice(0, 8))), names.join(", "));
    });

    await t.step("exit 0 without a model file fails as artifact_missing", async () => {
      const job = await waitTerminal(base, await submit({ write: false }));
      assert.equal(job.status, "failed");
      assert.equal(job.failure_reason, "artifact_missing");
      assert.equal(job.exit_code, 0);
    });

    await t.step("a malformed protocol line is a log line and a warning", async () => {
      const id = await submit({ malformed: true });
      const job = await waitTerminal(base, id);
      assert.equal(job.status, "completed", JSON.stringify(job));
      assert.match(job.logs, /@@trainer \{not json/);
      assert.equal(job.warnings.length, 1);
      assert.match(job.warnings[0], /malformed protocol line/);
      const warnings = await http(base, "GET", `/train/job/${id}/events?type=warning`);
      assert.equal(warnings.body.events.length, 1);
    });

    await t.step("timeout_seconds stops a job that runs too long", async () => {
      const id = await submit({ sleep: 1000, grandchild: true }, { timeout_seconds: 1 });
      const started = Date.now();
      const job = await waitTerminal(base, id);
      assert.equal(job.status, "failed");
      assert.equal(job.failure_reason, "timeout");
      assert.match(job.error, /time limit of 1 s exceeded/);
      assert.ok(Date.now() - started < 15_000);
      assert.equal(job.process.alive, false);
      assert.equal(job.process.stopped_with, "SIGTERM");
      assert.equal(job.process.group_gone, true);
      assert.equal(groupAlive(job.process.pgid), false);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
