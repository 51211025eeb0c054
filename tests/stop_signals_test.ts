/** Stop signals: one Ctrl-C delivered twice is one graceful stop; a later one exits at once. */
import assert from "node:assert/strict";
import { REPEAT_MS, stopSignalHandler } from "../stop_signals.ts";

Deno.test("stop signals", async (t) => {
  let clock = 1_000;
  const stops: string[] = [];
  const exits: number[] = [];
  const logged: string[] = [];
  const handle = stopSignalHandler({
    stop: (signal) => (stops.push(signal), Promise.resolve()),
    log: (m) => logged.push(m),
    now: () => clock,
    exit: (code) => exits.push(code),
  });
  await t.step("the first signal starts the graceful stop", () => {
    handle("SIGINT");
    assert.deepEqual(stops, ["SIGINT"]);
  });
  await t.step("the same Ctrl-C forwarded by `deno task` a moment later is ignored", () => {
    clock += 5;
    handle("SIGINT");
    clock += REPEAT_MS - 10;
    handle("SIGTERM");
    assert.deepEqual(stops, ["SIGINT"]);
    assert.deepEqual(exits, []);
  });
  await t.step("a signal after that exits at once", () => {
    clock += 10;
    handle("SIGINT");
    assert.deepEqual(exits, [130]);
    assert.deepEqual(logged.at(-1), "SIGINT again: exiting now");
    assert.equal(logged.length, 3);
    assert.deepEqual(stops, ["SIGINT"]);
  });
});
