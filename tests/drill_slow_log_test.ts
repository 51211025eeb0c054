/**
 * Fault drill (small): a child printing 200,000 lines as fast as it can while the log sink
 * (the database) is stalled or slow and failing. The reader never waits on the sink (the
 * child exits while every append is still held), and every line arrives once, in order.
 * `deno task drill slowlog` also runs 1,000,000 lines end to end on a write-locked database.
 */
import assert from "node:assert/strict";
import { collectorDrill, report } from "./helpers/drill.ts";

Deno.test("drill: a stalled database never blocks the child's pipe and loses no line", async (t) => {
  await t.step("sink stalled until the child has exited", async () => {
    const figures = await collectorDrill(200_000, "stalled");
    report("slow log (stalled)", figures);
    assert.equal(figures.child_exited_while_sink_stalled, true);
    assert.equal(figures.lines_checked, 200_000);
  });
  await t.step("slow sink failing a quarter of its appends", async () => {
    const figures = await collectorDrill(200_000, "flaky", 7);
    report("slow log (flaky)", figures);
    assert.equal(figures.lines_checked, 200_000);
    assert.ok(figures.sink_calls >= 1);
  });
});
