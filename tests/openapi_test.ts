/**
 * The OpenAPI document and the docs page. `send()` checks every response of the API tests
 * against the document; here, every registered route must be documented, and one run that
 * reaches every operation and the main error statuses must conform.
 */
import assert from "node:assert/strict";
import { basename } from "node:path";
import { buildApp, recordModel, SCRIPTS, type TestApp, waitForJob } from "./helpers/app.ts";
import { checkerFor } from "./helpers/openapi.ts";

const sh = (script: string, ...args: string[]) => ({
  command: ["/bin/sh", `./${script}`, ...args],
});
const MISSING = "00000000-0000-4000-8000-00000000beef";
const terminal = (d: { status: string }) => ["completed", "failed", "cancelled"].includes(d.status);

/** `/train/:job_id` as OpenAPI writes it: `/train/{job_id}`. */
function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_]+)(\{[^}]*\})?/g, "{$1}");
}

async function expectStatus(app: TestApp, status: number, method: string, path: string, init = {}) {
  const res = await app.request(method, path, init);
  assert.equal(res.status, status, `${method} ${path}: ${JSON.stringify(res.body)}`);
  return res.body;
}

Deno.test("every route the app registers is in /openapi.json", async () => {
  await using app = await buildApp();
  const doc = await expectStatus(app, 200, "GET", "/openapi.json");
  assert.equal(doc.openapi, "3.1.0");
  const routes = app.app.routes.filter((r) => r.method !== "ALL");
  assert.ok(routes.length >= 15, `routes: ${routes.map((r) => r.path)}`);
  for (const r of routes) {
    const op = doc.paths[openApiPath(r.path)]?.[r.method.toLowerCase()];
    assert.ok(op, `${r.method} ${r.path} is not in /openapi.json`);
    assert.ok(op.responses["200"], `${r.method} ${r.path} documents no 200`);
    assert.ok(op.responses["503"], `${r.method} ${r.path} documents no 503`);
  }
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item as Record<string, { responses: object }>)) {
      // Every route behind API_TOKEN says so, with the error envelope.
      if (path.startsWith("/train")) {
        const unauthorized = (op.responses as Record<string, { content: object }>)["401"];
        // A HEAD answer has no body to describe.
        assert.ok(
          method === "head" ? unauthorized : unauthorized?.content,
          `${method} ${path} documents no 401`,
        );
      }
    }
  }
});

Deno.test("the checker refuses what the document does not allow", async () => {
  await using app = await buildApp();
  const checker = await checkerFor(app.app);
  const ok = { method: "GET", path: "/train/jobs", contentType: "application/json" };
  checker.check({ ...ok, status: 200, body: { jobs: [], total_count: 0, filtered_count: 0 } });
  assert.throws(
    () => checker.check({ ...ok, status: 200, body: { jobs: [], total_count: "0" } }),
    /total_count must be integer/,
  );
  assert.throws(
    () =>
      checker.check({ ...ok, status: 500, body: { status: "error", message: "", details: [] } }),
    /status 500 is not documented/,
  );
  assert.throws(
    () => checker.check({ ...ok, status: 200, contentType: "text/html", body: "<p>" }),
    /content type "text\/html" is not documented/,
  );
  assert.throws(
    () => checker.check({ ...ok, path: "/nowhere", status: 200, body: {} }),
    /no operation in \/openapi.json, so 404 was expected/,
  );
});

Deno.test("a run over every operation conforms to /openapi.json", async (t) => {
  await using app = await buildApp({
    supervisor: true,
    files: SCRIPTS,
    registry: {
      ok: sh("ok.sh"),
      broken: sh("fail.sh"),
      hold: sh("hold.sh", "/nonexistent/file"),
      // The built-in types become scripts too: checking their Python takes seconds.
      "neural-net": sh("ok.sh"),
      xgboost: sh("ok.sh"),
      "random-forest": sh("ok.sh"),
    },
  });
  const ids: Record<string, string> = {};

  await t.step("jobs that complete, fail, run as 'all', and are cancelled", async () => {
    ids.ok = (await expectStatus(app, 200, "POST", "/train/ok", { json: { retrain: true } }))
      .data.job_id;
    ids.broken = (await expectStatus(app, 200, "POST", "/train/broken")).data.job_id;
    for (const id of [ids.ok, ids.broken]) await waitForJob(app, id, terminal);
    // Cancelled at once: its children are cancelled whether they started or not.
    const all = await expectStatus(app, 200, "POST", "/train", {
      json: { model_type: "all", retrain: true },
      headers: { "idempotency-key": "k-1" },
    });
    ids.all = all.job_id;
    await expectStatus(app, 200, "DELETE", `/train/job/cancel/${ids.all}`);
    await expectStatus(app, 409, "DELETE", `/train/job/${ids.all}`);
    ids.hold = (await expectStatus(app, 200, "POST", "/train/hold")).data.job_id;
    await waitForJob(app, ids.hold, (d) => d.status === "running");
    await expectStatus(app, 200, "DELETE", `/train/job/${ids.hold}`);
    await waitForJob(app, ids.all, (d) => d.children.every(terminal));
  });

  await t.step("every read route, on every kind of job", async () => {
    for (const id of Object.values(ids)) {
      await expectStatus(app, 200, "GET", `/train/status/${id}`);
      await expectStatus(app, 200, "GET", `/train/logs/${id}?limit=2`);
      await expectStatus(app, 200, "GET", `/train/job/${id}/events`);
      // Every job here has ended, so its stream replays and closes.
      await expectStatus(app, 200, "GET", `/train/job/${id}/stream`);
    }
    // The global stream never ends on its own: a bad resume point answers at once.
    await expectStatus(app, 400, "GET", "/train/stream", { headers: { "last-event-id": "x" } });
    await expectStatus(app, 200, "GET", "/train/jobs?limit=3");
    await expectStatus(app, 200, "GET", "/train/jobs?status=failed&model_type=broken");
    await expectStatus(app, 200, "GET", "/train/models/available");
    await expectStatus(app, 200, "GET", "/train/models/available?check=true&type=ok&limit=5");
    const { model_path } = (await expectStatus(app, 200, "GET", `/train/status/${ids.ok}`)).data;
    const name = basename(model_path);
    // Until the supervisor records what it stores, the test records the file itself.
    await recordModel(app.store, app.modelsDir, name);
    const download = `/train/models/${name}/download`;
    const res = await app.request("GET", download);
    assert.equal(res.status, 200);
    await expectStatus(app, 206, "GET", download, { headers: { range: "bytes=0-1" } });
    await expectStatus(app, 304, "GET", download, {
      headers: { "if-none-match": res.headers.get("etag")! },
    });
    await expectStatus(app, 416, "GET", download, { headers: { range: "bytes=999-" } });
    const head = await app.request("HEAD", download, { headers: { range: "bytes=0-1" } });
    assert.equal(head.status, 206);
    assert.equal(head.headers.get("content-length"), "2");
    const doc = await expectStatus(app, 200, "GET", "/openapi.json");
    const headOp = doc.paths["/train/models/{name}/download"].head;
    assert.deepEqual(
      Object.keys(headOp.responses).sort(),
      [
        ...Object.keys(doc.paths["/train/models/{name}/download"].get.responses),
      ].sort(),
    );
    assert.equal(headOp.responses["200"].content, undefined, "a HEAD answer has no body");
    await expectStatus(app, 200, "DELETE", `/train/models/${name}`);
    await expectStatus(app, 404, "GET", download);
    await expectStatus(app, 404, "DELETE", `/train/models/${name}`);
    await expectStatus(app, 200, "GET", "/metrics");
    await expectStatus(app, 200, "GET", "/docs");
    await expectStatus(app, 200, "GET", "/docs/assets/init.js");
    await expectStatus(app, 200, "GET", "/docs/assets/swagger-ui-dist/swagger-ui.css");
    const page = await expectStatus(app, 200, "GET", "/");
    const asset = /\/web\/[0-9a-z]+\/[\w.-]+\.css/.exec(String(page))?.[0];
    assert.ok(asset, "the page names its stylesheet");
    await expectStatus(app, 200, "GET", asset);
  });

  await t.step("the main error statuses", async () => {
    await expectStatus(app, 400, "POST", "/train");
    await expectStatus(app, 400, "POST", "/train", {
      body: "{",
      headers: { "content-type": "application/json" },
    });
    await expectStatus(app, 404, "GET", `/train/status/${MISSING}`);
    await expectStatus(app, 404, "GET", `/train/logs/${MISSING}`);
    await expectStatus(app, 404, "POST", "/train/svm");
    await expectStatus(app, 404, "GET", "/nothing/here");
    await expectStatus(app, 404, "GET", "/docs/assets/swagger-ui-dist/package.json");
    await expectStatus(app, 405, "PUT", "/train/jobs");
    await expectStatus(app, 405, "POST", "/train/status/x");
    await expectStatus(app, 409, "POST", "/train", {
      json: { model_type: "ok", use_cv: false },
      headers: { "idempotency-key": "k-1" },
    });
    await expectStatus(app, 413, "POST", "/train", { json: { model_type: "x".repeat(70_000) } });
    await expectStatus(app, 415, "POST", "/train/ok", {
      body: "{}",
      headers: { "content-type": "text/plain" },
    });
    await expectStatus(app, 422, "GET", "/train/jobs?limit=0");
    await expectStatus(app, 422, "GET", "/train/models/available?limit=0");
    await expectStatus(app, 422, "GET", `/train/job/${ids.ok}/events?after=-1`);
    await expectStatus(app, 422, "POST", "/train", { json: { model_type: "svm" } });
    await expectStatus(app, 422, "POST", "/train/ok", { json: { epochs: 1 } });
  });

  await t.step("503 while shutting down, from every kind of route", async () => {
    app.lifecycle.shuttingDown = true;
    try {
      await expectStatus(app, 503, "GET", "/health");
      await expectStatus(app, 503, "GET", "/train/jobs");
      await expectStatus(app, 503, "POST", "/train/ok");
      await expectStatus(app, 503, "GET", "/openapi.json");
    } finally {
      app.lifecycle.shuttingDown = false;
    }
  });

  await t.step("the run reached every documented operation", async () => {
    const checker = await checkerFor(app.app);
    const reached = new Set([...checker.seen].map((s) => s.split(" ").slice(0, 2).join(" ")));
    for (const [path, item] of Object.entries(checker.doc.paths)) {
      for (const method of Object.keys(item as object)) {
        const op = `${method.toUpperCase()} ${path}`;
        assert.ok(reached.has(op), `${op} was not exercised: ${[...reached].join(", ")}`);
      }
    }
  });
});

Deno.test("401 answers conform too, and the docs stay open with API_TOKEN", async () => {
  await using app = await buildApp({ apiToken: "s3cret" });
  await expectStatus(app, 401, "GET", "/train/jobs");
  await expectStatus(app, 401, "POST", "/train/xgboost");
  await expectStatus(app, 401, "GET", "/metrics");
  await expectStatus(app, 200, "GET", "/openapi.json");
  await expectStatus(app, 200, "GET", "/docs");
  await expectStatus(app, 200, "GET", "/docs/assets/swagger-ui-dist/swagger-ui-bundle.js");
  await expectStatus(app, 200, "GET", "/train/jobs", {
    headers: { authorization: "Bearer s3cret" },
  });
});

Deno.test("/docs is Swagger UI with every asset served by the app", async () => {
  await using app = await buildApp();
  const page = await app.app.request("/docs");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  const html = await page.text();
  assert.ok(html.includes('id="swagger-ui"'), html);
  assert.doesNotMatch(html, /https?:\/\//, "the page names no other host");
  const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
  const expected: Record<string, RegExp> = {
    "/docs/assets/swagger-ui-dist/swagger-ui.css": /^text\/css/,
    "/docs/assets/swagger-ui-dist/swagger-ui-bundle.js": /^text\/javascript/,
    "/docs/assets/init.js": /^text\/javascript/,
  };
  assert.deepEqual(assets.toSorted(), Object.keys(expected).toSorted());
  for (const [path, type] of Object.entries(expected)) {
    const res = await app.app.request(path);
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get("content-type") ?? "", type, path);
    const text = await res.text();
    if (path.endsWith("bundle.js")) {
      // The real bundle, not a loader that would fetch it from elsewhere.
      assert.ok(text.length > 500_000, `${path}: ${text.length} bytes`);
      assert.ok(text.includes("SwaggerUIBundle"), path);
    }
    if (path.endsWith("init.js")) assert.match(text, /url: "\/openapi\.json"/);
  }
  for (const path of ["/docs/assets/swagger-ui-dist/..%2F..%2Fdeno.json", "/docs/assets/x"]) {
    assert.equal((await app.app.request(path)).status, 404, path);
  }
});
