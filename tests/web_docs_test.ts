/** `/docs` in Chromium: Swagger UI renders this API's document offline, from the server alone. */
import assert from "node:assert/strict";
import { foreignRequests, launchBrowser, SKIP_BROWSER, watchedPage } from "./helpers/browser.ts";
import { Server, Workspace } from "./helpers/server.ts";

Deno.test({
  name: "docs in Chromium: /docs renders every operation with no request to another host",
  ignore: SKIP_BROWSER,
  async fn(t) {
    const ws = await Workspace.create();
    let server: Server | null = null;
    try {
      server = await Server.start(ws.env({ API_TOKEN: "docs-s3cret" }));
      const base = server.base;
      await using browser = await launchBrowser();
      const { page, requests, errors } = await watchedPage(browser);

      await t.step("the page loads the document and lists the operations", async () => {
        await page.goto(`${base}/docs`);
        await page.locator(".opblock").first().waitFor();
        const summaries = await page.locator(".opblock-summary-path").allInnerTexts();
        const paths = summaries.map((s) => s.replace(/\u200b/g, "").trim());
        for (const path of ["/train/{model_type}", "/train/status/{job_id}", "/train/jobs"]) {
          assert.ok(paths.includes(path), `${path} is not shown: ${paths.join(", ")}`);
        }
        assert.ok(requests.some((r) => r.url() === `${base}/openapi.json`), "no /openapi.json");
      });

      await t.step("no request went to another host; no script or CSP errors", () => {
        assert.deepEqual(foreignRequests(requests, base), []);
        assert.deepEqual(errors, []);
      });
    } finally {
      await server?.kill("SIGTERM");
      await ws.dispose();
    }
  },
});
