/**
 * Fault drill (small): 1,000 generated bad requests against the real server (malformed and
 * truncated JSON, wrong types, huge and negative numbers, odd unicode, path traversal in
 * every path parameter, oversized bodies, wrong methods and content types, broken framing).
 * No 5xx, none accepted, the server stays up, the database is unchanged.
 * `deno task drill input` sends 10,000.
 */
import assert from "node:assert/strict";
import { badInput, report, withTempDir } from "./helpers/drill.ts";

Deno.test("drill: 1,000 bad requests are all refused and change nothing", async () => {
  const figures = await withTempDir("drill-input-", (dir) => badInput({ requests: 1000, dir }));
  report("bad input", figures);
  assert.equal(figures.requests_tried, 1000);
  assert.equal(figures.database_unchanged, true);
  assert.ok(figures.health_checks >= 2);
  for (const status of Object.keys(figures.by_status)) {
    assert.ok(status === "none" || /^4\d\d$/.test(status), `answered ${status}`);
  }
});
