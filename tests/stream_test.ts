/** E2E: the SSE streams against a real server running real training processes. */
import assert from "node:assert/strict";
import { dataOf, openStream, type SseMessage } from "./helpers/sse.ts";
import { http, type Json, pollUntil, Server, waitTerminal, Workspace } from "./helpers/server.ts";

async function submit(base: string, hyperparameters: Json, headers = {}): Promise<string> {
  const r = await http(base, "POST", "/train/fake", { retrain: true, hyperparameters }, headers);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data.job_id;
}

async function loggedSeqs(base: string, id: string): Promise<number[]> {
  const r = await http(base, "GET", `/train/job/${id}/events?limit=1000`);
  assert.equal(r.status, 200);
  return r.body.events.map((e: Json) => e.seq);
}

const ids = (ms: SseMessage[]) => ms.filter((m) => m.id).map((m) => Number(m.id));
const isEnd = (m: SseMessage) => m.event === "end";

Deno.test("e2e: job and global event streams", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const env = ws.env({
      ...await ws.registry({ fake: await ws.fakeTrainer() }),
      SSE_PING_SECONDS: "0.2",
    });
    server = await Server.start(env);
    const base = server.base;

    await t.step("a finished job replays every event, then end with its status", async () => {
      const id = await submit(base, { progress: 3 });
      await waitTerminal(base, id);
      const s = await openStream(base, `/train/job/${id}/stream`);
      assert.equal(s.status, 200);
      assert.match(s.headers.get("content-type") ?? "", /^text\/event-stream/);
      const ms = await s.messages();
      assert.deepEqual(ids(ms), await loggedSeqs(base, id));
      const last = ms.at(-1)!;
      assert.equal(last.event, "end");
      assert.equal(last.id, undefined);
      const status = await http(base, "GET", `/train/status/${id}`);
      assert.deepEqual(dataOf(last), status.body.data);
      const first = dataOf(ms[0]);
      assert.deepEqual(Object.keys(first).sort(), [
        "at",
        "data",
        "job_id",
        "seq",
        "type",
        "version",
      ]);
      assert.equal(first.job_id, id);
      assert.equal(ms[0].event, "submitted");
      for (const m of ms.slice(0, -1)) assert.equal(m.event, dataOf(m).type);
    });

    await t.step("a live job streams as it runs; a dropped stream resumes exactly", async () => {
      const id = await submit(base, { progress: 4, sleep: 1.5 });
      const first = await openStream(base, `/train/job/${id}/stream`);
      const before = await first.messages((m) => m.event === "progress");
      await first.close();
      const lastId = before.at(-1)!.id!;
      // After the drop, more events are committed while nobody listens.
      const resumed = await openStream(base, `/train/job/${id}/stream`, {
        "Last-Event-ID": lastId,
      });
      const after = await resumed.messages(isEnd);
      assert.equal(after.at(-1)!.event, "end");
      assert.equal(dataOf(after.at(-1)!).status, "completed");
      const all = [...ids(before), ...ids(after)];
      assert.equal(new Set(all).size, all.length, "no event is repeated");
      assert.deepEqual(all, await loggedSeqs(base, id), "no event is missed");
      const viaQuery = await openStream(base, `/train/job/${id}/stream?after=${lastId}`);
      assert.deepEqual(ids(await viaQuery.messages()), ids(after));
    });

    await t.step("?types= filters the job's events; end still comes", async () => {
      const id = await submit(base, { progress: 3 });
      const s = await openStream(base, `/train/job/${id}/stream?types=progress,completed`);
      const ms = await s.messages();
      assert.deepEqual(ms.map((m) => m.event), [
        "progress",
        "progress",
        "progress",
        "completed",
        "end",
      ]);
    });

    await t.step("GET /train/stream sends submitted, started and terminal events", async () => {
      const s = await openStream(base, "/train/stream?after=0");
      const id = await submit(base, { progress: 2, exit: 3, write: false });
      const ms = await s.messages((m) => m.event === "failed" && dataOf(m).job_id === id);
      await s.close();
      const types = new Set(ms.map((m) => m.event));
      assert.deepEqual([...types].sort(), ["completed", "failed", "started", "submitted"]);
      const mine = ms.filter((m) => dataOf(m).job_id === id).map((m) => m.event);
      assert.deepEqual(mine, ["submitted", "started", "failed"]);
      const seqs = ids(ms);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
      // Resuming the global stream skips what was received.
      const again = await openStream(base, "/train/stream", { "Last-Event-ID": String(seqs[2]) });
      const next = await again.messages((m) => Number(m.id) === seqs[3]);
      await again.close();
      assert.deepEqual(ids(next), [seqs[3]]);
    });

    await t.step("an idle stream gets keep-alive comments", async () => {
      const s = await openStream(base, "/train/stream?after=1000000");
      const item = await s.next();
      await s.close();
      assert.deepEqual(item, { kind: "comment", text: "keep-alive" });
    });

    await t.step("bad requests get clear errors", async () => {
      const id = await submit(base, {});
      const cases: [string, Record<string, string>, number, RegExp][] = [
        ["/train/job/00000000-0000-4000-8000-000000000000/stream", {}, 404, /no job/],
        ["/train/job/nope/stream", {}, 404, /UUID/],
        [`/train/job/${id}/stream?types=progress,bogus`, {}, 422, /unknown: bogus/],
        [`/train/job/${id}/stream?after=-1`, {}, 422, /after/],
        [`/train/job/${id}/stream?typ=log`, {}, 422, /typ/],
        [`/train/job/${id}/stream`, { "Last-Event-ID": "x1" }, 400, /Last-Event-ID/],
        ["/train/stream?types=log", {}, 422, /types/],
        [`/train/job/${id}/stream?after=abc`, {}, 422, /after: must be a number/],
        // The events page checks its types as the stream does: a typo is not an empty page.
        [`/train/job/${id}/events?type=progres`, {}, 422, /unknown: progres/],
        [`/train/job/${id}/events?after=abc`, {}, 422, /after: must be a number/],
        [`/train/job/${id}/events?after=-1`, {}, 422, /after: Too small/],
        // The stream takes the events page's `type` too, and checks it.
        [`/train/job/${id}/stream?type=bogus`, {}, 422, /unknown: bogus/],
        [`/train/job/${id}/stream?types=`, {}, 422, /types must be/],
      ];
      for (const [path, headers, status, message] of cases) {
        const r = await http(base, "GET", path, undefined, headers);
        assert.equal(r.status, status, `${path}: ${JSON.stringify(r.body)}`);
        assert.match(r.body.message, message);
      }
      // Each endpoint takes the other's name for its types too.
      const byType = await http(base, "GET", `/train/job/${id}/events?type=submitted`);
      const byTypes = await http(base, "GET", `/train/job/${id}/events?types=submitted`);
      assert.equal(byTypes.status, 200);
      assert.deepEqual(byTypes.body.events, byType.body.events);
      assert.deepEqual(byType.body.events.map((e: { type: string }) => e.type), ["submitted"]);
      // An empty list on the events page is no filter, as it always was.
      const empty = await http(base, "GET", `/train/job/${id}/events?type=`);
      const all = await http(base, "GET", `/train/job/${id}/events`);
      assert.equal(empty.status, 200);
      assert.deepEqual(empty.body.events, all.body.events);
      const post = await http(base, "POST", "/train/stream");
      assert.equal(post.status, 405);
      assert.equal(post.headers.get("allow"), "GET");
    });
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});

Deno.test("e2e: a stream resumes across a SIGKILL and restart of the server", async () => {
  const ws = await Workspace.create();
  const servers: Server[] = [];
  try {
    const env = ws.env({ ...await ws.registry({ fake: await ws.fakeTrainer() }) });
    const first = await Server.start(env);
    servers.push(first);
    const id = await submit(first.base, { progress: 3, sleep: 1000 });
    const s = await openStream(first.base, `/train/job/${id}/stream`);
    const before = await s.messages((m) => m.event === "progress" && dataOf(m).data.step === 3);
    await first.kill("SIGKILL");
    await s.close();

    const second = await Server.start(env);
    servers.push(second);
    const resumed = await openStream(second.base, `/train/job/${id}/stream`, {
      "Last-Event-ID": before.at(-1)!.id!,
    });
    const after = await resumed.messages();
    assert.ok(after.some((m) => m.event === "failed"), after.map((m) => m.event).join());
    const end = after.at(-1)!;
    assert.equal(end.event, "end");
    assert.equal(dataOf(end).failure_reason, "interrupted");
    const all = [...ids(before), ...ids(after)];
    assert.equal(new Set(all).size, all.length, "no event is repeated");
    assert.deepEqual(all, await loggedSeqs(second.base, id), "no event is missed");
  } finally {
    for (const s of servers) await s.kill();
    await ws.dispose();
  }
});

Deno.test("e2e: streams need the token and are capped by MAX_STREAMS", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const auth = { authorization: "Bearer s3cret" };
    server = await Server.start(ws.env({ API_TOKEN: "s3cret", MAX_STREAMS: "2" }));
    const base = server.base;

    await t.step("without the token: 401", async () => {
      const r = await http(base, "GET", "/train/stream");
      assert.equal(r.status, 401);
    });

    await t.step(
      "past MAX_STREAMS: 503 with Retry-After; a closed stream frees its slot",
      async () => {
        const a = await openStream(base, "/train/stream", auth);
        const b = await openStream(base, "/train/stream", auth);
        assert.deepEqual([a.status, b.status], [200, 200]);
        const over = await http(base, "GET", "/train/stream", undefined, auth);
        assert.equal(over.status, 503);
        assert.match(over.headers.get("retry-after") ?? "", /^\d+$/);
        assert.match(over.body.message, /MAX_STREAMS=2/);
        await a.close();
        const c = await pollUntil("a free slot", async () => {
          const s = await openStream(base, "/train/stream", auth);
          if (s.status === 200) return s;
          await s.close();
          return null;
        });
        await Promise.all([b.close(), c.close()]);
      },
    );
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
