/**
 * Cross-site requests and DNS rebinding: a page on another origin cannot change anything,
 * and on a loopback bind only loopback Host names (and ALLOWED_HOSTS) are answered.
 */
import assert from "node:assert/strict";
import { ConfigError, hostPart, loadConfig } from "../config.ts";
import { type AppOptions, buildApp, type TestApp } from "./helpers/app.ts";

const REGISTRY: AppOptions["registry"] = { noop: { command: ["/bin/true"] } };
const EVIL = "https://evil.example";

async function jobCount(app: TestApp): Promise<number> {
  const res = await app.request("GET", "/train/jobs");
  assert.equal(res.status, 200);
  return res.body.total_count;
}

Deno.test("a page from another origin cannot change anything", async (t) => {
  await using app = await buildApp({ registry: REGISTRY });

  await t.step("POST without a body is refused with 403 naming CORS_ORIGINS", async () => {
    const res = await app.request("POST", "/train/noop", { headers: { origin: EVIL } });
    assert.equal(res.status, 403);
    assert.equal(res.body.status, "error");
    assert.match(res.body.message, /https:\/\/evil\.example/);
    assert.match(res.body.message, /CORS_ORIGINS/);
  });

  await t.step("POST with a text/plain body is refused", async () => {
    const res = await app.request("POST", "/train", {
      headers: { origin: EVIL, "content-type": "text/plain" },
      body: JSON.stringify({ model_type: "noop" }),
    });
    assert.equal(res.status, 403);
  });

  await t.step("POST with a JSON body, PUT and PATCH are refused", async () => {
    for (const method of ["POST", "PUT", "PATCH"]) {
      const res = await app.request(method, "/train", {
        headers: { origin: EVIL },
        json: { model_type: "noop" },
      });
      assert.equal(res.status, 403, method);
    }
  });

  await t.step("an opaque origin (null) is refused", async () => {
    const res = await app.request("POST", "/train/noop", { headers: { origin: "null" } });
    assert.equal(res.status, 403);
  });

  await t.step("no job was created by any of them", async () => {
    assert.equal(await jobCount(app), 0);
  });

  await t.step("without an Origin (curl, scripts) a POST still starts a job", async () => {
    const res = await app.request("POST", "/train/noop");
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(await jobCount(app), 1);
  });

  await t.step("the server's own origin may POST", async () => {
    const res = await app.request("POST", "/train/noop", {
      headers: { origin: "http://localhost", "content-type": "text/plain" },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  });

  await t.step("DELETE from another origin is refused and cancels nothing", async () => {
    const id = (await app.request("POST", "/train/noop")).body.data.job_id;
    const res = await app.request("DELETE", `/train/job/${id}`, { headers: { origin: EVIL } });
    assert.equal(res.status, 403);
    const status = await app.request("GET", `/train/status/${id}`);
    assert.equal(status.body.data.cancelled_at, null);
  });

  await t.step("reads are not state-changing and are answered", async () => {
    const res = await app.request("GET", "/train/jobs", { headers: { origin: EVIL } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), null, "no CORS read access");
  });
});

Deno.test("CORS_ORIGINS lets listed pages change things; * lets any", async (t) => {
  await t.step("a listed origin may POST, another may not", async () => {
    await using app = await buildApp({ registry: REGISTRY, corsOrigins: "https://ui.example" });
    const ok = await app.request("POST", "/train/noop", {
      headers: { origin: "https://ui.example" },
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const refused = await app.request("POST", "/train/noop", { headers: { origin: EVIL } });
    assert.equal(refused.status, 403);
  });

  await t.step("* allows any origin", async () => {
    await using app = await buildApp({ registry: REGISTRY, corsOrigins: "*" });
    const res = await app.request("POST", "/train/noop", { headers: { origin: EVIL } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  });
});

Deno.test("on a loopback bind only loopback Host names are answered", async (t) => {
  await using app = await buildApp({ registry: REGISTRY });

  await t.step("a rebound name is refused with 421 on every path", async () => {
    for (const [method, path] of [["GET", "/health"], ["GET", "/train/jobs"]]) {
      const res = await app.request(method, path, { headers: { host: "attacker.example" } });
      assert.equal(res.status, 421, path);
      assert.match(res.body.message, /attacker\.example/);
      assert.match(res.body.message, /ALLOWED_HOSTS/);
      assert.equal(res.body.database, undefined, "nothing of /health leaks");
    }
    const post = await app.request("POST", "/train/noop", {
      headers: { host: "attacker.example:8000" },
    });
    assert.equal(post.status, 421);
    assert.equal(await jobCount(app), 0);
  });

  await t.step("names that only look like loopback are refused", async () => {
    for (const host of ["127.0.0.1.nip.io", "localhost.attacker.example", "[::2]", "0.0.0.0"]) {
      const res = await app.request("GET", "/health", { headers: { host } });
      assert.equal(res.status, 421, host);
    }
  });

  await t.step("loopback names pass, with any port and in any case", async () => {
    const hosts = ["localhost", "LocalHost:8000", "127.0.0.1:1", "127.8.9.10", "[::1]:8000"];
    for (const host of hosts) {
      const res = await app.request("GET", "/health", { headers: { host } });
      assert.equal(res.status, 200, host);
    }
  });
});

Deno.test("ALLOWED_HOSTS adds names; a public bind answers any Host", async (t) => {
  await t.step("an added name passes, others are still refused", async () => {
    await using app = await buildApp({ allowedHosts: ["trainer.lan"] });
    const ok = await app.request("GET", "/health", { headers: { host: "Trainer.LAN:8000" } });
    assert.equal(ok.status, 200);
    const refused = await app.request("GET", "/health", { headers: { host: "other.lan" } });
    assert.equal(refused.status, 421);
  });

  await t.step("no Host check when the bind is not loopback", async () => {
    await using app = await buildApp({ allowedHosts: null });
    const res = await app.request("GET", "/health", { headers: { host: "trainer.example" } });
    assert.equal(res.status, 200);
  });
});

Deno.test("ALLOWED_HOSTS is parsed once, normalized, and checked", () => {
  assert.equal(loadConfig({}).ALLOWED_HOSTS, undefined);
  assert.deepEqual(loadConfig({ ALLOWED_HOSTS: "Trainer.LAN,[::1]:80,box." }).ALLOWED_HOSTS, [
    "trainer.lan",
    "[::1]",
    "box",
  ]);
  for (const bad of ["http://trainer.lan", "a b", "a,,b", "*"]) {
    assert.throws(() => loadConfig({ ALLOWED_HOSTS: bad }), (e) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /ALLOWED_HOSTS/);
      return true;
    }, bad);
  }
  assert.equal(hostPart("[::1]:8000"), "[::1]");
  assert.equal(hostPart("LOCALHOST.:80"), "localhost");
});
