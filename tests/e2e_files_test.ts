/**
 * E2E: what a failing job's cleanup may delete (its exact files, inside MODELS_DIR only), which
 * model files are accepted, and a launch that fails at run time (MODELS_DIR turned into a file).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { http, Server, waitJob, waitTerminal, Workspace } from "./helpers/server.ts";

const REPORT = (path: string) => `echo '@@trainer {"event":"artifact","path":"${path}"}'`;

Deno.test("e2e: cleanup deletes only the job's own files; symlinked models are refused", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const outside = join(ws.dir, "outside");
    await Deno.mkdir(outside);
    const registry = await ws.registry({
      fake: await ws.fakeTrainer(),
      // Reports the artifact ".x": a prefix match on "" once wiped the whole folder.
      dotx: ["/bin/bash", await ws.write("dotx.sh", `${REPORT(".x")}\nexit 1\n`)],
      // Writes through a symlinked folder inside MODELS_DIR that points outside, then fails.
      through: [
        "/bin/bash",
        await ws.write(
          "through.sh",
          `touch "$TRAIN_OUTPUT_DIR/link/victim.joblib" "$TRAIN_OUTPUT_DIR/link/victim.meta.json"\n` +
            `${REPORT("link/victim.joblib")}\nexit 1\n`,
        ),
      ],
      // Its model file is a symlink to a file outside MODELS_DIR.
      symlinked: [
        "/bin/bash",
        await ws.write("symlinked.sh", `ln -s ${outside}/secret.joblib "$TRAIN_ARTIFACT_PATH"\n`),
      ],
    });
    server = await Server.start(ws.env(registry));
    const base = server.base;
    const run = async (type: string, hyperparameters: Record<string, unknown> = {}) => {
      const r = await http(base, "POST", `/train/${type}`, { retrain: true, hyperparameters });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return await waitJob(base, r.body.data.job_id, (d) => d.process?.alive === false);
    };
    const models = () => [...Deno.readDirSync(ws.modelsDir)].map((e) => e.name).sort();

    const done = [await run("fake"), await run("fake")];
    for (const job of done) {
      assert.equal(job.status, "completed");
      await Deno.writeTextFile(job.model_path.replace(/\.joblib$/, ".meta.json"), "{}");
    }
    const before = models();
    assert.equal(before.length, 4);

    await t.step("a failing script reporting artifact .x leaves other models alone", async () => {
      const job = await run("dotx");
      assert.equal(job.status, "failed");
      assert.deepEqual(models(), before);
    });

    await t.step("a failed job's own files are removed, by exact name, and logged", async () => {
      const job = await run("fake", { exit: 1 });
      assert.equal(job.status, "failed");
      assert.deepEqual(models(), before);
      assert.match(server!.output, new RegExp(`job ${job.job_id}: removed \\S+\\.joblib`));
    });

    await t.step("a symlinked folder never leads cleanup outside MODELS_DIR", async () => {
      await Deno.symlink(outside, join(ws.modelsDir, "link"));
      const job = await run("through");
      assert.equal(job.status, "failed");
      const left = [...Deno.readDirSync(outside)].map((e) => e.name).sort();
      assert.deepEqual(left, ["victim.joblib", "victim.meta.json"]);
    });

    await t.step("a model file that is a symlink is refused", async () => {
      await Deno.writeTextFile(join(outside, "secret.joblib"), "secret");
      const job = await run("symlinked");
      assert.equal(job.status, "failed");
      assert.equal(job.failure_reason, "artifact_refused");
      assert.match(job.error, /is a symlink/);
      assert.equal(job.model_path, null);
      assert.equal(await Deno.readTextFile(join(outside, "secret.joblib")), "secret");
      const listed = await http(base, "GET", "/train/models/available");
      assert.equal(Object.keys(listed.body.available_models).length, 2);
    });

    await t.step("a launch that fails at run time records the job failed", async () => {
      await Deno.remove(ws.modelsDir, { recursive: true });
      await Deno.writeTextFile(ws.modelsDir, "not a folder");
      const r = await http(base, "POST", "/train/fake", { retrain: true });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const job = await waitTerminal(base, r.body.data.job_id);
      assert.equal(job.status, "failed");
      assert.equal(job.failure_reason, "spawn_failed");
      assert.match(job.error, /MODELS_DIR \S+ cannot be created/);
    });

    await t.step("reading an unusable MODELS_DIR is a clear 503, never a 500", async () => {
      // Reuse checks the recorded model of this type (from the steps above) in the store:
      // the store cannot be read, and the answer says which setting to fix.
      const reuse = await http(base, "POST", "/train/fake", { retrain: false });
      assert.equal(reuse.status, 503, JSON.stringify(reuse.body));
      assert.match(reuse.body.message, /MODELS_DIR/);
      const listed = await http(base, "GET", "/train/models/available");
      assert.equal(listed.status, 503, JSON.stringify(listed.body));
      assert.match(listed.body.message, /MODELS_DIR/);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
