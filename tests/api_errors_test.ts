/** Every error status of the API, each in the envelope {"status":"error","message","details"}. */
import assert from "node:assert/strict";
import { buildApp, type TestResponse } from "./helpers/app.ts";

/** Asserts the status, then the envelope; returns the message. */
function assertError(res: TestResponse, status: number, message?: RegExp): string {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(Object.keys(res.body).sort(), ["details", "message", "status"]);
  assert.equal(res.body.status, "error");
  assert.ok(Array.isArray(res.body.details));
  if (message) assert.match(res.body.message, message);
  return res.body.message;
}

const MISSING = "123e4567-e89b-12d3-a456-426614174000";

Deno.test("bad requests", async (t) => {
  await using app = await buildApp();
  const post = (path: string, body: string, type = "application/json") =>
    app.request("POST", path, { body, headers: { "content-type": type } });

  await t.step("malformed JSON -> 400", async () => {
    assertError(await post("/train", "{not json"), 400, /malformed JSON/);
    assertError(await post("/train/xgboost", '{"retrain": tru'), 400, /malformed JSON/);
  });
  await t.step("an empty body where one is required -> 400", async () => {
    assertError(await post("/train", ""), 400, /empty/);
  });
  await t.step("a wrong content type -> 415", async () => {
    assertError(
      await post("/train", '{"model_type":"xgboost"}', "text/plain"),
      415,
      /application\/json/,
    );
  });
  await t.step("bad field types -> 422 naming each field", async () => {
    const res = await app.request("POST", "/train", {
      json: { model_type: "xgboost", retrain: "yes", use_cv: 1, hyperparameters: [] },
    });
    assertError(res, 422, /retrain/);
    const fields = res.body.details.map((d: { field: string }) => d.field).sort();
    assert.deepEqual(fields, ["hyperparameters", "retrain", "use_cv"]);
  });
  await t.step("unknown fields -> 422", async () => {
    assertError(
      await app.request("POST", "/train", { json: { model_type: "xgboost", epochs: 3 } }),
      422,
      /epochs/,
    );
    assertError(
      await app.request("POST", "/train/xgboost", { json: { model: "x" } }),
      422,
      /model/,
    );
  });
  await t.step("a body that is not an object -> 422", async () => {
    assertError(await app.request("POST", "/train", { json: ["xgboost"] }), 422);
  });
  await t.step("bad hyperparameters -> 422 listing the allowed ones", async () => {
    const res = await app.request("POST", "/train/xgboost", {
      json: { hyperparameters: { max_depth: "deep", epochs: 3 } },
    });
    assertError(res, 422, /max_depth.*epochs|epochs.*max_depth/s);
    const allowed = res.body.details.find((d: { allowed?: unknown }) => d.allowed).allowed;
    assert.ok(allowed.xgboost.includes("max_depth"));
    assert.ok(allowed.xgboost.includes("n_estimators"));
  });
  await t.step("an unknown model type in the body -> 422 naming the known ones", async () => {
    const message = assertError(
      await app.request("POST", "/train", { json: { model_type: "svm" } }),
      422,
    );
    for (const t of ["neural-net", "xgboost", "random-forest", "all"]) {
      assert.ok(message.includes(t));
    }
  });
  await t.step("an unknown model type in the path -> 404 naming the known ones", async () => {
    assertError(await app.request("POST", "/train/svm"), 404, /unknown model type "svm".*xgboost/);
  });
  await t.step("bad query parameters -> 422", async () => {
    assertError(await app.request("GET", "/train/jobs?limit=0"), 422, /limit/);
    assertError(await app.request("GET", "/train/jobs?status=paused"), 422, /status/);
    assertError(await app.request("GET", "/train/jobs?sort=asc"), 422, /sort/);
  });
  await t.step("a bad Idempotency-Key -> 422", async () => {
    const res = await app.request("POST", "/train/xgboost", {
      headers: { "idempotency-key": "has space" },
    });
    assertError(res, 422, /Idempotency-Key/);
  });
});

Deno.test("unknown jobs and conflicts", async (t) => {
  await using app = await buildApp();
  await t.step("an unknown job -> 404 on every job route", async () => {
    for (
      const [method, path] of [
        ["GET", `/train/status/${MISSING}`],
        ["GET", `/train/logs/${MISSING}`],
        ["GET", `/train/job/${MISSING}/events`],
        ["DELETE", `/train/job/${MISSING}`],
        ["DELETE", `/train/job/cancel/${MISSING}`],
      ]
    ) assertError(await app.request(method, path), 404, new RegExp(MISSING));
  });
  await t.step("a job id that is not a UUID -> 404", async () => {
    for (const path of ["/train/status/42", "/train/status/..%2F..%2Fetc", "/train/job/cancel/x"]) {
      const method = path.includes("cancel") ? "DELETE" : "GET";
      assertError(await app.request(method, path), 404, /UUID/);
    }
  });
  await t.step("cancelling a finished job -> 409", async () => {
    const { body } = await app.request("POST", "/train/xgboost");
    assert.equal((await app.request("DELETE", `/train/job/${body.data.job_id}`)).status, 200);
    const again = await app.request("DELETE", `/train/job/cancel/${body.data.job_id}`);
    assertError(again, 409, /already cancelled/);
  });
  await t.step("an unknown route -> 404", async () => {
    assertError(await app.request("GET", "/nothing/here"), 404);
  });
});

Deno.test("wrong methods -> 405 with Allow", async () => {
  await using app = await buildApp();
  const id = MISSING;
  for (
    const [method, path, allow] of [
      ["GET", "/train", "POST"],
      ["GET", "/train/xgboost", "POST"],
      ["POST", "/train/jobs", "GET"],
      ["DELETE", "/train/jobs", "GET"],
      ["POST", "/train/models/available", "GET"],
      ["POST", `/train/status/${id}`, "GET"],
      ["GET", `/train/job/${id}`, "DELETE"],
      ["POST", `/train/job/cancel/${id}`, "DELETE"],
      ["PUT", "/health", "GET"],
    ]
  ) {
    const res = await app.request(method, path);
    assertError(res, 405, new RegExp(method));
    assert.equal(res.headers.get("allow"), allow, `${method} ${path}`);
  }
});

Deno.test("body size limit: 64 KiB", async (t) => {
  await using app = await buildApp();
  const big = JSON.stringify({
    model_type: "xgboost",
    hyperparameters: { pad: "x".repeat(65 * 1024) },
  });
  await t.step("with Content-Length -> 413", async () => {
    const res = await app.request("POST", "/train", {
      body: big,
      headers: { "content-type": "application/json", "content-length": String(big.length) },
    });
    assertError(res, 413, /64 KiB/);
  });
  await t.step("without Content-Length (streamed) -> 413", async () => {
    const bytes = new TextEncoder().encode(big);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 8192) controller.enqueue(bytes.slice(i, i + 8192));
        controller.close();
      },
    });
    const res = await app.request("POST", "/train", {
      body,
      headers: { "content-type": "application/json" },
    });
    assertError(res, 413, /64 KiB/);
  });
  await t.step("a body just under the limit is read", async () => {
    const body = JSON.stringify({
      model_type: "xgboost",
      hyperparameters: { pad: "x".repeat(60 * 1024) },
    });
    assertError(
      await app.request("POST", "/train", {
        body,
        headers: { "content-type": "application/json" },
      }),
      422,
      /pad/,
    );
  });
});

Deno.test("bearer token when API_TOKEN is set", async (t) => {
  await using app = await buildApp({ apiToken: "s3cret-token" });
  await t.step("no token -> 401 with WWW-Authenticate", async () => {
    const res = await app.request("POST", "/train/xgboost");
    assertError(res, 401, /missing bearer token/);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
    assertError(await app.request("GET", "/train/jobs"), 401);
  });
  await t.step("a wrong token -> 401", async () => {
    for (
      const auth of [
        "Bearer nope",
        "Bearer s3cret-token-and-more",
        "Basic s3cret-token",
        "s3cret-token",
      ]
    ) {
      assertError(
        await app.request("GET", "/train/jobs", { headers: { authorization: auth } }),
        401,
      );
    }
  });
  await t.step("the right token is let through", async () => {
    const res = await app.request("GET", "/train/jobs", {
      headers: { authorization: "Bearer s3cret-token" },
    });
    assert.equal(res.status, 200);
  });
  await t.step("/health stays open", async () => {
    assert.equal((await app.request("GET", "/health")).status, 200);
  });
});
