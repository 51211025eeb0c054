/** E2E: a bad environment value stops the real server at start, naming the variable. */
import assert from "node:assert/strict";
import { http, runServerToExit, Server, waitTerminal, Workspace } from "./helpers/server.ts";

const CASES: [string, Record<string, string>, RegExp][] = [
  ["PORT=abc", { PORT: "abc" }, /PORT="abc"/],
  ["PORT out of range", { PORT: "70000" }, /PORT="70000"/],
  ["MAX_CONCURRENT_JOBS=0", { MAX_CONCURRENT_JOBS: "0" }, /MAX_CONCURRENT_JOBS="0"/],
  ["CANCEL_GRACE_SECONDS=-1", { CANCEL_GRACE_SECONDS: "-1" }, /CANCEL_GRACE_SECONDS="-1"/],
  ["JOB_TIMEOUT_SECONDS=1.5", { JOB_TIMEOUT_SECONDS: "1.5" }, /JOB_TIMEOUT_SECONDS="1.5"/],
  ["ALLOW_INSECURE=maybe", { ALLOW_INSECURE: "maybe" }, /ALLOW_INSECURE="maybe"/],
  ["DATABASE_URL without a scheme", { DATABASE_URL: "trainer.db" }, /DATABASE_URL/],
  ["a public HOST without API_TOKEN", { HOST: "0.0.0.0" }, /HOST=0\.0\.0\.0.*API_TOKEN/],
  ["a missing MODEL_REGISTRY file", { MODEL_REGISTRY: "/nonexistent/r.json" }, /MODEL_REGISTRY/],
];

Deno.test("e2e: bad configuration stops the server with a message naming the variable", async (t) => {
  const ws = await Workspace.create();
  try {
    // Started together: each is a separate short-lived process.
    const results = await Promise.all(CASES.map(([, env]) => runServerToExit(ws.env(env))));
    for (const [i, [name, , message]] of CASES.entries()) {
      await t.step(name, () => {
        const { code, output } = results[i];
        assert.notEqual(code, 0, output);
        assert.match(output, message);
        assert.doesNotMatch(output, /listening on/);
      });
    }
    await t.step(
      "settings that parse but cannot work: exit code 2, naming the variable",
      async () => {
        const file = await ws.write("plain-file", "");
        const csv = await ws.write("data.csv", "a,b,label\n1,2,x\n");
        const cases: [Record<string, string>, RegExp][] = [
          [{ MODELS_DIR: `${file}/models` }, /MODELS_DIR=\S+plain-file\/models cannot be created/],
          [
            { DATASET_PATH: `${ws.dir}/missing.csv` },
            /DATASET_PATH=\S+missing\.csv does not exist/,
          ],
          [{ DATASET_TASK: "clasification" }, /DATASET_TASK="clasification"/],
          [
            { DATASET_PATH: csv, DATASET_TARGET: "y" },
            /DATASET_TARGET=y is not a column.*a, b, label/,
          ],
          [{ DATASET_TARGET: "label" }, /DATASET_TARGET=label .*DATASET_PATH.* not set/],
        ];
        const results = await Promise.all(cases.map(([env]) => runServerToExit(ws.env(env))));
        for (const [i, { code, output }] of results.entries()) {
          assert.equal(code, 2, output);
          assert.match(output, cases[i][1]);
          assert.doesNotMatch(output, /listening on/);
        }
      },
    );
    await t.step("a PORT already in use", async () => {
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = String((listener.addr as Deno.NetAddr).port);
      const { code, output } = await runServerToExit(ws.env({ PORT: port }));
      assert.notEqual(code, 0, output);
      assert.match(output, new RegExp(`cannot listen on HOST=127\\.0\\.0\\.1 PORT=${port}`));
    });
  } finally {
    await ws.dispose();
  }
});

Deno.test("e2e: a missing training Python fails jobs at once as runtime_missing", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    server = await Server.start(ws.env({ TRAIN_PYTHON: "/nonexistent/python3" }));
    const base = server.base;

    await t.step("the job fails with the reason and what to do", async () => {
      const r = await http(base, "POST", "/train/xgboost");
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const job = await waitTerminal(base, r.body.data.job_id);
      assert.equal(job.status, "failed");
      assert.equal(job.failure_reason, "runtime_missing");
      assert.match(job.error, /TRAIN_PYTHON=\/nonexistent\/python3/);
      assert.equal(job.process, null);
    });

    await t.step("/health and the start-up log say so", async () => {
      const health = await http(base, "GET", "/health");
      assert.equal(health.status, 200);
      assert.equal(health.body.model_types.xgboost.runnable, false);
      assert.match(health.body.model_types.xgboost.hint, /TRAIN_PYTHON/);
      assert.match(server!.output, /model type xgboost: NOT runnable/);
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
