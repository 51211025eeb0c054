/**
 * Browser tests: Debian's Chromium driven by playwright-core (never a downloaded browser).
 * Outside CI a machine without /usr/bin/chromium skips these tests with a message; in CI
 * they must run, so a missing browser fails them.
 */
import { type Browser, chromium, type Page, type Request } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

function chromiumMissing(): boolean {
  try {
    Deno.statSync(CHROMIUM);
    return false;
  } catch {
    return true;
  }
}

/** True when browser tests are skipped here; says why once. */
export const SKIP_BROWSER = chromiumMissing() && !Deno.env.get("CI");
if (SKIP_BROWSER) {
  console.warn(
    `browser tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium; CI installs it)`,
  );
}

/** Launches Chromium headless; the caller closes it (`await using`). */
export async function launchBrowser(): Promise<Browser & AsyncDisposable> {
  if (chromiumMissing()) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)`);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root in a container has no user namespaces for Chromium's sandbox.
    args: ["--no-sandbox"],
  });
  return Object.assign(browser, { [Symbol.asyncDispose]: () => browser.close() });
}

/** A page that records every request it makes, and fails on script errors. */
export interface WatchedPage {
  page: Page;
  requests: Request[];
  errors: string[];
}

export async function watchedPage(browser: Browser): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const requests: Request[] = [];
  const errors: string[] = [];
  page.on("request", (r) => requests.push(r));
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    // A CSP violation is reported only on the console. Error statuses of the API are logged
    // there too; the tests check those answers themselves.
    const answered = /^Failed to load resource: the server responded with a status of/;
    if (m.type() === "error" && !answered.test(m.text())) errors.push(m.text());
  });
  return { page, requests, errors };
}

/** The hosts (host:port) of requests not addressed to `base`. */
export function foreignRequests(requests: Request[], base: string): string[] {
  const own = new URL(base).host;
  return requests.map((r) => new URL(r.url())).filter((u) =>
    u.protocol !== "data:" && u.host !== own
  ).map((u) => u.href);
}

/**
 * A training script that reports progress slowly, so a page can be seen following it.
 * Hyperparameters: steps (20), delay (s per step, 0.3), fail (exit 3 with a traceback).
 */
export const SLOW_TRAINER = `import json, os, sys, time
hp = json.loads(os.environ.get("TRAIN_HYPERPARAMETERS") or "{}")
steps, delay = hp.get("steps", 20), hp.get("delay", 0.3)
def say(event, **fields):
    print("@@trainer " + json.dumps({"event": event, **fields}), flush=True)
print("slow trainer: loading data", flush=True)
for i in range(1, steps + 1):
    time.sleep(delay)
    print(f"epoch {i}/{steps} loss={1 / i:.4f}", flush=True)
    say("progress", step=i, total=steps, message=f"epoch {i}",
        metrics={"loss": round(1 / i, 4), "accuracy": round(0.5 + 0.45 * i / steps, 4)})
if hp.get("fail"):
    print("Traceback (most recent call last):", file=sys.stderr, flush=True)
    print("ValueError: the data set has no target column", file=sys.stderr, flush=True)
    sys.exit(3)
metrics = {"accuracy": 0.95, "f1": 0.94}
say("metrics", metrics=metrics)
path = os.environ["TRAIN_ARTIFACT_PATH"]
with open(os.path.splitext(path)[0] + ".meta.json", "w") as f:
    json.dump({"job_id": os.environ.get("TRAIN_JOB_ID"), "metrics": metrics}, f)
with open(path, "w") as f:
    f.write("model")
say("artifact", path=os.environ["TRAIN_ARTIFACT_PATH"])
`;
