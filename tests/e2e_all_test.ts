/** E2E: Idempotency-Key across the real server; "all" over custom types, complete and cancel. */
import assert from "node:assert/strict";
import {
  groupAlive,
  http,
  pollUntil,
  Server,
  waitJob,
  waitTerminal,
  Workspace,
} from "./helpers/server.ts";

const TYPES = ["neural-net", "xgboost", "random-forest", "extra"];

Deno.test("e2e: idempotency keys and model_type all", async (t) => {
  const ws = await Workspace.create();
  let server: Server | null = null;
  try {
    const fake = await ws.fakeTrainer();
    const registry = await ws.registry(Object.fromEntries(TYPES.map((type) => [type, fake])));
    server = await Server.start(ws.env({ ...registry, CANCEL_GRACE_SECONDS: "1" }));
    const base = server.base;

    await t.step("the same key and body give the same job, even when sent at once", async () => {
      const body = { retrain: true, hyperparameters: { progress: 2 } };
      const headers = { "Idempotency-Key": "e2e-key-1" };
      const replies = await Promise.all(
        Array.from({ length: 5 }, () => http(base, "POST", "/train/extra", body, headers)),
      );
      for (const r of replies) assert.equal(r.status, 200, JSON.stringify(r.body));
      const ids = new Set(replies.map((r) => r.body.data.job_id));
      assert.equal(ids.size, 1, [...ids].join(", "));
      const replayed = replies.filter((r) => r.headers.get("idempotent-replayed") === "true");
      assert.equal(replayed.length, 4);
      const [id] = ids;
      await waitTerminal(base, id);
      const later = await http(base, "POST", "/train/extra", body, headers);
      assert.equal(later.status, 200);
      assert.equal(later.body.data.job_id, id);
      assert.equal(later.body.data.status, "completed");
      assert.equal(later.headers.get("idempotent-replayed"), "true");
      const list = await http(base, "GET", "/train/jobs?model_type=extra");
      assert.equal(list.body.filtered_count, 1);
    });

    await t.step("the same key with another body answers 409", async () => {
      const headers = { "Idempotency-Key": "e2e-key-1" };
      const other = { retrain: true, hyperparameters: { progress: 3 } };
      const r = await http(base, "POST", "/train/extra", other, headers);
      assert.equal(r.status, 409);
      assert.equal(r.body.status, "error");
      assert.match(r.body.message, /Idempotency-Key/);
    });

    await t.step("all: one child per type; the parent completes when they all do", async () => {
      const body = { model_type: "all", retrain: true, hyperparameters: { progress: 2 } };
      const headers = { "Idempotency-Key": "e2e-all" };
      const r = await http(base, "POST", "/train", body, headers);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.model_type, "all");
      assert.equal(r.body.status, "started");
      assert.equal(r.body.message, "Training initiated for all model types");
      const again = await http(base, "POST", "/train", body, headers);
      assert.equal(again.body.job_id, r.body.job_id);

      const parent = await waitTerminal(base, r.body.job_id);
      assert.equal(parent.status, "completed", JSON.stringify(parent));
      assert.equal(parent.model_path, null);
      assert.deepEqual(parent.children.map((c: { model_type: string }) => c.model_type), TYPES);
      for (const child of parent.children) {
        assert.equal(child.status, "completed");
        assert.ok(child.model_path.includes(`${child.model_type}_model_`));
      }
      // Each of the four children counts 1,000, whatever its own steps: all done.
      assert.deepEqual(
        parent.progress && [parent.progress.step, parent.progress.total],
        [4000, 4000],
      );
      assert.match(parent.progress.message, /^(\S+ 100%, ){3}\S+ 100%$/);
      const children = await http(base, "GET", `/train/jobs?parent_id=${parent.job_id}`);
      assert.equal(children.body.filtered_count, TYPES.length);
    });

    await t.step(
      "cancelling the parent cancels its children and kills their processes",
      async () => {
        const r = await http(base, "POST", "/train", {
          model_type: "all",
          retrain: true,
          hyperparameters: { sleep: 1000, grandchild: true },
        });
        assert.equal(r.status, 200);
        const parentId = r.body.job_id;
        // MAX_CONCURRENT_JOBS is 2: two children run, two wait.
        const parent = await waitJob(
          base,
          parentId,
          (d) => d.children.filter((c: { status: string }) => c.status === "running").length === 2,
        );
        const running: number[] = [];
        for (
          const child of parent.children.filter((c: { status: string }) => c.status === "running")
        ) {
          const s = await http(base, "GET", `/train/status/${child.job_id}`);
          running.push(s.body.data.process.pgid as number);
        }
        const cancelled = await http(base, "DELETE", `/train/job/${parentId}`);
        assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
        assert.equal(cancelled.body.data.status, "cancelled");
        const now = await http(base, "GET", `/train/status/${parentId}`);
        assert.equal(now.body.data.status, "cancelled");
        for (const child of now.body.data.children) assert.equal(child.status, "cancelled");
        await pollUntil(
          "children's groups gone",
          () => running.every((g) => !groupAlive(g)),
          2_000,
        );
        for (const child of parent.children) {
          const s = await waitJob(base, child.job_id, (d) => !d.process?.alive);
          assert.equal(s.status, "cancelled");
          if (!running.includes(s.process?.pgid)) {
            assert.equal(s.process, null);
          }
        }
        const again = await http(base, "DELETE", `/train/job/${parentId}`);
        assert.equal(again.status, 409);
      },
    );
  } finally {
    await server?.kill();
    await ws.dispose();
  }
});
