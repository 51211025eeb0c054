/**
 * /metrics: parsed with a Prometheus text-format parser after a known workload on a real
 * server (jobs run by the supervisor thread), and its tokens and queue gauges in-process.
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { buildApp, SCRIPTS } from "./helpers/app.ts";
import { http, type Json, Server, waitTerminal, Workspace } from "./helpers/server.ts";

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8";

interface Sample {
  labels?: Record<string, string>;
  value: string;
}
interface Family {
  name: string;
  type: string;
  metrics: Sample[];
}

/**
 * The metrics by name. The parser folds a histogram's labelled series into one sample, so
 * histograms are read as untyped families of their own (`name_count`, `name_sum`,
 * `name_bucket`), each sample with its labels.
 */
function parse(text: string): Map<string, Family> {
  const untyped = text.replace(/^# TYPE (\S+) histogram$/gm, "# TYPE $1 untyped");
  const families = new Map<string, Family>();
  // prom-client writes a histogram's series one after another, so `name_count` recurs.
  for (const f of parsePrometheus(untyped) as Family[]) {
    const seen = families.get(f.name);
    if (seen) seen.metrics.push(...f.metrics);
    else families.set(f.name, f);
  }
  return families;
}

/** The one sample of `name` whose labels include `labels` (0 when there is none). */
function value(metrics: Map<string, Family>, name: string, labels: Record<string, string> = {}) {
  const base = name.replace(/_(count|sum|bucket)$/, "");
  assert.ok(metrics.has(name) || metrics.has(base), `no metric ${name}`);
  // A histogram with no observation yet has no _count series at all.
  const samples = (metrics.get(name)?.metrics ?? []).filter((s) =>
    Object.entries(labels).every(([k, v]) => s.labels?.[k] === v)
  );
  assert.ok(samples.length <= 1, `${name} ${JSON.stringify(labels)}: ${samples.length} series`);
  const s = samples[0];
  if (!s) return 0;
  return Number(s.value);
}

async function scrape(base: string, token: string): Promise<string> {
  const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), TEXT_FORMAT);
  return await res.text();
}

/** Bytes of a job's log as stored: UTF-8, one newline per line. */
async function logBytes(base: string, id: string): Promise<number> {
  const r = await http(base, "GET", `/train/logs/${id}?limit=1000`);
  const lines: string[] = r.body.entries.flatMap((e: Json) => e.lines);
  return lines.reduce((n, l) => n + new TextEncoder().encode(l).length + 1, 0);
}

Deno.test("metrics after a known workload on a real server", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const ok = ["/bin/sh", await ws.write("ok.sh", SCRIPTS["ok.sh"])];
    const broken = ["/bin/sh", await ws.write("fail.sh", SCRIPTS["fail.sh"])];
    // The built-in types (which "all" runs) become trivial scripts: two pass, one fails.
    const registry = await ws.registry({
      "neural-net": ok,
      xgboost: ok,
      "random-forest": broken,
    });
    server = await Server.start(ws.env({ ...registry, METRICS_TOKEN: "scrape-me" }));
    const base = server.base;
    const ids: string[] = [];

    await t.step("3 completed and 1 failed job show as such", async () => {
      for (const type of ["xgboost", "xgboost", "random-forest", "xgboost"]) {
        const r = await http(base, "POST", `/train/${type}`, { retrain: true });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        ids.push(r.body.data.job_id);
      }
      for (const id of ids) await waitTerminal(base, id);
      const text = await scrape(base, "scrape-me");
      const m = parse(text);
      for (const [status, n] of Object.entries({ completed: 3, failed: 1, running: 0 })) {
        assert.equal(value(m, "trainer_jobs", { status }), n, status);
      }
      assert.equal(value(m, "trainer_jobs", { status: "started" }), 0);
      assert.equal(value(m, "trainer_jobs_submitted_total", { model_type: "xgboost" }), 3);
      assert.equal(value(m, "trainer_jobs_submitted_total", { model_type: "random-forest" }), 1);
      const finished = (model_type: string, outcome: string) =>
        value(m, "trainer_jobs_finished_total", { model_type, outcome });
      assert.equal(finished("xgboost", "completed"), 3);
      assert.equal(finished("random-forest", "failed"), 1);
      assert.equal(finished("xgboost", "failed"), 0);
      const waited = (model_type: string) =>
        value(m, "trainer_job_queue_wait_seconds_count", { model_type });
      assert.equal(waited("xgboost"), 3, text);
      assert.equal(waited("random-forest"), 1);
      assert.equal(value(m, "trainer_job_duration_seconds_count", { outcome: "completed" }), 3);
      assert.equal(value(m, "trainer_job_duration_seconds_count", { outcome: "failed" }), 1);
      const sums = m.get("trainer_job_duration_seconds_sum")!.metrics;
      assert.ok(sums.every((s) => +s.value >= 0 && +s.value < 60), JSON.stringify(sums));
      assert.equal(value(m, "trainer_queue_depth"), 0);
      assert.equal(value(m, "trainer_oldest_queued_job_age_seconds"), 0);
      assert.equal(value(m, "trainer_sse_connections"), 0);
      const logged = m.get("trainer_log_bytes_total")!.metrics.reduce((n, s) => n + +s.value, 0);
      let expected = 0;
      for (const id of ids) expected += await logBytes(base, id);
      assert.ok(expected > 0);
      assert.equal(logged, expected);
      assert.equal(
        value(m, "trainer_http_requests_total", {
          method: "POST",
          route: "/train/:model_type",
          status: "200",
        }),
        4,
      );
      assert.ok(value(m, "process_cpu_seconds_total") > 0, "process metrics");
      assert.ok(value(m, "process_resident_memory_bytes") > 0, "process metrics");
    });

    await t.step('"all" counts once for itself and once per child', async () => {
      const r = await http(base, "POST", "/train", { model_type: "all", retrain: true });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const parent = await waitTerminal(base, r.body.job_id);
      assert.equal(parent.status, "failed");
      const outcomes = Object.fromEntries(
        parent.children.map((c: Json) => [c.model_type, c.status]),
      );
      assert.deepEqual(outcomes, {
        "neural-net": "completed",
        xgboost: "completed",
        "random-forest": "failed",
      }, JSON.stringify(parent.children));
      const m = parse(await scrape(base, "scrape-me"));
      assert.equal(value(m, "trainer_jobs_submitted_total", { model_type: "all" }), 1);
      assert.equal(value(m, "trainer_jobs_submitted_total", { model_type: "xgboost" }), 4);
      const finished = (model_type: string, outcome: string) =>
        value(m, "trainer_jobs_finished_total", { model_type, outcome });
      assert.equal(finished("all", "failed"), 1);
      assert.equal(finished("xgboost", "completed"), 4);
      assert.equal(finished("random-forest", "failed"), 2);
      assert.equal(finished("neural-net", "completed"), 1);
      assert.equal(value(m, "trainer_jobs", { status: "failed" }), 3);
      assert.equal(value(m, "trainer_jobs", { status: "completed" }), 5);
    });

    await t.step("no label is a job id or a raw path", async () => {
      await http(base, "GET", `/train/status/${ids[0]}`);
      await http(base, "GET", `/no/such/${ids[0]}`);
      const text = await scrape(base, "scrape-me");
      assert.doesNotMatch(text, UUID);
      const m = parse(text);
      const routes = m.get("trainer_http_requests_total")!.metrics.map((s) => s.labels!.route);
      assert.ok(routes.includes("/train/status/:job_id"), routes.join(", "));
      assert.ok(routes.includes("unmatched"), routes.join(", "));
    });

    await t.step("METRICS_TOKEN is required by /metrics, and opens nothing else", async () => {
      assert.equal((await http(base, "GET", "/metrics")).status, 401);
      const wrong = await http(base, "GET", "/metrics", undefined, { authorization: "Bearer x" });
      assert.equal(wrong.status, 401);
      assert.match(wrong.body.message, /not valid/);
      // With API_TOKEN unset the API itself stays open.
      assert.equal((await http(base, "GET", "/train/jobs")).status, 200);
    });
  } finally {
    await server?.kill("SIGTERM");
    await ws.dispose();
  }
});

Deno.test("/metrics tokens and queue gauges", async (t) => {
  await using app = await buildApp({ apiToken: "api", metricsToken: "scrape" });
  const as = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

  await t.step(
    "API_TOKEN or METRICS_TOKEN opens /metrics; METRICS_TOKEN nothing else",
    async () => {
      const missing = await app.request("GET", "/metrics");
      assert.equal(missing.status, 401);
      assert.match(missing.body.message, /API_TOKEN or METRICS_TOKEN/);
      assert.equal((await app.request("GET", "/metrics", as("api"))).status, 200);
      assert.equal((await app.request("GET", "/metrics", as("scrape"))).status, 200);
      assert.equal((await app.request("GET", "/train/jobs", as("scrape"))).status, 401);
      assert.equal((await app.request("POST", "/train/ok", as("scrape"))).status, 401);
    },
  );

  await t.step("answers of the middleware count under the route they were meant for", async () => {
    assert.equal((await app.request("PUT", "/train/jobs", as("api"))).status, 405);
    const m = parse((await app.request("GET", "/metrics", as("api"))).body);
    const requests = (method: string, route: string, status: string) =>
      value(m, "trainer_http_requests_total", { method, route, status });
    assert.equal(requests("GET", "/train/jobs", "401"), 1);
    assert.equal(requests("POST", "/train/:model_type", "401"), 1);
    assert.equal(requests("GET", "/metrics", "401"), 1);
    assert.equal(requests("GET", "/metrics", "200"), 2);
    assert.equal(requests("PUT", "/train/jobs", "405"), 1);
  });

  await t.step("jobs waiting for a slot: depth and the oldest one's age", async () => {
    // No supervisor: submitted jobs wait.
    for (let i = 0; i < 2; i++) {
      assert.equal((await app.request("POST", "/train/xgboost", as("api"))).status, 200);
    }
    const all = await app.request("POST", "/train", { json: { model_type: "all" }, ...as("api") });
    await new Promise((r) => setTimeout(r, 30));
    const m = parse((await app.request("GET", "/metrics", as("scrape"))).body);
    // The parent of "all" waits for nothing itself: its three children do.
    assert.equal(value(m, "trainer_queue_depth"), 5);
    assert.equal(value(m, "trainer_jobs", { status: "started" }), 6);
    const age = value(m, "trainer_oldest_queued_job_age_seconds");
    assert.ok(age >= 0.03 && age < 60, String(age));

    assert.equal(
      (await app.request("DELETE", `/train/job/${all.body.job_id}`, as("api"))).status,
      200,
    );
    const after = parse((await app.request("GET", "/metrics", as("api"))).body);
    assert.equal(value(after, "trainer_queue_depth"), 2);
    assert.equal(value(after, "trainer_jobs", { status: "cancelled" }), 4);
    // A cancelled parent counts once, by its own event, not again when its children follow.
    assert.equal(value(after, "trainer_jobs_finished_total", { model_type: "all" }), 1);
    assert.equal(
      value(after, "trainer_jobs_finished_total", { model_type: "xgboost", outcome: "cancelled" }),
      1,
    );
    assert.equal(value(after, "trainer_job_duration_seconds_count", { model_type: "xgboost" }), 0);
  });
});
