/**
 * Issue 7, defect 9 through `app.request()`: reserved hyperparameter names, bounded numbers,
 * idempotent retries that spell out defaults, /health without the token, the running count,
 * a status path without an id, and queue positions.
 */
import assert from "node:assert/strict";
import { LocalPort } from "../jobs/worker_port.ts";
import { buildApp } from "./helpers/app.ts";
import { startedData } from "./helpers/jobs.ts";

Deno.test("reserved hyperparameter names answer 422 instead of being dropped", async (t) => {
  await using app = await buildApp({ registry: { mine: { command: ["/bin/true"] } } });
  // JSON.parse keeps "__proto__" as an own key; the raw text is what a client sends.
  const post = (path: string, body: string) =>
    app.request("POST", path, { body, headers: { "content-type": "application/json" } });
  for (const key of ["__proto__", "constructor"]) {
    await t.step(key, async () => {
      const hp = `{"${key}": {"n_estimators": 1}, "max_depth": 3}`;
      const full = await post("/train", `{"model_type": "xgboost", "hyperparameters": ${hp}}`);
      assert.equal(full.status, 422, JSON.stringify(full.body));
      assert.match(full.body.message, new RegExp(`hyperparameters\\.${key}: "${key}" cannot be`));
      const custom = await post("/train/mine", `{"hyperparameters": ${hp}}`);
      assert.equal(custom.status, 422, "a registry type, which takes any keys, too");
      const jobs = await app.request("GET", "/train/jobs");
      assert.equal(jobs.body.total_count, 0, "no job was created");
    });
  }
});

Deno.test("numbers the libraries cannot take are refused at the API", async (t) => {
  await using app = await buildApp();
  const train = (type: string, hyperparameters: unknown) =>
    app.request("POST", `/train/${type}`, { json: { retrain: true, hyperparameters } });
  const refused: [string, Record<string, number>][] = [
    ["xgboost", { min_child_weight: 1e308 }],
    ["xgboost", { reg_lambda: 1e39 }],
    ["xgboost", { reg_alpha: 1e300 }],
    ["xgboost", { learning_rate: 1e-300 }],
    ["xgboost", { subsample: 1e-40 }],
    ["neural-net", { alpha: 1e308 }],
    ["random-forest", { max_features: 1e-300 }],
  ];
  for (const [type, hp] of refused) {
    await t.step(`${type} ${JSON.stringify(hp)} -> 422`, async () => {
      const res = await train(type, hp);
      assert.equal(res.status, 422);
      assert.match(res.body.message, new RegExp(`hyperparameters\\.${Object.keys(hp)[0]}`));
    });
  }
  await t.step("max_features says what it takes: a name, null or a fraction", async () => {
    for (const value of ["auto", true, 2]) {
      const res = await train("random-forest", { max_features: value });
      assert.equal(res.status, 422);
      assert.match(
        res.body.message,
        /max_features \(random-forest: must be "sqrt", "log2", null \(all features\) or a fraction of the features in \(0, 1\]/,
      );
    }
  });
  await t.step("the largest and smallest accepted values are accepted", async () => {
    const xgb = { min_child_weight: 1e6, reg_lambda: 1e6, reg_alpha: 0, learning_rate: 1e-6 };
    assert.equal((await train("xgboost", xgb)).status, 200);
    assert.equal((await train("neural-net", { alpha: 1e6 })).status, 200);
  });
});

Deno.test("an idempotent retry that spells out the defaults replays", async () => {
  await using app = await buildApp({ defaultTimeoutSeconds: 3600 });
  const post = (json: unknown) =>
    app.request("POST", "/train", { json, headers: { "Idempotency-Key": "retry-1" } });
  const first = await post({ model_type: "xgboost", retrain: true });
  assert.equal(first.status, 200);
  const spelled = await post({
    model_type: "xgboost",
    retrain: true,
    use_cv: true,
    timeout_seconds: 3600,
    hyperparameters: { n_estimators: 100, max_depth: 6 },
  });
  assert.equal(spelled.status, 200, JSON.stringify(spelled.body));
  assert.equal(spelled.headers.get("Idempotent-Replayed"), "true");
  assert.equal(spelled.body.job_id, first.body.job_id);
  const other = await post({ model_type: "xgboost", retrain: true, timeout_seconds: 60 });
  assert.equal(other.status, 409, "a real difference still conflicts");
});

Deno.test("/health without the token says only whether the service is up", async (t) => {
  await using app = await buildApp({ apiToken: "s3cret" });
  await t.step("no token, or a wrong one: status only", async () => {
    const tries: Record<string, string>[] = [{}, { Authorization: "Bearer wrong" }];
    for (const headers of tries) {
      const res = await app.request("GET", "/health", { headers });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { status: "ok" });
    }
  });
  await t.step("with the token: the full body", async () => {
    const res = await app.request("GET", "/health", {
      headers: { Authorization: "Bearer s3cret" },
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.status, "ok");
    assert.ok("model_types" in res.body && "running" in res.body && "database" in res.body);
  });
  await t.step("other paths still need the token", async () => {
    assert.equal((await app.request("GET", "/train/jobs")).status, 401);
  });
});

Deno.test("GET /train/status without an id says the id is missing", async () => {
  await using app = await buildApp();
  for (const path of ["/train/status", "/train/status/", "/train/logs"]) {
    const res = await app.request("GET", path);
    assert.equal(res.status, 404, path);
    const what = path.split("/")[2];
    assert.equal(res.body.message, `missing job id: use GET /train/${what}/{job_id}`);
  }
});

Deno.test("waiting jobs show their place in the queue; parents are not counted", async (t) => {
  await using app = await buildApp();
  const submit = async (json: unknown) => {
    const res = await app.request("POST", "/train", { json });
    assert.equal(res.status, 200);
    return res.body;
  };
  const view = async (id: string) => (await app.request("GET", `/train/status/${id}`)).body.data;
  const all = await submit({ model_type: "all", retrain: true });
  const solo = await submit({ model_type: "xgboost", retrain: true });
  const order = [...all.children.map((c: { job_id: string }) => c.job_id), solo.job_id];

  await t.step("1-based positions in submission order, and a message that says so", async () => {
    const views = await Promise.all(order.map(view));
    assert.deepEqual(views.map((v) => v.queue_position), [1, 2, 3, 4]);
    assert.equal(views[0].message, "waiting for a free slot: 0 jobs ahead");
    assert.equal(views[1].message, "waiting for a free slot: 1 job ahead");
    assert.equal(views[3].message, "waiting for a free slot: 3 jobs ahead");
    const parent = await view(all.job_id);
    assert.equal(parent.queue_position, null, "a parent waits only through its children");
  });
  await t.step("a started job leaves the queue; the parent is not counted as running", async () => {
    const port = new LocalPort(app.store);
    const [first] = await port.claim(1);
    assert.equal(first?.job_id, order[0]);
    await port.started(first!.job_id, startedData());
    const running = await view(order[0]);
    assert.equal(running.queue_position, null);
    assert.equal(running.message, "Training running");
    assert.deepEqual((await Promise.all(order.slice(1).map(view))).map((v) => v.queue_position), [
      1,
      2,
      3,
    ]);
    assert.equal((await view(all.job_id)).status, "running");
    const health = await app.request("GET", "/health");
    assert.equal(health.body.running, 1, "one process runs: the child, not its parent too");
    assert.equal(health.body.queue_depth, 3);
  });
});

Deno.test("a submission's options in the query string are refused, not ignored", async () => {
  await using app = await buildApp();
  for (const path of ["/train/xgboost?retrain=true", "/train?model_type=xgboost&retrain=1"]) {
    const json = path.startsWith("/train?") ? { model_type: "xgboost" } : undefined;
    const res = await app.request("POST", path, json ? { json } : {});
    assert.equal(res.status, 422, path);
    assert.match(
      res.body.message,
      /^query parameters are not read here \(got (retrain|model_type, retrain)\): send the options in the JSON body/,
    );
  }
  const list = await app.request("GET", "/train/jobs");
  assert.equal(list.body.total_count, 0, "no job was created");
});

Deno.test("an unknown field or query parameter is named with the ones that are known", async () => {
  await using app = await buildApp();
  const list = await app.request("GET", "/train/jobs?type=xgboost");
  assert.equal(list.status, 422);
  assert.equal(
    list.body.details[0].message,
    'Unrecognized key: "type" (known: limit, offset, status, model_type, parent_id)',
  );
  const body = await app.request("POST", "/train", {
    json: { model_type: "xgboost", retrian: true },
  });
  assert.equal(body.status, 422);
  assert.match(body.body.message, /Unrecognized key: "retrian" \(known: model_type, retrain, /);
});
