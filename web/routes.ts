/**
 * The dashboard: one HTML page and its scripts and styles, served from web/static with no
 * build step, plus the hyperparameter schemas the submit form is built from. The page talks
 * to the Train API like any other client; nothing here reads the database.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { z } from "zod";
import type { Registry } from "../models/registry.ts";

/** Only this origin: no inline script or style, no other host, no framing. */
export const CSP = "default-src 'self'; base-uri 'none'; object-src 'none'; " +
  "frame-ancestors 'none'; form-action 'self'";

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
};

const STATIC = new URL("./static/", import.meta.url);

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
  etag: string;
}

/** Reads every asset once: the set is small and fixed, and a request never touches the disk. */
function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const entry of Deno.readDirSync(STATIC)) {
    const ext = entry.name.split(".").pop() ?? "";
    if (!entry.isFile || !TYPES[ext]) continue;
    const body = Deno.readFileSync(new URL(entry.name, STATIC));
    assets.set(entry.name, { body, type: TYPES[ext], etag: `"${hash(body)}"` });
  }
  return assets;
}

/** FNV-1a: enough to tell two versions of a file apart for revalidation. */
function hash(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return `${h.toString(16)}-${bytes.length}`;
}

export interface WebDeps {
  registry: Registry;
}

/** Builds the routes `GET /`, `GET /web/{file}` and `GET /web/model-types.json`. */
export function webRoutes(deps: WebDeps): Hono {
  const app = new Hono();
  const assets = loadAssets();
  const modelTypes = JSON.stringify({
    model_types: [...deps.registry.values()].map((t) => ({
      name: t.name,
      builtin: t.builtin,
      hyperparameters: z.toJSONSchema(t.params, { io: "input", unrepresentable: "any" }),
    })),
  });

  app.get("/", (c) => serve(c, assets.get("index.html")!));
  app.get("/web/model-types.json", (c) => {
    c.header("Content-Security-Policy", CSP);
    c.header("X-Content-Type-Options", "nosniff");
    return c.body(modelTypes, 200, { "Content-Type": "application/json" });
  });
  app.get("/web/:file", (c) => {
    const asset = assets.get(c.req.param("file"));
    if (!asset) return c.notFound();
    return serve(c, asset);
  });
  return app;
}

function serve(c: Context, asset: Asset): Response {
  c.header("Content-Security-Policy", CSP);
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
  // Revalidated every time, so a new version of the page is never mixed with old scripts.
  c.header("Cache-Control", "no-cache");
  c.header("ETag", asset.etag);
  if (c.req.header("if-none-match") === asset.etag) return c.body(null, 304);
  return c.body(asset.body, 200, { "Content-Type": asset.type });
}
