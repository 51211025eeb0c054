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
    // A CSP violation is reported only on the console.
    if (m.type() === "error" && !/status of 40[145]/.test(m.text())) errors.push(m.text());
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
