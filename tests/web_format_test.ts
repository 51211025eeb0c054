/**
 * The dashboard's text for a job's metrics (web/static/format.js, the module the job view
 * uses): flat metrics, an `all` job's per-type metrics, and values that are objects.
 */
import assert from "node:assert/strict";
import { metricsText } from "../web/static/format.js";

Deno.test("dashboard: metrics as text", async (t) => {
  await t.step("a job's own metrics, numbers shortened", () => {
    assert.equal(metricsText({ accuracy: 0.953125, epochs: 12 }), "accuracy 0.9531, epochs 12");
    assert.equal(metricsText({}), "");
    assert.equal(metricsText(null), "");
  });
  await t.step("an `all` job's, one group per type", () => {
    assert.equal(
      metricsText({ xgboost: { accuracy: 0.95 }, "neural-net": { loss: 0.125, f1: 0.9 } }),
      "xgboost: accuracy 0.9500; neural-net: loss 0.1250, f1 0.9000",
    );
  });
  await t.step("an object a script reported as one metric is its JSON", () => {
    assert.equal(
      metricsText({ accuracy: 1, confusion: [[1, 0], [0, 1]], by_class: { a: 1 } }),
      'accuracy 1, confusion [[1,0],[0,1]], by_class {"a":1}',
    );
  });
});
