/** The dashboard in a real Chromium against a real server running real (slow) jobs. */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import {
  foreignRequests,
  launchBrowser,
  SKIP_BROWSER,
  SLOW_TRAINER,
  watchedPage,
} from "./helpers/browser.ts";
import { http, pollUntil, PYTHON, Server, waitJob, Workspace } from "./helpers/server.ts";

/** Set SAVE_SCREENSHOTS=1 to refresh docs/dashboard.png and docs/job.png from this run. */
const SAVE = Deno.env.get("SAVE_SCREENSHOTS") === "1";

const progressOf = (page: Page, id: string) =>
  page.locator(`tr[data-job-id="${id}"] progress`).evaluate((e) =>
    (e as unknown as { value: number }).value
  );

Deno.test({
  name: "dashboard in Chromium: live table, job view, cancel, 422 next to the field",
  ignore: SKIP_BROWSER,
  async fn(t) {
    const ws = await Workspace.create();
    let server: Server | null = null;
    try {
      const slow = [PYTHON, await ws.write("slow.py", SLOW_TRAINER)];
      server = await Server.start(ws.env({
        ...await ws.registry({ slow }),
        // One at a time: the `all` step would otherwise start three real trainings at once.
        MAX_CONCURRENT_JOBS: "1",
        CANCEL_GRACE_SECONDS: "1",
      }));
      const base = server.base;
      const submit = async (hyperparameters: Record<string, unknown>) => {
        const r = await http(base, "POST", "/train", {
          model_type: "slow",
          retrain: true,
          hyperparameters,
        });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return r.body.job_id as string;
      };
      await using browser = await launchBrowser();
      const { page, requests, errors } = await watchedPage(browser);

      let moving = "";
      await t.step(
        "the table shows a submitted job and its progress moving, no reload",
        async () => {
          await page.goto(`${base}/`);
          await page.getByText("0 jobs").waitFor();
          await page.evaluate(() => Object.assign(globalThis, { sameDocument: true }));
          moving = await submit({ steps: 25, delay: 0.4 });
          const row = page.locator(`tr[data-job-id="${moving}"]`);
          await row.waitFor();
          const seen = new Set<number>();
          await pollUntil(
            "three different progress values in the row",
            async () => {
              seen.add(await progressOf(page, moving));
              return [...seen].filter((v) => v > 0 && v < 1).length >= 3;
            },
            30_000,
            100,
          );
          assert.match(await row.locator(".badge").innerText(), /running/);
          assert.match(await row.locator(".steps").innerText(), /^\d+\/25$/);
          assert.equal(await page.evaluate(() => "sameDocument" in globalThis), true);
        },
      );

      await t.step("the job view follows the log, with progress, ETA and a chart", async () => {
        // By keyboard: the job id is a real link.
        await page.locator(`tr[data-job-id="${moving}"] a`).focus();
        await page.keyboard.press("Enter");
        const log = page.locator("#job-log");
        await log.getByText("epoch 1/25").waitFor();
        const lineCount = async () => (await log.innerText()).split("\n").filter(Boolean).length;
        const before = await lineCount();
        await pollUntil("more log lines", async () => (await lineCount()) > before + 2, 20_000);
        assert.match(await page.locator("#job-progress-text").innerText(), /step \d+ of 25.*left/);
        assert.equal(await page.locator("#job-chart svg polyline").count(), 2);
        assert.match(await page.locator("#job-facts").innerText(), /pid \d+ \(group \d+\)/);
        if (SAVE) await page.screenshot({ path: "docs/job.png", fullPage: true });
        await page.getByText("epoch 25/25").waitFor({ timeout: 30_000 });
        await page.locator("#job-status", { hasText: "completed" }).waitFor();
        assert.match(await page.locator("#job-facts").innerText(), /accuracy 0\.95/);
      });

      await t.step("Cancel asks first, then stops the job", async () => {
        const id = await submit({ steps: 300, delay: 0.2 });
        await page.goto(`${base}/#/job/${id}`);
        await page.locator("#job-status", { hasText: "running" }).waitFor();
        const cancel = page.getByRole("button", { name: "Cancel job…" });
        await cancel.click();
        await page.getByRole("button", { name: "Keep it running" }).click();
        await page.waitForTimeout(300);
        assert.equal((await http(base, "GET", `/train/status/${id}`)).body.data.status, "running");
        await cancel.focus();
        await page.keyboard.press("Enter");
        await page.getByRole("dialog").getByRole("button", { name: "Cancel job" }).click();
        await page.locator("#job-status", { hasText: "cancelled" }).waitFor();
        await waitJob(base, id, (d) => d.status === "cancelled" && d.process?.alive === false);
        assert.equal(await cancel.isVisible(), false);
      });

      await t.step("a failed job shows its reason and error", async () => {
        const id = await submit({ steps: 2, delay: 0.1, fail: true });
        await page.goto(`${base}/#/job/${id}`);
        await page.locator("#job-status", { hasText: "failed" }).waitFor({ timeout: 20_000 });
        await page.locator("#job-failure").waitFor();
        assert.match(await page.locator("#job-error").innerText(), /no target column/);
        assert.ok((await page.locator("#job-reason").innerText()).length > 0);
      });

      await t.step("an `all` job lists its children, each a link to its view", async () => {
        const r = await http(base, "POST", "/train", { model_type: "all", retrain: true });
        assert.equal(r.status, 200);
        try {
          await page.goto(`${base}/#/job/${r.body.job_id}`);
          const links = page.locator("#children-list a");
          await pollUntil("four children", async () => (await links.count()) === 4);
          const names = (await links.allInnerTexts()).sort();
          assert.deepEqual(names, ["neural-net", "random-forest", "slow", "xgboost"]);
          const first = r.body.children[0];
          assert.equal(
            await page.locator(`#children-list a[href="#/job/${first.job_id}"]`).count(),
            1,
          );
        } finally {
          // The built-in types would train for real: stop them, they are not under test here.
          await http(base, "DELETE", `/train/job/${r.body.job_id}`);
        }
      });

      await t.step("the form shows the API's 422 next to the field", async () => {
        await page.goto(`${base}/#/submit`);
        await page.getByLabel("Model type").selectOption("xgboost");
        await page.getByLabel("max_depth").fill("500");
        await page.getByRole("button", { name: "Start training" }).click();
        const error = page.locator('[data-field="hyperparameters.max_depth"] .field-error');
        await error.waitFor();
        const shown = await error.innerText();
        const api = await http(base, "POST", "/train", {
          model_type: "xgboost",
          retrain: false,
          use_cv: true,
          hyperparameters: { max_depth: 500 },
        });
        assert.equal(api.status, 422);
        const detail = api.body.details.find((d: { field?: string }) =>
          d.field === "hyperparameters.max_depth"
        );
        assert.equal(shown, detail.message);
        assert.equal(await page.getByLabel("max_depth").getAttribute("aria-invalid"), "true");
        assert.equal(await page.evaluate("document.activeElement?.id"), "p-max_depth");
        assert.match(await page.locator("#submit-error").innerText(), /invalid hyperparameters/);
      });

      await t.step("the form starts a job and opens it", async () => {
        await page.getByLabel("Model type").selectOption("slow");
        await page.getByLabel("Other hyperparameters (JSON object)").fill(
          '{"steps": 2, "delay": 0.1}',
        );
        await page.getByRole("button", { name: "Start training" }).click();
        await page.waitForURL(/#\/job\/[0-9a-f-]{36}$/);
        await page.locator("#job-status", { hasText: "completed" }).waitFor({ timeout: 20_000 });
      });

      await t.step(
        "the models list shows the trained model's metrics and downloads it",
        async () => {
          await page.getByRole("link", { name: "Models" }).click();
          const row = page.locator("#models-body tr", { hasText: "accuracy 0.95" }).first();
          await row.waitFor();
          assert.match(await row.innerText(), /\bok\b/);
          const [file] = await Promise.all([
            page.waitForEvent("download"),
            row.getByRole("button", { name: /^Download / }).click(),
          ]);
          const saved = await file.path();
          assert.equal(await Deno.readTextFile(saved!), "model");
        },
      );

      await t.step("filters narrow the table", async () => {
        await page.getByRole("link", { name: "Jobs" }).click();
        await page.getByLabel("Status").selectOption("failed");
        await page.locator("#jobs-count", { hasText: /^1 job \(/ }).waitFor();
        assert.equal(await page.locator("#jobs-body tr").count(), 1);
        await page.getByLabel("Status").selectOption("");
        if (SAVE) {
          const id = await submit({ steps: 100, delay: 0.2 });
          await pollUntil("progress", async () => (await progressOf(page, id)) > 0.1);
          await page.screenshot({ path: "docs/dashboard.png", fullPage: true });
        }
      });

      await t.step("no request went to another host; no script or CSP errors", () => {
        assert.deepEqual(foreignRequests(requests, base), []);
        assert.ok(requests.length > 20);
        assert.deepEqual(errors, []);
      });
    } finally {
      await server?.kill("SIGTERM");
      await ws.dispose();
    }
  },
});
