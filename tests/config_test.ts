/** loadConfig(): defaults, bad values naming their variable, the loopback rule. */
import assert from "node:assert/strict";
import { ConfigError, isLoopback, loadConfig, redactUrl, shownSetting } from "../config.ts";

Deno.test("defaults", () => {
  const c = loadConfig({});
  assert.deepEqual({ ...c }, {
    PORT: 8000,
    HOST: "127.0.0.1",
    DATABASE_URL: "file:data/trainer.db",
    MODELS_DIR: "data/models",
    MAX_CONCURRENT_JOBS: 2,
    CANCEL_GRACE_SECONDS: 5,
    JOB_NICE: 10,
    JOB_TIMEOUT_SECONDS: 3600,
    ALLOW_INSECURE: false,
    LOG_TAIL_LINES: 200,
    LOG_TAIL_BYTES: 65536,
    LOG_PAGE_BYTES: 4 * 1024 * 1024,
    LOG_FILES: true,
    ALLOWED_HOSTS: undefined,
    BODY_TIMEOUT_SECONDS: 10,
    DATABASE_AUTH_TOKEN: undefined,
    MODEL_REGISTRY: undefined,
    API_TOKEN: undefined,
    METRICS_TOKEN: undefined,
    TRAIN_PYTHON: undefined,
    CORS_ORIGINS: undefined,
    DATASET_PATH: undefined,
    DATASET_TARGET: undefined,
    DATASET_TASK: undefined,
    MAX_STREAMS: 256,
    SSE_PING_SECONDS: 15,
    STATUS_CACHE_MB: 8,
    WORKERS: "local",
    WORKER_TOKEN: undefined,
    ARTIFACT_STORE: undefined,
    S3_ENDPOINT: undefined,
    LEASE_SECONDS: 30,
  });
  assert.ok(Object.isFrozen(c));
  assert.deepEqual({ ...loadConfig({ PORT: "", API_TOKEN: "" }) }, { ...c }, "empty means unset");
});

Deno.test("stream settings: parsed, and bad values named", () => {
  const c = loadConfig({ MAX_STREAMS: "1000", SSE_PING_SECONDS: "0.5" });
  assert.equal(c.MAX_STREAMS, 1000);
  assert.equal(c.SSE_PING_SECONDS, 0.5);
  assert.throws(() => loadConfig({ MAX_STREAMS: "0" }), /MAX_STREAMS="0"/);
  assert.throws(() => loadConfig({ SSE_PING_SECONDS: "never" }), /SSE_PING_SECONDS="never"/);
});

Deno.test("values are parsed", () => {
  const c = loadConfig({
    PORT: "0",
    HOST: "localhost",
    DATABASE_URL: "libsql://db.example.com",
    DATABASE_AUTH_TOKEN: "t",
    MODELS_DIR: "/srv/models",
    MODEL_REGISTRY: "registry.json",
    MAX_CONCURRENT_JOBS: "8",
    CANCEL_GRACE_SECONDS: "0.5",
    JOB_TIMEOUT_SECONDS: "60",
    API_TOKEN: "secret",
    ALLOW_INSECURE: "true",
    TRAIN_PYTHON: "/usr/bin/python3",
    LOG_TAIL_LINES: "0",
    UNRELATED: "ignored",
  });
  assert.equal(c.PORT, 0);
  assert.equal(c.MAX_CONCURRENT_JOBS, 8);
  assert.equal(c.CANCEL_GRACE_SECONDS, 0.5);
  assert.equal(c.JOB_TIMEOUT_SECONDS, 60);
  assert.equal(c.ALLOW_INSECURE, true);
  assert.equal(c.LOG_TAIL_LINES, 0);
  assert.equal(c.DATABASE_URL, "libsql://db.example.com");
  assert.equal("UNRELATED" in c, false);
});

Deno.test("a bad value stops the start with a message naming the variable", async (t) => {
  const bad: [string, string][] = [
    ["PORT", "eighty"],
    ["PORT", "70000"],
    ["PORT", "80.5"],
    ["MAX_CONCURRENT_JOBS", "0"],
    ["MAX_CONCURRENT_JOBS", "many"],
    ["CANCEL_GRACE_SECONDS", "-1"],
    ["JOB_NICE", "20"],
    ["JOB_NICE", "-5"],
    ["JOB_TIMEOUT_SECONDS", "0"],
    ["LOG_TAIL_LINES", "lots"],
    ["BODY_TIMEOUT_SECONDS", "0"],
    ["ALLOW_INSECURE", "yes"],
    ["DATABASE_URL", "postgres://x"],
    ["DATABASE_URL", "data/trainer.db"],
    ["DATASET_TASK", "classify"],
  ];
  for (const [name, value] of bad) {
    await t.step(`${name}=${value}`, () => {
      assert.throws(() => loadConfig({ [name]: value }), (e) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, new RegExp(`\\b${name}=${JSON.stringify(value)}`));
        return true;
      });
    });
  }
  await t.step("DATASET_TARGET without DATASET_PATH", () => {
    assert.throws(() => loadConfig({ DATASET_TARGET: "y" }), /DATASET_TARGET=y .*DATASET_PATH/);
    assert.equal(loadConfig({ DATASET_TARGET: "y", DATASET_PATH: "d.csv" }).DATASET_TARGET, "y");
  });
  await t.step("every bad variable is named at once", () => {
    assert.throws(
      () => loadConfig({ PORT: "x", MAX_CONCURRENT_JOBS: "y" }),
      /PORT=.*\n.*MAX_CONCURRENT_JOBS=/s,
    );
  });
});

Deno.test("a non-loopback HOST needs API_TOKEN or ALLOW_INSECURE=1", async (t) => {
  await t.step("refused without either, naming both ways out", () => {
    for (const host of ["0.0.0.0", "192.168.1.20", "::", "example.com"]) {
      assert.throws(() => loadConfig({ HOST: host }), (e) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, new RegExp(`HOST=${host.replace(".", "\\.")}`));
        assert.match(e.message, /API_TOKEN/);
        assert.match(e.message, /ALLOW_INSECURE=1/);
        return true;
      });
    }
  });
  await t.step("allowed with a token or the explicit opt-out", () => {
    assert.equal(loadConfig({ HOST: "0.0.0.0", API_TOKEN: "s" }).HOST, "0.0.0.0");
    assert.equal(loadConfig({ HOST: "0.0.0.0", ALLOW_INSECURE: "1" }).ALLOW_INSECURE, true);
    assert.throws(() => loadConfig({ HOST: "0.0.0.0", ALLOW_INSECURE: "0" }), ConfigError);
  });
  await t.step("loopback addresses need nothing", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"]) {
      assert.equal(isLoopback(host), true, host);
      assert.equal(loadConfig({ HOST: host }).HOST, host);
    }
  });
  await t.step("names that only look like loopback are not", () => {
    for (
      const host of ["127.0.0.1.nip.io", "127.evil.example", "127.0.0.300", "localhost.example.com"]
    ) {
      assert.equal(isLoopback(host), false, host);
      assert.throws(() => loadConfig({ HOST: host }), ConfigError);
    }
  });
});

Deno.test("hosted mode: WORKERS=remote needs its own WORKER_TOKEN", () => {
  assert.throws(() => loadConfig({ WORKERS: "remote" }), /WORKERS=remote needs WORKER_TOKEN/);
  assert.throws(() => loadConfig({ WORKERS: "cloud" }), /WORKERS="cloud": must be local or remote/);
  // A secret is named by its length, never printed.
  assert.throws(
    () => loadConfig({ WORKER_TOKEN: "short" }),
    (e: Error) =>
      /WORKER_TOKEN \(5 characters, not shown\): must be at least 16/.test(e.message) &&
      !e.message.includes("short"),
  );
  const token = "0123456789abcdef0123";
  assert.throws(
    () => loadConfig({ WORKERS: "remote", WORKER_TOKEN: token, API_TOKEN: token }),
    /WORKER_TOKEN equals API_TOKEN/,
  );
  const c = loadConfig({ WORKERS: "remote", WORKER_TOKEN: token, LEASE_SECONDS: "5" });
  assert.equal(c.WORKERS, "remote");
  assert.equal(c.LEASE_SECONDS, 5);
  assert.throws(() => loadConfig({ LEASE_SECONDS: "0" }), /LEASE_SECONDS="0"/);
});

Deno.test("a URL's password or token is not shown in errors and logs", () => {
  assert.equal(
    redactUrl("libsql://db.example.com?authToken=s3cr3t&tls=1"),
    "libsql://db.example.com?authToken=***&tls=1",
  );
  assert.equal(redactUrl("https://me:pw@db.example.com/x"), "https://me:***@db.example.com/x");
  assert.equal(redactUrl("file:data/trainer.db"), "file:data/trainer.db");
  assert.equal(redactUrl("not a url"), "not a url");
  assert.equal(
    shownSetting("DATABASE_URL", "https://me:pw@db.example.com"),
    'DATABASE_URL="https://me:***@db.example.com/"',
  );
});
