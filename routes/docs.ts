/**
 * `GET /openapi.json` (OpenAPI 3.1, generated from the routes' zod schemas) and `GET /docs`
 * (Swagger UI). Swagger UI's files are served from the swagger-ui-dist package in
 * node_modules, so the page works offline and asks no host but this server.
 */
import { swaggerUI } from "@hono/swagger-ui";
import type { Hono } from "hono";
import { generateSpecs } from "hono-openapi";
import { join } from "node:path";
import { describeOpen, hyperparameterSchemas } from "../contract/docs.ts";
import swaggerUiDist from "swagger-ui-dist/absolute-path.js";

const ASSETS = "/docs/assets";

/** The files of swagger-ui-dist that /docs uses; nothing else in the package is served. */
const DIST_FILES: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "favicon-32x32.png": "image/png",
};

/** Starts Swagger UI from a file rather than an inline script, so a CSP of 'self' allows it. */
const INIT_JS = `window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // Its default sends the document to validator.swagger.io for a badge: no other host.
  validatorUrl: null,
});
`;

type Document = Awaited<ReturnType<typeof generateSpecs>>;

/** Builds the OpenAPI document of every route registered on `app` (call after they are). */
export async function openApiDocument(app: Hono): Promise<Document> {
  const doc = await generateSpecs(app, {
    // Its default drops paths that end in a file name, such as /openapi.json itself.
    excludeStaticFile: false,
    documentation: {
      info: {
        title: "trainer",
        version: "1.0.0",
        description: "Start, follow and cancel model training jobs. " +
          'Every error answers with {status: "error", message, details}.',
      },
      components: {
        schemas: hyperparameterSchemas,
        securitySchemes: {
          bearer: {
            type: "http",
            scheme: "bearer",
            description: "API_TOKEN, required on every route but /health and the docs when set",
          },
        },
      },
      // Optional: when API_TOKEN is unset the routes are open.
      security: [{}, { bearer: [] }],
    },
  });
  documentHead(doc, "/train/models/{name}/download");
  return doc;
}

/**
 * Hono answers HEAD with its GET route, and the generator documents only the GET. A download's
 * HEAD is worth saying: a client asks for its size, ETag and Range support before fetching.
 */
function documentHead(doc: Document, path: string): void {
  type Operation = { summary?: string; description?: string; responses?: object };
  const item = doc.paths?.[path] as Record<string, Operation> | undefined;
  const get = item?.get;
  if (!item || !get) throw new Error(`no GET ${path} to document a HEAD for`);
  // The same answers and headers, without bodies.
  const responses = Object.fromEntries(
    Object.entries(get.responses ?? {}).map(([status, r]) => {
      const { content: _, ...rest } = r as { content?: object };
      return [status, rest];
    }),
  );
  item.head = {
    ...get,
    summary: `${get.summary ?? "GET"}: headers only`,
    description: "The GET's status and headers (Content-Length, ETag, Accept-Ranges, " +
      "Content-Range for a Range) without the body.",
    responses,
  };
}

/** Registers /openapi.json, /docs and the docs' assets on `app`. */
export function registerDocs(app: Hono): void {
  let doc: Promise<Document> | undefined;
  app.get(
    "/openapi.json",
    describeOpen("This OpenAPI 3.1 document", ["application/json"]),
    async (c) => c.json(await (doc ??= openApiDocument(app))),
  );

  app.get(
    "/docs",
    describeOpen("Swagger UI for this API, served offline", ["text/html"]),
    swaggerUI({
      url: "/openapi.json",
      title: "trainer API",
      baseUrl: ASSETS,
      manuallySwaggerUIHtml: (asset) =>
        [
          '<div id="swagger-ui"></div>',
          ...asset.css.map((href) => `<link rel="stylesheet" href="${href}">`),
          ...asset.js.map((src) => `<script src="${src}"></script>`),
          `<script src="${ASSETS}/init.js"></script>`,
        ].join("\n"),
    }),
  );

  app.get(
    `${ASSETS}/init.js`,
    describeOpen("The script that starts Swagger UI on /docs", ["text/javascript"]),
    (c) => c.body(INIT_JS, 200, { "content-type": "text/javascript; charset=utf-8" }),
  );

  const cache = new Map<string, Promise<Uint8Array>>();
  app.get(
    `${ASSETS}/swagger-ui-dist/:file`,
    describeOpen(
      "A file of swagger-ui-dist (its CSS, JS bundle and icon); 404 for any other",
      ["text/css", "text/javascript", "image/png"],
      "docs",
      404,
    ),
    async (c) => {
      const name = c.req.param("file");
      const type = Object.hasOwn(DIST_FILES, name) ? DIST_FILES[name] : undefined;
      if (!type) return c.notFound();
      let bytes = cache.get(name);
      if (!bytes) {
        bytes = Deno.readFile(join(swaggerUiDist(), name));
        cache.set(name, bytes);
        bytes.catch(() => cache.delete(name));
      }
      return c.body((await bytes) as Uint8Array<ArrayBuffer>, 200, {
        "content-type": type,
        "cache-control": "public, max-age=3600",
      });
    },
  );
}
