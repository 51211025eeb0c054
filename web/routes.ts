/**
 * The dashboard: one HTML page and its scripts and styles, served from web/static with no
 * build step, plus the hyperparameter schemas the submit form is built from. The page talks
 * to the Train API like any other client; nothing here reads the database.
 *
 * Assets live under `/web/<version>/`, where the version is a hash of all of them: a browser
 * may then keep them for good, and a warm page load costs one request for the HTML (which is
 * never cached, and names the version) plus the API calls. Modules import each other by
 * relative paths, so they stay within one version.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { z } from "zod";
import { describeOpen } from "../contract/docs.ts";
import type { Registry } from "../models/registry.ts";

/** Only this origin: no inline script or style, no other host, no framing. */
export const CSP = "default-src 'self'; base-uri 'none'; object-src 'none'; " +
  "frame-ancestors 'none'; form-action 'self'";

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  json: "application/json",
};

const STATIC = new URL("./static/", import.meta.url);

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
}

export interface WebDeps {
  registry: Registry;
}

/** Builds the routes `GET /` and `GET /web/{version}/{file}`. */
export function webRoutes(deps: WebDeps): Hono {
  const app = new Hono();
  const assets = loadAssets();
  // The form's fields come from the same zod schemas the API validates with.
  assets.set("model-types.json", {
    body: new TextEncoder().encode(JSON.stringify({
      model_types: [...deps.registry.values()].map((t) => ({
        name: t.name,
        builtin: t.builtin,
        hyperparameters: z.toJSONSchema(t.params, { io: "input", unrepresentable: "any" }),
      })),
    })),
    type: TYPES.json,
  });
  const version = hash([...assets.values()].map((a) => a.body));
  const html = new TextEncoder().encode(
    new TextDecoder().decode(Deno.readFileSync(new URL("index.html", STATIC)))
      .replaceAll("/web/VERSION/", `/web/${version}/`),
  );

  app.get("/", describeOpen("The dashboard page", [TYPES.html], "dashboard"), (c) => {
    headers(c);
    c.header("Cache-Control", "no-cache");
    return c.body(html, 200, { "Content-Type": TYPES.html });
  });
  app.get(
    "/web/:version/:file",
    describeOpen(
      "A script, style or data file of the dashboard",
      Object.values(TYPES),
      "dashboard",
      404,
    ),
    (c) => {
      const asset = assets.get(c.req.param("file"));
      if (!asset) return c.notFound();
      headers(c);
      // An old page asking for an old version gets today's file, but must not keep it.
      c.header(
        "Cache-Control",
        c.req.param("version") === version ? "public, max-age=31536000, immutable" : "no-cache",
      );
      return c.body(asset.body, 200, { "Content-Type": asset.type });
    },
  );
  return app;
}

/** Reads every asset once: the set is small and fixed, and a request never touches the disk. */
function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const entry of Deno.readDirSync(STATIC)) {
    const ext = entry.name.split(".").pop() ?? "";
    if (!entry.isFile || !TYPES[ext] || entry.name === "index.html") continue;
    assets.set(entry.name, {
      body: Deno.readFileSync(new URL(entry.name, STATIC)),
      type: TYPES[ext],
    });
  }
  return assets;
}

function headers(c: Context): void {
  c.header("Content-Security-Policy", CSP);
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
}

/** FNV-1a over all the files: enough to tell two versions of the set apart. */
function hash(files: Uint8Array[]): string {
  let h = 0x811c9dc5;
  for (const bytes of files) {
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
    h = Math.imul(h ^ 0xff, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}
