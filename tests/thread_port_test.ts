/**
 * The supervisor thread's port over a real MessageChannel, served from a real LocalPort: a
 * value too deeply nested for the structured clone fails its call instead of leaving the
 * caller waiting forever (a waiting supervisor is a wedged one).
 */
import assert from "node:assert/strict";
import { servePort, ThreadPort } from "../jobs/thread_port.ts";
import { LocalPort } from "../jobs/worker_port.ts";
import type { Runtime } from "../models/runtime.ts";
import { openTestStore } from "./helpers/app.ts";

/** An array nested `depth` levels: past ~5,000 the structured clone overflows its stack. */
function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

Deno.test("a call whose value cannot cross the thread fails instead of hanging", async (t) => {
  await using base = await openTestStore();
  const channel = new MessageChannel();
  channel.port1.start();
  channel.port2.start();
  const deep = nested(10_000);
  servePort(
    new LocalPort(base.store),
    (type) => Promise.resolve(type === "deep" ? deep as Runtime : { runnable: true } as Runtime),
    channel.port1,
  );
  const port = new ThreadPort(channel.port2);
  try {
    await t.step("an answer that cannot be cloned comes back as an error", async () => {
      await assert.rejects(port.runtime("deep"), /answer not sent: RangeError/);
    });
    await t.step("a call that cannot be cloned rejects at once", async () => {
      await assert.rejects(port.output("job", deep as never), RangeError);
    });
    await t.step("the channel still works afterwards", async () => {
      assert.deepEqual(await port.runtime("fine"), { runnable: true });
    });
  } finally {
    channel.port1.close();
    channel.port2.close();
  }
});
