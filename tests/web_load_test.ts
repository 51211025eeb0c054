/** The dashboard's first view loads in under 300 ms on a warm server holding 10,000 jobs. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { generateDatabase } from "../bench/lib/gen_db.ts";
import { launchBrowser, SKIP_BROWSER, watchedPage } from "./helpers/browser.ts";
import { Server, Workspace } from "./helpers/server.ts";

const JOBS = 10_000;
const BUDGET_MS = 300;
const LOADS = 15;

Deno.test({
  name: `dashboard in Chromium: loads in < ${BUDGET_MS} ms with ${JOBS} jobs`,
  ignore: SKIP_BROWSER,
  async fn() {
    const ws = await Workspace.create();
    let server: Server | null = null;
    try {
      // Real events through decide/evolve, written straight to the file: POSTing and running
      // 10,000 jobs would take minutes.
      await generateDatabase(join(ws.dir, "t.db"), { jobs: JOBS });
      server = await Server.start(ws.env());
      await using browser = await launchBrowser();
      const { page } = await watchedPage(browser);
      // Noted by the page itself: asking from here would add the test's own round trips.
      await page.addInitScript(`new MutationObserver((_, seen) => {
        if (document.querySelectorAll("#jobs-body tr[data-job-id]").length === 25) {
          globalThis.rowsShownAt = performance.now();
          seen.disconnect();
        }
      }).observe(document, { childList: true, subtree: true });`);
      const times: number[] = [];
      // The first load warms the server and the browser's cache; the others are measured.
      for (let i = 0; i <= LOADS; i++) {
        await page.goto(`${server.base}/`);
        // From the start of the navigation to the first page of rows in the document.
        // A function, not a string: the page's CSP forbids eval.
        const ms = await page.waitForFunction(() =>
          (globalThis as unknown as { rowsShownAt?: number }).rowsShownAt
        ).then((h) => h.jsonValue() as Promise<number>);
        if (i > 0) times.push(ms);
      }
      assert.match(await page.locator("#jobs-count").innerText(), new RegExp(`^${JOBS} jobs`));
      const first = await page.locator("#jobs-body tr").first().getAttribute("data-job-id");
      await page.getByRole("button", { name: "Older →" }).click();
      await page.locator("#page-info", { hasText: `26–50 of ${JOBS}` }).waitFor();
      assert.notEqual(
        await page.locator("#jobs-body tr").first().getAttribute("data-job-id"),
        first,
      );
      times.sort((a, b) => a - b);
      console.log(`page load with ${JOBS} jobs: ${times.map((t) => t.toFixed(0)).join(", ")} ms`);
      // The fastest load is what the page and server cost: other work on a shared machine
      // (tests run in parallel) can only add to a load, never take from it.
      assert.ok(times[0] < BUDGET_MS, `fastest load ${times[0].toFixed(0)} ms >= ${BUDGET_MS} ms`);
    } finally {
      await server?.kill("SIGTERM");
      await ws.dispose();
    }
  },
});
