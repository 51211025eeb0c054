/** `GET /metrics`: Prometheus text format 0.0.4. */
import type { Hono } from "hono";
import { describeRoute } from "hono-openapi";
import { errorResponses } from "../contract/docs.ts";
import type { Metrics } from "../metrics/collector.ts";
import { tokenGate } from "./middleware.ts";

/**
 * Registers /metrics on `app`. Either token opens it: API_TOKEN because it opens everything,
 * METRICS_TOKEN so a scraper need not hold the key that can start and cancel jobs.
 */
export function registerMetrics(
  app: Hono,
  metrics: Metrics,
  tokens: { apiToken?: string; metricsToken?: string },
): void {
  app.get(
    "/metrics",
    describeRoute({
      tags: ["operations"],
      summary: "Prometheus metrics (text format 0.0.4)",
      description: "Needs API_TOKEN or METRICS_TOKEN as the bearer token when either is set.",
      responses: {
        200: { description: "The metrics", content: { [metrics.contentType]: {} } },
        ...errorResponses(401, 421, 503),
      },
    }),
    tokenGate([tokens.apiToken, tokens.metricsToken], "API_TOKEN or METRICS_TOKEN"),
    async (c) => c.body(await metrics.render(), 200, { "content-type": metrics.contentType }),
  );
}
