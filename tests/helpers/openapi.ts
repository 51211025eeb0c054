/**
 * Checks a response against the app's own OpenAPI document: the operation that the request
 * reached must list the status, the content type, and (for JSON) a schema the body
 * validates against with Ajv (JSON Schema 2020-12, as OpenAPI 3.1 uses). `send()` in
 * ./app.ts runs every response of the API tests through this.
 */
import type { Hono } from "hono";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { openApiDocument } from "../../routes/docs.ts";

type Document = Awaited<ReturnType<typeof openApiDocument>>;
// deno-lint-ignore no-explicit-any
type Operation = Record<string, any>;

const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats.default(ajv);
// Keywords OpenAPI 3.1 adds to JSON Schema: annotations only.
ajv.addVocabulary(["example", "discriminator", "xml", "externalDocs"]);

/** A request and what came back. */
export interface Exchange {
  method: string;
  /** The request path, with its query string if any. */
  path: string;
  status: number;
  contentType: string;
  body: unknown;
}

/** The checker of one app's document. */
export class OpenApiChecker {
  /** "METHOD /template status" of every exchange checked, for coverage assertions. */
  readonly seen = new Set<string>();
  #validators = new Map<string, ValidateFunction>();
  #paths: { template: string; pattern: RegExp; params: number }[];

  constructor(readonly doc: Document) {
    this.#paths = Object.keys(doc.paths).map((template) => ({
      template,
      pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}/?$`),
      params: (template.match(/\{/g) ?? []).length,
    })).sort((a, b) => a.params - b.params);
  }

  /** The documented path that serves `pathname`: the most specific match, as the router does. */
  pathFor(pathname: string): string | undefined {
    return this.#paths.find((p) => p.pattern.test(pathname))?.template;
  }

  /** Throws a message naming the operation and each violation when `x` does not conform. */
  check(x: Exchange): void {
    const pathname = new URL(x.path, "http://test").pathname;
    const template = this.pathFor(pathname);
    const item = template ? this.doc.paths[template] as Record<string, Operation> : undefined;
    // A HEAD is its GET's, unless documented on its own.
    const method = x.method.toLowerCase() === "head" && !item?.head
      ? "get"
      : x.method.toLowerCase();
    // A CORS preflight is answered by the middleware before any route: not an operation.
    if (method === "options") return;
    const op: Operation | undefined = template
      ? (this.doc.paths[template] as Record<string, Operation>)?.[method]
      : undefined;
    const where = `${x.method} ${x.path} -> ${x.status}`;
    if (!template || !op) {
      // No operation: the router answers 404 (no such path) or 405 (no such method), unless
      // the Origin or Host check refused the request before any route was looked at.
      // `GET /train/status` matches `/train/{model_type}` but means a missing job id: 404.
      const expected = template ? 405 : 404;
      if (![expected, 404, 403, 421].includes(x.status)) {
        throw new Error(`${where}: no operation in /openapi.json, so ${expected} was expected`);
      }
      this.#validate(`error envelope`, this.#errorSchema(), x.body, where);
      return;
    }
    this.seen.add(`${method.toUpperCase()} ${template} ${x.status}`);
    const response = op.responses?.[String(x.status)];
    if (!response) {
      throw new Error(
        `${where}: status ${x.status} is not documented for ${method.toUpperCase()} ${template}` +
          ` (documented: ${Object.keys(op.responses ?? {}).join(", ")})`,
      );
    }
    const content: Record<string, { schema?: object }> = response.content ?? {};
    if (Object.keys(content).length === 0) return;
    const type = baseType(x.contentType);
    const media = Object.entries(content).find(([key]) => baseType(key) === type);
    if (!media) {
      throw new Error(
        `${where}: content type "${x.contentType}" is not documented ` +
          `(documented: ${Object.keys(content).join(", ")})`,
      );
    }
    if (type !== "application/json" || !media[1].schema) return;
    const key = `${method} ${template} ${x.status}`;
    this.#validate(key, media[1].schema, x.body, where);
  }

  #validate(key: string, schema: object, body: unknown, where: string): void {
    let validate = this.#validators.get(key);
    if (!validate) {
      validate = ajv.compile(schema);
      this.#validators.set(key, validate);
    }
    if (validate(body)) return;
    const errors = (validate.errors ?? []).map((e) =>
      `${e.instancePath || "(body)"} ${e.message}${
        e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ""
      }`
    );
    throw new Error(
      `${where}: the body does not match its schema in /openapi.json:\n  ${errors.join("\n  ")}\n` +
        `body: ${JSON.stringify(body)?.slice(0, 1000)}`,
    );
  }

  /** The error envelope's schema, as the document gives it for a 404. */
  #errorSchema(): object {
    for (const item of Object.values(this.doc.paths)) {
      for (const op of Object.values(item as Record<string, Operation>)) {
        const schema = op?.responses?.["404"]?.content?.["application/json"]?.schema;
        if (schema) return schema;
      }
    }
    throw new Error("/openapi.json documents no 404 error envelope");
  }
}

function baseType(contentType: string): string {
  return contentType.split(";")[0].trim().toLowerCase();
}

const checkers = new WeakMap<Hono, Promise<OpenApiChecker>>();

/** The checker for `app`'s document, built once per app. */
export function checkerFor(app: Hono): Promise<OpenApiChecker> {
  let checker = checkers.get(app);
  if (!checker) {
    checker = openApiDocument(app).then((doc) => new OpenApiChecker(doc));
    checkers.set(app, checker);
  }
  return checker;
}
