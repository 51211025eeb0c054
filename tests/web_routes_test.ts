import assert from "node:assert/strict";
import { buildApp } from "./helpers/app.ts";

Deno.test("dashboard: the page and its assets are served with types and a strict CSP", async (t) => {
  await using app = await buildApp({ apiToken: "s3cret" });

  await t.step("GET / is the page, without a token even when API_TOKEN is set", async () => {
    const res = await app.request("GET", "/");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe|\*|https?:/, "only 'self' and 'none' are allowed");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.equal(res.headers.get("cache-control"), "no-cache");
    assert.match(res.body, /<script type="module" src="\/web\/[0-9a-f]{8}\/app.js">/);
    assert.doesNotMatch(res.body, /<script>|<style|style=/, "no inline script or style");
  });

  const page = await app.request("GET", "/");
  const web = /src="(\/web\/[0-9a-f]{8}\/)app.js"/.exec(page.body)![1];

  await t.step("scripts, styles and the icon have their content types", async () => {
    for (
      const [path, type] of [
        ["app.js", "text/javascript; charset=utf-8"],
        ["sse.js", "text/javascript; charset=utf-8"],
        ["style.css", "text/css; charset=utf-8"],
        ["icon.svg", "image/svg+xml"],
      ]
    ) {
      const res = await app.request("GET", web + path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("content-type"), type, path);
      assert.ok(res.headers.get("content-security-policy"), path);
    }
  });

  await t.step("assets of this version are kept for good; of another, revalidated", async () => {
    const now = await app.request("GET", `${web}app.js`);
    assert.match(now.headers.get("cache-control") ?? "", /immutable/);
    const old = await app.request("GET", "/web/00000000/app.js");
    assert.equal(old.status, 200);
    assert.equal(old.headers.get("cache-control"), "no-cache");
  });

  await t.step("unknown assets and paths outside web/static are 404", async () => {
    for (
      const path of [`${web}nope.js`, `${web}..%2Froutes.ts`, `${web}index.html`]
    ) {
      const res = await app.request("GET", path);
      assert.equal(res.status, 404, path);
      assert.equal(res.body.status, "error");
    }
  });

  await t.step("the API itself still needs the token", async () => {
    assert.equal((await app.request("GET", "/train/jobs")).status, 401);
  });
});

Deno.test("dashboard: model types carry the API's hyperparameter limits", async () => {
  await using app = await buildApp();
  const page = await app.request("GET", "/");
  const web = /src="(\/web\/[0-9a-f]{8}\/)app.js"/.exec(page.body)![1];
  const res = await app.request("GET", `${web}model-types.json`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  const xgb = res.body.model_types.find((t: { name: string }) => t.name === "xgboost");
  const depth = xgb.hyperparameters.properties.max_depth;
  assert.deepEqual([depth.type, depth.minimum, depth.maximum, depth.default], [
    "integer",
    1,
    20,
    6,
  ]);
  assert.equal(xgb.hyperparameters.additionalProperties, false);
});
