/**
 * Hosted mode's leases through the /worker routes of the real app, on a real libSQL file,
 * with a hand-moved clock: claim order and fencing, output offsets, heartbeats, the reaper,
 * re-registration, and the token split. Every test ends by checking that the projection
 * equals a replay of the log.
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { exitReport } from "./helpers/jobs.ts";
import {
  API_TOKEN,
  assertProjectionIsReplay,
  type Hosted,
  hostedApp,
  type Json,
  LEASE_MS,
  logLines,
  startInfo,
  WORKER_TOKEN,
} from "./helpers/hosted_app.ts";
import { cancelJob } from "../jobs/service.ts";
import { buildApp } from "./helpers/app.ts";

/** The fence of a claimed job, as its reports carry it. */
function fence(c: Json) {
  return { attempt: c.attempt, lease_token: c.lease_token };
}

async function started(h: Hosted, workerId: string, c: Json) {
  const r = await h.post(`jobs/${c.job.job_id}/started`, {
    ...fence(c),
    process: startInfo(workerId),
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

function assertLost(r: { status: number; body: Json }, code = "lease_lost") {
  assert.equal(r.status, 409, JSON.stringify(r.body));
  assert.equal(r.body.details[0].code, code);
}

Deno.test("claim: oldest first, only the worker's types, at most max, never twice", async (t) => {
  await using h = await hostedApp();
  const a: string[] = [];
  let b = "";
  for (const type of ["alpha", "beta", "alpha", "alpha", "alpha"]) {
    const id = await h.submit(type);
    if (type === "beta") b = id;
    else a.push(id);
  }
  const w1 = await h.register("w1", ["alpha"]);

  await t.step("the first claim takes the two oldest waiting jobs of its types", async () => {
    const jobs = await h.claim(w1, "c1", 2);
    assert.deepEqual(jobs.map((j: Json) => j.job.job_id), a.slice(0, 2));
    for (const j of jobs) {
      assert.equal(j.attempt, 1);
      assert.match(j.lease_token, /^[0-9a-f]{32}$/);
      assert.equal(j.lease_expires_at, h.time.iso(LEASE_MS));
    }
    assert.notEqual(jobs[0].lease_token, jobs[1].lease_token);
  });

  await t.step("the same claim_id answers the same jobs and tokens", async () => {
    const first = await h.leases.claim(w1, "c1", 2);
    const again = await h.claim(w1, "c1", 2);
    assert.deepEqual(
      again.map((j: Json) => [j.job.job_id, j.lease_token]),
      first.map((j) => [j.job.job_id, j.lease_token]),
    );
  });

  await t.step("a new claim_id takes the next ones; then none of its types wait", async () => {
    const next = await h.claim(w1, "c2", 5);
    assert.deepEqual(next.map((j: Json) => j.job.job_id), a.slice(2));
    assert.deepEqual(await h.claim(w1, "c3", 5), []);
  });

  await t.step("another worker gets only what is not leased", async () => {
    const w2 = await h.register("w2", ["alpha", "beta"]);
    const jobs = await h.claim(w2, "c1", 5);
    assert.deepEqual(jobs.map((j: Json) => j.job.job_id), [b]);
  });

  await t.step("racing claims lease each job once", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 30; i++) ids.add(await h.submit("gamma"));
    const workers: string[] = [];
    for (let i = 0; i < 4; i++) workers.push(await h.register(`g${i}`, ["gamma"]));
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => h.claim(workers[i % 4], `race-${i}`, 4)),
    );
    const got = answers.flat().map((j: Json) => j.job.job_id);
    assert.equal(got.length, 30, "every job is claimed");
    assert.deepEqual(new Set(got), ids);
    const rs = await h.database.client.execute(
      "SELECT job_id, count(*) AS n FROM leases WHERE active = 1 GROUP BY job_id HAVING n > 1",
    );
    assert.equal(rs.rows.length, 0, "no job holds two active leases");
  });

  await assertProjectionIsReplay(h.database);
});

Deno.test("reports are fenced by attempt and lease token", async () => {
  await using h = await hostedApp();
  const id = await h.submit("alpha");
  const w = await h.register("w", ["alpha"]);
  const [c] = await h.claim(w, "c", 1);
  const path = (what: string) => `jobs/${id}/${what}`;
  const wrong = [
    { attempt: 1, lease_token: "0".repeat(32) },
    { attempt: 2, lease_token: c.lease_token },
  ];
  for (const f of wrong) {
    assertLost(await h.post(path("started"), { ...f, process: startInfo(w) }));
  }
  assert.equal((await h.job(id)).version, 1, "a refused report adds no event");

  assert.deepEqual(await started(h, w, c), { cancelled: false });
  let job = await h.job(id);
  assert.equal(job.status, "running");
  assert.equal(job.attempt, 1);

  for (const f of wrong) {
    assertLost(await h.post(path("output"), { ...f, offset: 0, events: logLines(0, 1) }));
    assertLost(await h.post(path("exit"), { ...f, report: exitReport() }));
  }
  const out = await h.post(path("output"), { ...fence(c), offset: 0, events: logLines(0, 2) });
  assert.deepEqual([out.status, out.body], [200, { next_offset: 2 }]);
  const exit = await h.post(path("exit"), { ...fence(c), report: exitReport() });
  assert.deepEqual([exit.status, exit.body], [200, { ok: true }]);
  job = await h.job(id);
  assert.equal(job.status, "completed");
  assert.equal(job.log_lines, 2);

  // The exit ended the lease: nothing more is taken on it. The same exit sent again (its
  // answer was lost) is answered as done, and adds nothing.
  const before = (await h.events(id)).length;
  assertLost(await h.post(path("output"), { ...fence(c), offset: 2, events: logLines(2, 1) }));
  const again = await h.post(path("exit"), { ...fence(c), report: exitReport() });
  assert.deepEqual([again.status, again.body], [200, { ok: true }]);
  assertLost(await h.post(path("started"), { ...fence(c), process: startInfo(w) }));
  assert.equal((await h.events(id)).length, before);
  await assertProjectionIsReplay(h.database);
});

Deno.test("output offsets: a resent chunk is stored once, a gap is refused", async (t) => {
  await using h = await hostedApp();
  const id = await h.submit("alpha");
  const w = await h.register("w", ["alpha"]);
  const [c] = await h.claim(w, "c", 1);
  await started(h, w, c);
  const send = (offset: number, events: Json[]) =>
    h.post(`jobs/${id}/output`, { ...fence(c), offset, events });
  const lines = async () =>
    (await h.events(id)).filter((e) => e.type === "log").flatMap((e) => e.data.lines);
  const expected = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}`);

  await t.step("a chunk, then the same chunk again", async () => {
    assert.deepEqual((await send(0, logLines(0, 3))).body, { next_offset: 3 });
    assert.deepEqual((await send(0, logLines(0, 3))).body, { next_offset: 3 });
    assert.deepEqual(await lines(), expected(3));
    assert.equal((await h.job(id)).log_lines, 3);
  });

  await t.step("a partly overlapping chunk stores only its new events", async () => {
    assert.deepEqual((await send(1, logLines(1, 4))).body, { next_offset: 5 });
    assert.deepEqual(await lines(), expected(5));
    assert.equal((await h.job(id)).log_lines, 5);
  });

  await t.step("a gap is refused with the offset to send from", async () => {
    const r = await send(7, logLines(7, 1));
    assertLost(r, "offset_gap");
    assert.equal(r.body.details[0].expected_offset, 5);
    assert.deepEqual(await lines(), expected(5));
  });

  await t.step("a chunk resent while the first send is in flight is stored once", async () => {
    const answers = await Promise.all([send(5, logLines(5, 2)), send(5, logLines(5, 2))]);
    for (const a of answers) assert.deepEqual([a.status, a.body], [200, { next_offset: 7 }]);
    assert.deepEqual(await lines(), expected(7));
    assert.equal((await h.job(id)).log_lines, 7);
  });

  await assertProjectionIsReplay(h.database);
});

Deno.test("heartbeat: extends the lease, reports a cancel, and a lost lease", async (t) => {
  await using h = await hostedApp();
  const id = await h.submit("alpha");
  const other = await h.submit("alpha");
  const w = await h.register("w", ["alpha"]);
  const [c, d] = await h.claim(w, "c", 2);
  await started(h, w, c);
  await started(h, w, d);
  const beat = async (...cs: Json[]) => {
    const r = await h.post("heartbeat", {
      worker_id: w,
      leases: cs.map((x) => ({ job_id: x.job.job_id, ...fence(x) })),
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.jobs;
  };

  await t.step("a heartbeat moves the expiry: past the old one nothing is reaped", async () => {
    h.time.advance(LEASE_MS * 2 / 3);
    assert.deepEqual(await beat(c), [{ job_id: id, cancel_requested: false, lost: false }]);
    h.time.advance(LEASE_MS * 2 / 3);
    // `d` had no heartbeat: its lease is past its expiry, `c`'s is not.
    assert.deepEqual(await beat(c, d), [
      { job_id: id, cancel_requested: false, lost: false },
      { job_id: other, cancel_requested: false, lost: true },
    ]);
    assert.equal(await h.leases.reap(), 1);
    assert.equal((await h.job(id)).status, "running");
    assert.equal((await h.job(other)).failure_reason, "worker_lost");
    const out = await h.post(`jobs/${id}/output`, { ...fence(c), offset: 0, events: [] });
    assert.equal(out.status, 200, "the extended lease still holds");
  });

  await t.step("a user's cancel reaches the worker on its next heartbeat", async () => {
    await cancelJob(h.jobs, id, "user asked");
    assert.deepEqual(await beat(c), [{ job_id: id, cancel_requested: true, lost: false }]);
    const exit = await h.post(`jobs/${id}/exit`, {
      ...fence(c),
      report: exitReport({ exit_code: null, signal: "SIGTERM", stopped_for: "cancel" }),
    });
    assert.equal(exit.status, 200);
    const job = await h.job(id);
    assert.equal(job.status, "cancelled");
    assert.equal(job.process?.alive, false);
  });

  await t.step("after the exit the lease is gone", async () => {
    assert.deepEqual(await beat(c), [{ job_id: id, cancel_requested: false, lost: true }]);
  });

  await assertProjectionIsReplay(h.database);
});

Deno.test("reaper: a lost worker's job fails, or waits again while attempts remain", async (t) => {
  await using h = await hostedApp();
  const w = await h.register("gpu-1", ["alpha"]);
  const beat = (c: Json) =>
    h.post("heartbeat", { worker_id: w, leases: [{ job_id: c.job.job_id, ...fence(c) }] });

  await t.step("one attempt: failed with worker_lost and the evidence", async () => {
    const id = await h.submit("alpha");
    const [c] = await h.claim(w, "one", 1);
    await started(h, w, c);
    h.time.advance(10_000);
    const heardAt = h.time.iso();
    assert.equal((await beat(c)).status, 200);
    h.time.advance(LEASE_MS - 1);
    assert.equal(await h.leases.reap(), 0, "not before the lease ends");
    h.time.advance(1);
    assert.equal(await h.leases.reap(), 1);
    const job = await h.job(id);
    assert.equal(job.status, "failed");
    assert.equal(job.failure_reason, "worker_lost");
    assert.match(job.error!, /gpu-1/);
    const failed = (await h.events(id)).at(-1)!;
    assert.equal(failed.type, "failed");
    assert.deepEqual(failed.data.evidence, {
      worker_id: w,
      worker_name: "gpu-1",
      last_heartbeat: heardAt,
      lease_expired_at: h.time.iso(),
      attempt: 1,
      max_attempts: 1,
    });

    const count = (await h.events(id)).length;
    assertLost(await h.post(`jobs/${id}/output`, { ...fence(c), offset: 0, events: [] }));
    assertLost(await h.post(`jobs/${id}/exit`, { ...fence(c), report: exitReport() }));
    assertLost(await h.post(`jobs/${id}/fail`, { ...fence(c), reason: "killed", error: "x" }));
    assert.equal(await h.leases.reap(), 0);
    assert.equal((await h.events(id)).length, count, "a stale report adds no event");
  });

  await t.step("two attempts: requeued, claimed again as attempt 2, attempt 1 fenced", async () => {
    const id = await h.submit("alpha", { maxAttempts: 2 });
    const [c1] = await h.claim(w, "two-1", 1);
    await started(h, w, c1);
    h.time.advance(LEASE_MS);
    assert.equal(await h.leases.reap(), 1);
    let job = await h.job(id);
    assert.equal(job.status, "started");
    assert.equal(job.process, null);
    assert.equal(job.attempt, 1);
    const requeued = (await h.events(id)).at(-1)!;
    assert.equal(requeued.type, "requeued");
    assert.equal(requeued.data.attempt, 1);
    assert.equal(requeued.data.worker_name, "gpu-1");

    const w2 = await h.register("gpu-2", ["alpha"]);
    const [c2] = await h.claim(w2, "two-2", 1);
    assert.equal(c2.job.job_id, id);
    assert.equal(c2.attempt, 2);
    assert.notEqual(c2.lease_token, c1.lease_token);

    const count = (await h.events(id)).length;
    assertLost(
      await h.post(`jobs/${id}/started`, { ...fence(c1), process: startInfo(w, 1) }),
    );
    assertLost(await h.post(`jobs/${id}/output`, { ...fence(c1), offset: 0, events: [] }));
    assertLost(await h.post(`jobs/${id}/exit`, { ...fence(c1), report: exitReport() }));
    assert.equal((await h.events(id)).length, count);

    await started(h, w2, c2);
    job = await h.job(id);
    assert.equal(job.status, "running");
    assert.equal(job.attempt, 2);
    const exit = await h.post(`jobs/${id}/exit`, { ...fence(c2), report: exitReport() });
    assert.equal(exit.status, 200);
    assert.equal((await h.job(id)).status, "completed");
  });

  await t.step("two attempts both lost: failed on the second", async () => {
    const id = await h.submit("alpha", { maxAttempts: 2 });
    for (const claimId of ["lost-1", "lost-2"]) {
      const [c] = await h.claim(w, claimId, 1);
      assert.equal(c.job.job_id, id);
      await started(h, w, c);
      h.time.advance(LEASE_MS);
      assert.equal(await h.leases.reap(), 1);
    }
    const job = await h.job(id);
    assert.equal(job.status, "failed");
    assert.equal(job.failure_reason, "worker_lost");
    assert.deepEqual(
      (await h.events(id)).map((e) => e.type),
      ["submitted", "started", "requeued", "started", "failed"],
    );
  });

  await t.step("a lease that expires before its job started uses no attempt", async () => {
    const id = await h.submit("alpha");
    const [c] = await h.claim(w, "never-started", 1);
    assert.equal(c.job.job_id, id);
    h.time.advance(LEASE_MS);
    assert.equal(await h.leases.reap(), 1);
    const job = await h.job(id);
    assert.equal(job.status, "started", "it waits again, with its one attempt");
    assert.deepEqual((await h.events(id)).map((e) => e.type), ["submitted"]);
    assertLost(await h.post(`jobs/${id}/started`, { ...fence(c), process: startInfo(w, 1) }));
    const [again] = await h.claim(w, "second-claim", 1);
    assert.deepEqual([again.job.job_id, again.attempt], [id, 1]);
    assert.notEqual(again.lease_token, c.lease_token);
    await started(h, w, again);
    assert.equal((await h.job(id)).status, "running");
  });

  await assertProjectionIsReplay(h.database);
});

Deno.test("a worker's graceful stop: requeued while attempts remain; claims given back", async (t) => {
  await using h = await hostedApp();
  const w = await h.register("spot-1", ["alpha"]);
  const shutdownExit = exitReport({
    exit_code: null,
    signal: "SIGTERM",
    artifact: null,
    stopped_for: "shutdown",
    stopped_with: "SIGTERM",
  });
  const startAs = async (workerId: string, c: Json) => {
    const r = await h.post(`jobs/${c.job.job_id}/started`, {
      ...fence(c),
      process: { ...startInfo(workerId), worker_name: "spot-1" },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  };

  await t.step("attempt 1 of 2 stopped by its worker's shutdown waits again", async () => {
    const id = await h.submit("alpha", { maxAttempts: 2 });
    const [c1] = await h.claim(w, "spot-a", 1);
    await startAs(w, c1);
    // The script's own answer to SIGTERM: exit code 143.
    const report = { ...shutdownExit, exit_code: 143, signal: null };
    const exit = await h.post(`jobs/${id}/exit`, { ...fence(c1), report });
    assert.equal(exit.status, 200, JSON.stringify(exit.body));
    const job = await h.job(id);
    assert.equal(job.status, "started");
    assert.equal(job.process, null);
    assert.equal(job.exit_code, null);
    assert.equal(job.failure_reason, null);
    assert.match(job.message, /attempt 1 of 2 was stopped when worker spot-1 shut down/);
    const log = await h.events(id);
    assert.deepEqual(log.map((e) => e.type), [
      "submitted",
      "started",
      "process_exited",
      "requeued",
    ]);
    assert.deepEqual(log.at(-1)!.data, {
      attempt: 1,
      reason: "worker_stopped",
      worker_id: w,
      worker_name: "spot-1",
    });
    // Its lease ended with the report: a second send changes nothing.
    const again = await h.post(`jobs/${id}/exit`, { ...fence(c1), report: shutdownExit });
    assert.equal(again.status, 200);
    assert.equal((await h.events(id)).length, log.length);

    const w2 = await h.register("spot-2", ["alpha"]);
    const [c2] = await h.claim(w2, "spot-b", 1);
    assert.deepEqual([c2.job.job_id, c2.attempt], [id, 2]);
    await startAs(w2, c2);
    const last = await h.post(`jobs/${id}/exit`, { ...fence(c2), report: shutdownExit });
    assert.equal(last.status, 200);
    const end = await h.job(id);
    assert.equal(end.status, "failed", "the last attempt is not requeued");
    assert.equal(end.failure_reason, "interrupted");
    assert.match(end.error!, /worker spot-1 shut down/);
  });

  await t.step("a graceful stop's requeue is no lease expiry in the metrics", async () => {
    const text = await (await h.app.request("/metrics")).text();
    const family = parsePrometheus(text).find((f: Json) =>
      f.name === "trainer_lease_expirations_total"
    );
    const requeued = family?.metrics.find((m: Json) => m.labels?.outcome === "requeued");
    assert.equal(Number(requeued?.value ?? 0), 0);
    const requeues = parsePrometheus(text).find((f: Json) => f.name === "trainer_requeues_total");
    assert.deepEqual(
      requeues?.metrics.map((m: Json) => [m.labels?.reason, Number(m.value)]),
      [["worker_stopped", 1]],
    );
  });

  await t.step("a claim given back unstarted uses no attempt and waits again", async () => {
    const id = await h.submit("alpha");
    const [c] = await h.claim(w, "spot-c", 1);
    assert.equal(c.job.job_id, id);
    const r = await h.post(`jobs/${id}/release`, fence(c));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await h.job(id)).status, "started");
    assert.deepEqual((await h.events(id)).map((e) => e.type), ["submitted"]);
    assertLost(await h.post(`jobs/${id}/started`, { ...fence(c), process: startInfo(w) }));
    assertLost(await h.post(`jobs/${id}/release`, fence(c)));
    const [again] = await h.claim(w, "spot-d", 1);
    assert.deepEqual([again.job.job_id, again.attempt], [id, 1]);

    await startAs(w, again);
    const started = await h.post(`jobs/${id}/release`, fence(again));
    assertLost(started, "started");
    assert.match(started.body.message, /has started; report its exit/);
    assert.equal((await h.job(id)).status, "running");
    // A release whose start got in after its read (another instance recorded it) keeps the
    // lease: the job runs, and its reports still count.
    await h.store.run((uow) => {
      h.leases.release(uow, { job_id: id, ...fence(again) });
      return Promise.resolve();
    });
    const out = await h.post(`jobs/${id}/output`, { ...fence(again), offset: 0, events: [] });
    assert.equal(out.status, 200, JSON.stringify(out.body));
  });

  await assertProjectionIsReplay(h.database);
});

Deno.test("leave: a stopped worker claims nothing, and its unread claim waits again", async () => {
  await using h = await hostedApp();
  const id = await h.submit("alpha");
  const w = await h.register("spot", ["alpha"]);
  // Claimed, but the answer never read: the worker is stopping.
  const [c] = await h.claim(w, "unread", 1);
  assert.equal(c.job.job_id, id);
  const left = await h.post("leave", { worker_id: w });
  assert.equal(left.status, 200, JSON.stringify(left.body));
  await h.leases.reap();
  const other = await h.register("other", ["alpha"]);
  const [again] = await h.claim(other, "next", 1);
  assert.deepEqual([again.job.job_id, again.attempt], [id, 1], "no attempt used");
  await h.submit("alpha");
  assert.deepEqual(await h.claim(w, "after-leave", 1), [], "a stopped worker takes nothing");
  const unknown = await h.post("leave", { worker_id: "nobody-12345678" });
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.message, /no worker with id nobody-12345678/);
});

Deno.test("a worker that registers again replaces its earlier run in /health", async () => {
  await using h = await hostedApp();
  const first = await h.register("box", ["alpha"], 3);
  const second = await h.register("box", ["alpha"], 3);
  const health = await (await h.app.request("/health")).json();
  const rows = health.workers.filter((x: Json) => x.name === "box");
  assert.deepEqual(
    rows.map((x: Json) => [x.worker_id, x.alive]).sort(),
    [[first, false], [second, true]].sort(),
  );
  assert.equal(health.max_concurrent_jobs, 3, "its slots count once");
});

Deno.test("a claim whose worker hung up takes no job", async () => {
  await using h = await hostedApp();
  const id = await h.submit("alpha");
  const w = await h.register("leaving", ["alpha"]);
  const gone = new AbortController();
  gone.abort();
  const res = await h.app.request("/worker/claim", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${WORKER_TOKEN}` },
    body: JSON.stringify({ worker_id: w, claim_id: "hung-up", max: 1, wait_seconds: 0 }),
    signal: gone.signal,
  });
  assert.deepEqual(await res.json(), { jobs: [] });
  // Still waiting, with no lease: the next claim (any worker's) takes it at once.
  const [c] = await h.claim(w, "next", 1);
  assert.deepEqual([c.job.job_id, c.attempt], [id, 1]);
});

Deno.test("a waiting job's status says when no live worker offers its type", async () => {
  await using h = await hostedApp();
  const id = await h.submit("beta");
  const message = async () => {
    const r = await h.app.request(`/train/status/${id}`);
    assert.equal(r.status, 200);
    return (await r.json()).data.message;
  };
  assert.equal(
    await message(),
    "waiting for a free slot: 0 jobs ahead; no live worker offers model type beta " +
      "(GET /health lists the workers)",
  );
  await h.register("alpha-only", ["alpha"]);
  assert.match(await message(), /no live worker offers model type beta/);
  const both = await h.register("both", ["alpha", "beta"]);
  assert.equal(await message(), "waiting for a free slot: 0 jobs ahead");
  // Its heartbeat is older than the lease now: not live.
  h.time.advance(LEASE_MS);
  assert.match(await message(), /no live worker offers model type beta/);
  // A worker that stops gracefully says so: not live from then on, however fresh its heartbeat.
  const again = await h.register("both-again", ["beta"]);
  assert.equal(await message(), "waiting for a free slot: 0 jobs ahead");
  const left = await h.post("leave", { worker_id: again });
  assert.equal(left.status, 200, JSON.stringify(left.body));
  assert.match(await message(), /no live worker offers model type beta/);
  const health = await (await h.app.request("/health")).json();
  const shown = health.workers.find((w: Json) => w.worker_id === again);
  assert.equal(shown.alive, false);
  assert.equal(shown.stopped_at, h.time.iso());
  assert.equal(health.workers.find((w: Json) => w.worker_id === both).stopped_at, null);
});

Deno.test("registering a worker name again expires its earlier run's leases at once", async () => {
  await using h = await hostedApp();
  const ids = [await h.submit("alpha", { maxAttempts: 2 }), await h.submit("alpha")];
  const kept = await h.submit("alpha");
  const old = await h.register("box", ["alpha"]);
  const other = await h.register("other", ["alpha"]);
  const [c1, c2] = await h.claim(old, "c", 2);
  const [k] = await h.claim(other, "c", 1);
  assert.deepEqual([c1.job.job_id, c2.job.job_id, k.job.job_id], [...ids, kept]);
  await started(h, old, c1);
  await started(h, old, c2);
  await started(h, other, k);

  const fresh = await h.register("box", ["alpha"]);
  assert.notEqual(fresh, old);
  // No time passed: the old run's leases are over all the same, the other worker's are not.
  assertLost(await h.post(`jobs/${ids[0]}/output`, { ...fence(c1), offset: 0, events: [] }));
  const out = await h.post(`jobs/${kept}/output`, { ...fence(k), offset: 0, events: [] });
  assert.equal(out.status, 200);
  assert.equal(await h.leases.reap(), 2);
  assert.equal((await h.job(ids[0])).status, "started", "attempts left: it waits again");
  assert.equal((await h.job(ids[1])).failure_reason, "worker_lost");
  const [again] = await h.claim(fresh, "c", 2);
  assert.deepEqual([again.job.job_id, again.attempt], [ids[0], 2]);
  await assertProjectionIsReplay(h.database);
});

Deno.test("tokens: WORKER_TOKEN opens /worker only, API_TOKEN the user API only", async (t) => {
  await using h = await hostedApp({ apiToken: API_TOKEN });
  const get = (path: string, token?: string) =>
    h.app.request(path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const register = { name: "w", model_types: ["alpha"], max_concurrent: 1 };

  await t.step("the user API takes API_TOKEN, not WORKER_TOKEN", async () => {
    assert.equal((await get("/train/jobs", WORKER_TOKEN)).status, 401);
    const post = await h.app.request("/train/alpha", {
      method: "POST",
      headers: { authorization: `Bearer ${WORKER_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ retrain: true }),
    });
    assert.equal(post.status, 401);
    assert.equal((await get("/train/jobs", API_TOKEN)).status, 200);
  });

  await t.step("the worker API takes WORKER_TOKEN, not API_TOKEN", async () => {
    assert.equal((await h.post("register", register, API_TOKEN)).status, 401);
    assert.equal((await h.post("register", register, null)).status, 401);
    assert.equal((await h.post("register", register)).status, 200);
  });

  await t.step("without hosted mode /worker/* is 404 naming WORKERS=remote", async () => {
    await using local = await buildApp({ apiToken: API_TOKEN });
    const res = await local.app.request("/worker/register", {
      method: "POST",
      headers: { authorization: `Bearer ${WORKER_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(register),
    });
    assert.equal(res.status, 404);
    assert.match((await res.json()).message, /WORKERS=remote/);
  });
});

Deno.test("reports sent again after a lost answer; output before the start", async () => {
  await using h = await hostedApp();
  const id = await h.submit("alpha");
  const w = await h.register("w", ["alpha"]);
  const [c] = await h.claim(w, "c", 1);
  const early = await h.post(`jobs/${id}/output`, {
    ...fence(c),
    offset: 0,
    events: logLines(0, 3),
  });
  assert.equal(early.status, 409, JSON.stringify(early.body));
  assert.equal(early.body.details[0].code, "not_started");
  assert.deepEqual(await started(h, w, c), { cancelled: false });
  // The same start again: answered as before, and the running job is left alone.
  assert.deepEqual(await started(h, w, c), { cancelled: false });
  const out = await h.post(`jobs/${id}/output`, { ...fence(c), offset: 0, events: logLines(0, 3) });
  assert.deepEqual([out.status, out.body], [200, { next_offset: 3 }]);
  const job = await h.job(id);
  assert.equal(job.status, "running");
  assert.equal(job.log_lines, 3);
  assert.deepEqual((await h.events(id)).map((e) => e.type), [
    "submitted",
    "started",
    "log",
    "log",
    "log",
  ]);
  await assertProjectionIsReplay(h.database);
});

Deno.test("metrics: workers by state and lease expirations", async () => {
  await using h = await hostedApp();
  const metric = async (name: string, labels: Record<string, string>) => {
    const res = await h.app.request("/metrics");
    assert.equal(res.status, 200);
    const text = await res.text();
    const family = (parsePrometheus(text) as {
      name: string;
      metrics: { value: string; labels?: Record<string, string> }[];
    }[]).find((f) => f.name === name);
    assert.ok(family, `no metric ${name}`);
    const sample = family.metrics.find((m) =>
      Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)
    );
    return Number(sample?.value ?? 0);
  };
  const w = await h.register("gpu", ["alpha"]);
  await h.register("spare", ["alpha"]);
  assert.equal(await metric("trainer_workers", { state: "alive" }), 2);
  const ids = [await h.submit("alpha", { maxAttempts: 2 }), await h.submit("alpha")];
  for (const c of await h.claim(w, "c", 2)) await started(h, w, c);
  h.time.advance(LEASE_MS + 1000);
  assert.equal(await h.leases.reap(), 2);
  assert.equal((await h.job(ids[0])).status, "started");
  assert.equal((await h.job(ids[1])).failure_reason, "worker_lost");
  assert.equal(await metric("trainer_lease_expirations_total", { outcome: "requeued" }), 1);
  assert.equal(await metric("trainer_lease_expirations_total", { outcome: "failed" }), 1);
  assert.equal(await metric("trainer_workers", { state: "alive" }), 0);
  assert.equal(await metric("trainer_workers", { state: "silent" }), 2);
  // A worker stopped gracefully is gone, neither alive nor silent.
  const leaving = await h.register("leaving", ["alpha"]);
  assert.equal(await metric("trainer_workers", { state: "alive" }), 1);
  assert.equal((await h.post("leave", { worker_id: leaving })).status, 200);
  assert.equal(await metric("trainer_workers", { state: "alive" }), 0);
  assert.equal(await metric("trainer_workers", { state: "silent" }), 2);
});

Deno.test("output events past the collector's own limits are refused with 422", async () => {
  await using h = await hostedApp();
  const id = await h.submit("alpha");
  const w = await h.register("w", ["alpha"]);
  const [c] = await h.claim(w, "c", 1);
  await started(h, w, c);
  const long = [{ type: "log", data: { stream: "stdout", lines: ["x".repeat(70_000)] } }];
  const huge = [{
    type: "log",
    data: { stream: "stdout", lines: Array.from({ length: 10 }, () => "y".repeat(60_000)) },
  }];
  for (const events of [long, huge]) {
    const r = await h.post(`jobs/${id}/output`, { ...fence(c), offset: 0, events });
    assert.equal(r.status, 422, JSON.stringify(r.body).slice(0, 300));
  }
  assert.equal((await h.job(id)).log_lines, 0);
});
