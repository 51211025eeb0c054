import assert from "node:assert/strict";
import { buildApp } from "./helpers/app.ts";

Deno.test("CORS: a listed origin may call the API from a web page", async (t) => {
  await using app = await buildApp({
    corsOrigins: "https://ui.example.com",
    apiToken: "s3cret",
  });

  await t.step("preflight is answered without a token", async () => {
    const res = await app.request("OPTIONS", "/train", {
      headers: {
        origin: "https://ui.example.com",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-origin"), "https://ui.example.com");
    assert.match(res.headers.get("access-control-allow-headers") ?? "", /Authorization/i);
  });

  await t.step("a real request carries the allow-origin header", async () => {
    const res = await app.request("GET", "/train/jobs", {
      headers: { origin: "https://ui.example.com", authorization: "Bearer s3cret" },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), "https://ui.example.com");
  });

  await t.step("another origin is not allowed", async () => {
    const res = await app.request("GET", "/train/jobs", {
      headers: { origin: "https://evil.example.com", authorization: "Bearer s3cret" },
    });
    assert.equal(res.headers.get("access-control-allow-origin"), null);
  });
});

Deno.test("CORS: off by default", async () => {
  await using app = await buildApp();
  const res = await app.request("GET", "/train/jobs", {
    headers: { origin: "https://ui.example.com" },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("access-control-allow-origin"), null);
});
