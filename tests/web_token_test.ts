/** The dashboard against a server with API_TOKEN: it asks for the token and sends it. */
import assert from "node:assert/strict";
import { foreignRequests, launchBrowser, SKIP_BROWSER, watchedPage } from "./helpers/browser.ts";
import { http, pollUntil, Server, Workspace } from "./helpers/server.ts";

const TOKEN = "dashboard-s3cret";

Deno.test({
  name: "dashboard in Chromium: the token prompt works with API_TOKEN",
  ignore: SKIP_BROWSER,
  async fn(t) {
    const ws = await Workspace.create();
    let server: Server | null = null;
    try {
      server = await Server.start(ws.env({
        ...await ws.registry({ fake: await ws.fakeTrainer() }),
        API_TOKEN: TOKEN,
      }));
      const base = server.base;
      const auth = { authorization: `Bearer ${TOKEN}` };
      const job = await http(base, "POST", "/train/fake", { retrain: true }, auth);
      assert.equal(job.status, 200);
      await pollUntil("the job to complete", async () => {
        const r = await http(base, "GET", `/train/status/${job.body.data.job_id}`, undefined, auth);
        return r.body.data?.status === "completed";
      });
      await using browser = await launchBrowser();
      const { page, requests, errors } = await watchedPage(browser);

      await t.step("without a token the page loads and asks for one", async () => {
        await page.goto(`${base}/`);
        await page.getByRole("alert").getByText("needs a token").waitFor();
        assert.equal(await page.evaluate("document.activeElement?.id"), "token");
        assert.equal(await page.locator("#jobs-body tr").count(), 0);
      });

      await t.step("a wrong token is refused, and the page says so", async () => {
        await page.getByLabel("API token").fill("wrong");
        await page.getByRole("button", { name: "Use token" }).click();
        await page.getByRole("alert").getByText("was refused").waitFor();
      });

      await t.step("the right token shows the jobs and is sent as a bearer token", async () => {
        await page.getByLabel("API token").fill(TOKEN);
        await page.keyboard.press("Enter");
        await page.locator(`tr[data-job-id="${job.body.data.job_id}"]`).waitFor();
        assert.equal(await page.getByRole("alert").isVisible(), false);
        const list = requests.filter((r) => r.url().includes("/train/jobs")).at(-1)!;
        assert.equal(await list.headerValue("authorization"), `Bearer ${TOKEN}`);
      });

      await t.step("the token is kept in sessionStorage across a reload", async () => {
        assert.equal(await page.evaluate("sessionStorage.getItem('trainer.api_token')"), TOKEN);
        await page.reload();
        await page.locator(`tr[data-job-id="${job.body.data.job_id}"]`).waitFor();
        assert.equal(await page.getByLabel("API token").inputValue(), TOKEN);
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
